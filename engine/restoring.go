package engine

import (
	"context"

	corev1 "k8s.io/api/core/v1"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// restoreTrue is the value of the boolean restore annotations.
const restoreTrue = "true"

// revisionEventReason is the Event that tells how the restore moved etcd's revision.
const revisionEventReason = "RevisionBumped"

// restoring is the RestoringSnapshot step:
//
//  1. ensure the restore Job C-etcd-restore of this attempt, built from the recorded plan (member
//     name, peer URLs, cluster token and initial cluster; --bump-revision, --mark-compacted), and
//     record its UID right after creating it;
//  2. a recorded Job that disappeared before reporting fails the restore (RestoreJobFailed; the
//     swap may or may not have happened, the message says so);
//  3. the Job failed: RestoreJobFailed (the tool never swaps on failure: the old data is intact);
//  4. the Job succeeded: record restore-swapped and the revision it reported (restore-revision)
//     and enter StartingEtcd;
//  5. otherwise wait; RestoreJobFailed at the deadline (the recovery stops the Job first).
func (e *Engine) restoring(ctx context.Context, r *Restore) (step, error) {
	if _, err := e.workloads(ctx, r.Cluster); err != nil {
		return e.failOnMissing(ctx, r, err)
	}
	p, err := e.plan(ctx, r)
	if err != nil {
		return e.failOnMissing(ctx, r, err)
	}
	if p.memberCount() > 1 {
		return e.restoringMembers(ctx, r, p)
	}
	c := r.Cluster
	recorded := r.get(kdcv1alpha1.AnnotationRestoreJobUID)
	if recorded != "" {
		gone, err := e.jobGone(ctx, p.restoreJobNamespace(c), kdcv1alpha1.RestoreJobName(c.Name), recorded)
		if err != nil {
			return step{}, err
		}
		if gone {
			return step{advanced: true}, e.Fail(ctx, r, Violation{Reason: kdcv1alpha1.ReasonRestoreJobFailed,
				Detail: "the restore Job was deleted before it reported; whether the snapshot was swapped in is unknown, check the restore Job's logs and the data directory"})
		}
	}
	job, out, err := e.ensureJob(ctx, r, JobRestore, p)
	if err != nil {
		return step{}, err
	}
	if job != nil && job.UID != "" && recorded != string(job.UID) {
		if err := e.save(ctx, r, map[string]string{kdcv1alpha1.AnnotationRestoreJobUID: string(job.UID)}); err != nil {
			return step{}, err
		}
	}
	switch out {
	case JobSucceeded:
		extra := map[string]string{kdcv1alpha1.AnnotationRestoreSwapped: restoreTrue}
		pods, err := e.jobPods(ctx, job)
		if err != nil {
			return step{}, err
		}
		rev, ok := jobRevision(pods)
		if ok {
			extra[kdcv1alpha1.AnnotationRestoreRevision] = rev.String()
		}
		next := kdcv1alpha1.PhaseStartingEtcd
		if p.Mode == ModePrefix {
			next = kdcv1alpha1.PhaseStartingControlPlane
			r.Driver.Note(r, "The keys under "+p.EtcdPrefix+"/ are the snapshot's (the content before is kept in S3 until the restore ends)")
		} else {
			r.Driver.Note(r, "Snapshot restored into "+kdcv1alpha1.EtcdDataPVCName(c.DataStore())+" (the previous data is kept beside it)")
		}
		res, err := e.enter(ctx, r, next, extra)
		if err == nil && ok {
			r.log.Info("Restored revision", "revision", rev.Revision, "revisionBefore", rev.RevisionBefore, "bumpRevision", rev.BumpRevision, "restoredRevision", rev.RestoredRevision)
			r.Driver.Event(r, corev1.EventTypeNormal, revisionEventReason, "Restore from \""+r.Key()+"\": "+rev.Describe())
		}
		return res, err
	case JobFailed:
		return step{advanced: true}, e.Fail(ctx, r, Violation{Reason: kdcv1alpha1.ReasonRestoreJobFailed, Detail: e.failureDetail(ctx, job)})
	}
	return e.wait(ctx, r, kdcv1alpha1.ReasonRestoreJobFailed, "the restore Job did not finish", "")
}

// plan is the recorded plan; a restore recorded before plans were (an older manager) resolves
// and records it now.
func (e *Engine) plan(ctx context.Context, r *Restore) (*Plan, error) {
	if p, err := r.recordedPlan(); err == nil {
		return p, nil
	}
	p, _, err := e.Prepare(ctx, r.Cluster, r.Key())
	if err != nil {
		return nil, err
	}
	enc, err := p.encode()
	if err != nil {
		return nil, err
	}
	if err := e.save(ctx, r, map[string]string{kdcv1alpha1.AnnotationRestorePlan: enc}); err != nil {
		return nil, err
	}
	r.plan = p
	return p, nil
}
