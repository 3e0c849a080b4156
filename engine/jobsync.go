package engine

import (
	"context"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// ensureJob makes sure the Job of kind for this restore attempt exists and reports its outcome
// (its condition, or its terminal pod). A Job with the same name from another attempt (an
// earlier restore) is deleted first: a restore or rollback Job in the foreground, so its pod is
// gone before the new one can touch the data volume; a verify Job (no volume, it only reads S3)
// in the background and replaced at once, without waiting for the garbage collector.
func (e *Engine) ensureJob(ctx context.Context, r *Restore, kind JobKind, p *Plan, mem ...member) (*batchv1.Job, JobOutcome, error) {
	m := member{count: 1}
	if len(mem) > 0 {
		m = mem[0]
	}
	want := buildJob(kind, r.Cluster, p, r.Attempt(), m)
	got := &batchv1.Job{}
	err := e.Client.Get(ctx, client.ObjectKeyFromObject(want), got)
	switch {
	case err == nil && got.Annotations[kdcv1alpha1.AnnotationRestoreAttempt] != r.Attempt():
		replaced, err := e.deleteStaleJob(ctx, r, kind, got)
		if err != nil || !replaced {
			return nil, JobPending, err
		}
	case err == nil:
		out := e.jobOutcome(ctx, r, got)
		if out == JobSucceeded {
			r.Driver.Note(r, fmt.Sprintf("Job %s/%s succeeded", got.Namespace, got.Name), "job", klog.KObj(got))
		}
		return got, out, nil
	case !apierrors.IsNotFound(err):
		return nil, JobPending, fmt.Errorf("failed to get Job %s: %w", klog.KObj(want), err)
	}
	if err := e.Client.Create(ctx, want); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return nil, JobPending, nil
		}
		return nil, JobPending, fmt.Errorf("failed to create Job %s: %w", klog.KObj(want), err)
	}
	r.log.Info("Created Job", "job", klog.KObj(want))
	r.Driver.Event(r, corev1.EventTypeNormal, jobEventReason(kind), fmt.Sprintf("Created Job %s/%s", want.Namespace, want.Name))
	return want, JobPending, nil
}

// deleteStaleJob deletes a Job of an earlier restore (only that one: UID precondition) and
// reports whether its replacement may be created right away (a verify Job); otherwise the Job's
// deletion event wakes the Run that creates it.
func (e *Engine) deleteStaleJob(ctx context.Context, r *Restore, kind JobKind, got *batchv1.Job) (bool, error) {
	if !got.DeletionTimestamp.IsZero() {
		return false, nil
	}
	policy := metav1.DeletePropagationForeground
	if kind == JobVerify {
		policy = metav1.DeletePropagationBackground
	}
	r.Driver.Note(r, fmt.Sprintf("Deleting Job %s/%s left over from an earlier restore", got.Namespace, got.Name), "propagation", policy)
	err := e.Client.Delete(ctx, got, client.PropagationPolicy(policy), client.Preconditions{UID: &got.UID})
	switch {
	case apierrors.IsConflict(err):
		return false, nil
	case client.IgnoreNotFound(err) != nil:
		return false, fmt.Errorf("failed to delete stale Job %s: %w", klog.KObj(got), err)
	}
	return kind == JobVerify, nil
}

// jobEventReason is the Event reason of creating a Job of kind.
func jobEventReason(kind JobKind) string {
	switch kind {
	case JobVerify:
		return "VerifyJobCreated"
	case JobRollback:
		return "RollbackJobCreated"
	case JobSwap:
		return "SwapJobCreated"
	}
	return "RestoreJobCreated"
}

// failureDetail reads a failed Job's pods (uncached: their status is not in the metadata
// cache) and explains the failure.
func (e *Engine) failureDetail(ctx context.Context, job *batchv1.Job) string {
	pods, err := e.jobPods(ctx, job)
	if err != nil {
		return jobFailureDetail(job, nil) + " (pods unreadable: " + err.Error() + ")"
	}
	return jobFailureDetail(job, pods)
}

// jobPods reads the pods the Job controls, uncached.
func (e *Engine) jobPods(ctx context.Context, job *batchv1.Job) ([]corev1.Pod, error) {
	var pods corev1.PodList
	if err := e.Live.List(ctx, &pods, client.InNamespace(job.Namespace),
		client.MatchingLabels{batchv1.JobNameLabel: job.Name}); err != nil {
		return nil, fmt.Errorf("failed to list the pods of Job %s: %w", klog.KObj(job), err)
	}
	var mine []corev1.Pod
	for _, p := range pods.Items {
		if metav1.IsControlledBy(&p, job) {
			mine = append(mine, p)
		}
	}
	return mine, nil
}

// deleteJob deletes a Job of the restore by name, ignoring NotFound.
func (e *Engine) deleteJob(ctx context.Context, namespace, name string, policy metav1.DeletionPropagation) error {
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if err := e.Client.Delete(ctx, job, client.PropagationPolicy(policy)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("failed to delete Job %s: %w", klog.KObj(job), err)
	}
	return nil
}

// jobGone reports whether the Job with that UID no longer exists, confirmed by a live read (the
// cache may simply not have seen a Job created a moment ago).
func (e *Engine) jobGone(ctx context.Context, namespace, name, uid string) (bool, error) {
	job := &batchv1.Job{}
	err := e.Live.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, job)
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("failed to get Job %s/%s: %w", namespace, name, err)
	}
	return string(job.UID) != uid, nil
}
