package controller

import (
	"context"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/location"
)

// restoreJobState is where one of the restore's Jobs stands.
type restoreJobState int

const (
	// restoreJobPending: being created, replaced, or still running; wait for its watch event.
	restoreJobPending restoreJobState = iota
	restoreJobSucceeded
	restoreJobFailedState
)

// ensureRestoreJob makes sure the Job of kind for this restore attempt exists and reports its
// state (restoreJobState: its condition, or its terminal pod). A Job with the same name from
// another attempt (an earlier restore) is deleted first: a restore or rollback Job in the
// foreground, so its pod is gone before the new one can touch the data volume; a verify Job
// (no volume, it only reads S3) in the background and replaced at once, without waiting for
// the garbage collector.
func (r *RestoreReconciler) ensureRestoreJob(ctx context.Context, s *restoreScope, kind restoreJobKind, in restoreJobInputs) (*batchv1.Job, restoreJobState, error) {
	want := buildRestoreJob(kind, s.cluster, in)
	got := &batchv1.Job{}
	err := r.Client.Get(ctx, client.ObjectKeyFromObject(want), got)
	switch {
	case err == nil && got.Annotations[kdcv1alpha1.AnnotationRestoreAttempt] != in.Attempt:
		replaced, err := r.deleteStaleRestoreJob(ctx, s, kind, got)
		if err != nil || !replaced {
			return nil, restoreJobPending, err
		}
	case err == nil:
		return got, r.restoreJobState(ctx, s, got), nil
	case !apierrors.IsNotFound(err):
		return nil, restoreJobPending, fmt.Errorf("failed to get Job %s: %w", klog.KObj(want), err)
	}
	if err := r.Client.Create(ctx, want); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return nil, restoreJobPending, nil
		}
		return nil, restoreJobPending, fmt.Errorf("failed to create Job %s: %w", klog.KObj(want), err)
	}
	s.log.Info("Created Job", "job", klog.KObj(want))
	r.event(s, corev1.EventTypeNormal, restoreJobEventReason(kind), "Created Job %s/%s", want.Namespace, want.Name)
	return want, restoreJobPending, nil
}

// deleteStaleRestoreJob deletes a Job of an earlier restore (only that one: UID precondition)
// and reports whether its replacement may be created right away (a verify Job); otherwise the
// Job's deletion event wakes the reconcile that creates it.
func (r *RestoreReconciler) deleteStaleRestoreJob(ctx context.Context, s *restoreScope, kind restoreJobKind, got *batchv1.Job) (bool, error) {
	if !got.DeletionTimestamp.IsZero() {
		return false, nil
	}
	policy := metav1.DeletePropagationForeground
	if kind == restoreJobVerify {
		policy = metav1.DeletePropagationBackground
	}
	s.log.Info("Deleting a Job left over from an earlier restore", "job", klog.KObj(got), "propagation", policy)
	err := r.Client.Delete(ctx, got, client.PropagationPolicy(policy), client.Preconditions{UID: &got.UID})
	switch {
	case apierrors.IsConflict(err):
		return false, nil
	case client.IgnoreNotFound(err) != nil:
		return false, fmt.Errorf("failed to delete stale Job %s: %w", klog.KObj(got), err)
	}
	return kind == restoreJobVerify, nil
}

// restoreJobEventReason is the Event reason of creating a Job of kind.
func restoreJobEventReason(kind restoreJobKind) string {
	switch kind {
	case restoreJobVerify:
		return "VerifyJobCreated"
	case restoreJobRollback:
		return "RollbackJobCreated"
	}
	return "RestoreJobCreated"
}

// jobFailureDetail reads a failed Job's pods (uncached: their status is not in the metadata
// cache) and explains the failure.
func (r *RestoreReconciler) jobFailureDetail(ctx context.Context, job *batchv1.Job) string {
	pods, err := r.jobPods(ctx, job)
	if err != nil {
		return restoreJobFailureDetail(job, nil) + " (pods unreadable: " + err.Error() + ")"
	}
	return restoreJobFailureDetail(job, pods)
}

// jobPods reads the pods the Job controls, uncached (their status is not in the metadata cache).
func (r *RestoreReconciler) jobPods(ctx context.Context, job *batchv1.Job) ([]corev1.Pod, error) {
	var pods corev1.PodList
	if err := r.APIReader.List(ctx, &pods, client.InNamespace(job.Namespace),
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

// deleteRestoreJob deletes a Job of the restore by name, ignoring NotFound.
func (r *RestoreReconciler) deleteRestoreJob(ctx context.Context, namespace, name string, policy metav1.DeletionPropagation) error {
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if err := r.Client.Delete(ctx, job, client.PropagationPolicy(policy)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("failed to delete Job %s: %w", klog.KObj(job), err)
	}
	return nil
}

// restoreInputsError is a failure to resolve the Jobs' inputs, with its restore failure reason.
type restoreInputsError struct {
	reason string
	err    error
}

func (e *restoreInputsError) Error() string { return e.err.Error() }

// jobInputs resolves everything the restore's Jobs need for this restore (resolveRestoreJobInputs).
// A *restoreInputsError carries the failure reason.
func (r *RestoreReconciler) jobInputs(ctx context.Context, s *restoreScope, sts *appsv1.StatefulSet) (restoreJobInputs, error) {
	return resolveRestoreJobInputs(ctx, r.APIReader, s.cluster, s.key(), s.attempt(), r.Options, sts)
}

// resolveRestoreJobInputs resolves everything the restore's Jobs need: the S3 location and
// credentials exactly as the backup CronJob resolves them (location.Lookup,
// backupCredentialSecret), and the etcd member and user from DS-etcd. reader reads uncached.
// A *restoreInputsError carries the failure reason.
func resolveRestoreJobInputs(ctx context.Context, reader client.Reader, c *kdcv1alpha1.KdcCluster, snapshotKey, attempt string, o Options, sts *appsv1.StatefulSet) (restoreJobInputs, error) {
	// A failed read of the claim or its ConfigMap is retried, not taken for a missing one (that
	// would resolve another bucket or endpoint).
	loc, err := location.Lookup(ctx, reader, c, o.S3Endpoint)
	if errors.Is(err, location.ErrNoEndpoint) {
		return restoreJobInputs{}, &restoreInputsError{kdcv1alpha1.ReasonS3NotAvailable,
			fmt.Errorf("%w: set spec.backup.s3Endpoint or make the ObjectBucketClaim %s Bound", err, kdcv1alpha1.ObjectBucketClaimName)}
	}
	if err != nil {
		return restoreJobInputs{}, err
	}
	in := restoreJobInputs{
		Image:            o.Image,
		Key:              snapshotKey,
		Attempt:          attempt,
		Location:         loc,
		CredentialSecret: backupCredentialSecret(c),
	}
	if in.Member, err = deriveEtcdMember(sts); err != nil {
		return restoreJobInputs{}, &restoreInputsError{kdcv1alpha1.ReasonEtcdMemberUnknown,
			fmt.Errorf("StatefulSet %s: %w", klog.KObj(sts), err)}
	}
	in.RunAs = restoreRunAsOf(&sts.Spec.Template.Spec)
	ds := &kdcv1alpha1.KdcClusterDatastore{}
	if err := reader.Get(ctx, client.ObjectKey{Namespace: c.DataStoreNamespace(), Name: c.DataStore()}, ds); err == nil {
		in.TargetVersion = ds.Spec.Etcd.Version
	}
	return in, nil
}
