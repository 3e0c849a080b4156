package controller

import (
	"context"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// restoreTrue is the value of the boolean restore annotations.
const restoreTrue = "true"

// restoreRevisionEventReason is the Event that tells how the restore moved etcd's revision.
const restoreRevisionEventReason = "RevisionBumped"

// reconcileRestoring is the RestoringSnapshot step:
//
//  1. ensure the restore Job C-etcd-restore of this attempt (member name, peer URLs, cluster
//     token and initial cluster derived from DS-etcd; --bump-revision, --mark-compacted) and
//     record its UID right after creating it;
//  2. a recorded Job that disappeared before reporting fails the restore (RestoreJobFailed; the
//     swap may or may not have happened, the message says so);
//  3. the Job failed: RestoreJobFailed (the tool never swaps on failure: the old data is intact);
//  4. the Job succeeded: record restore-swapped and the revision it reported (restore-revision)
//     and enter StartingEtcd;
//  5. otherwise wait; RestoreJobFailed at the deadline (the recovery stops the Job first).
func (r *RestoreReconciler) reconcileRestoring(ctx context.Context, s *restoreScope) (stepResult, error) {
	_, sts, err := r.workloads(ctx, s.cluster)
	if err != nil {
		return r.failOnMissing(ctx, s, err)
	}
	in, err := r.jobInputs(ctx, s, sts)
	if err != nil {
		if ie, ok := err.(*restoreInputsError); ok {
			return stepResult{advanced: true}, r.fail(ctx, s, ie.reason, ie.Error())
		}
		return stepResult{}, err
	}
	recorded := s.ann(kdcv1alpha1.AnnotationRestoreJobUID)
	if recorded != "" {
		gone, err := r.jobGone(ctx, s.cluster.DataStoreNamespace(), kdcv1alpha1.RestoreJobName(s.cluster.Name), recorded)
		if err != nil {
			return stepResult{}, err
		}
		if gone {
			return stepResult{advanced: true}, r.fail(ctx, s, kdcv1alpha1.ReasonRestoreJobFailed,
				"the restore Job was deleted before it reported; whether the snapshot was swapped in is unknown, check the restore Job's logs and the data directory")
		}
	}
	job, state, err := r.ensureRestoreJob(ctx, s, restoreJobRestore, in)
	if err != nil {
		return stepResult{}, err
	}
	if job != nil && job.UID != "" && recorded != string(job.UID) {
		if err := r.recordAnnotations(ctx, s, map[string]string{kdcv1alpha1.AnnotationRestoreJobUID: string(job.UID)}); err != nil {
			return stepResult{}, err
		}
	}
	switch state {
	case restoreJobSucceeded:
		extra := map[string]string{kdcv1alpha1.AnnotationRestoreSwapped: restoreTrue}
		pods, err := r.jobPods(ctx, job)
		if err != nil {
			return stepResult{}, err
		}
		rev, ok := restoreJobRevision(pods)
		if ok {
			extra[kdcv1alpha1.AnnotationRestoreRevision] = rev.String()
		}
		res, err := r.enter(ctx, s, kdcv1alpha1.PhaseStartingEtcd, extra)
		if err == nil && ok {
			s.log.Info("Restored revision", "revision", rev.Revision, "revisionBefore", rev.RevisionBefore, "bumpRevision", rev.BumpRevision, "restoredRevision", rev.RestoredRevision)
			r.event(s, corev1.EventTypeNormal, restoreRevisionEventReason, "Restore from %q: %s", s.key(), rev.Describe())
		}
		return res, err
	case restoreJobFailedState:
		return stepResult{advanced: true}, r.fail(ctx, s, kdcv1alpha1.ReasonRestoreJobFailed, r.jobFailureDetail(ctx, job))
	}
	return r.wait(ctx, s, kdcv1alpha1.ReasonRestoreJobFailed, "the restore Job did not finish")
}

// jobGone reports whether the Job with that UID no longer exists, confirmed by a live read (the
// cache may simply not have seen a Job created a moment ago).
func (r *RestoreReconciler) jobGone(ctx context.Context, namespace, name, uid string) (bool, error) {
	job := &batchv1.Job{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, job)
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("failed to get Job %s/%s: %w", namespace, name, err)
	}
	return string(job.UID) != uid, nil
}
