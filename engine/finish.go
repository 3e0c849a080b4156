package engine

import (
	"context"
	"fmt"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// finishSuccess ends a successful restore, each step idempotent so a restart repeats it safely:
//
//  1. start a fresh backup (a Job from the CronJob C-etcd-backup, when it exists) so the next
//     restore can start from the restored state;
//  2. delete the restore and verify Jobs;
//  3. RestoreReady=True/Succeeded `Restore from "<key>" complete`, latestRestoreKey/Time;
//  4. clear restore-from and every bookkeeping key.
func (e *Engine) finishSuccess(ctx context.Context, r *Restore) error {
	c := r.Cluster
	p, err := e.plan(ctx, r)
	if err != nil {
		return err
	}
	if err := e.startFreshBackup(ctx, r); err != nil {
		return err
	}
	if err := e.deleteJob(ctx, p.restoreJobNamespace(c), kdcv1alpha1.RestoreJobName(c.Name), metav1.DeletePropagationBackground); err != nil {
		return err
	}
	if err := e.deleteJob(ctx, c.Namespace, kdcv1alpha1.VerifyJobName(c.Name), metav1.DeletePropagationBackground); err != nil {
		return err
	}
	if p.memberCount() > 1 {
		var jobs batchv1.JobList
		if err := e.Client.List(ctx, &jobs, client.InNamespace(c.DataStoreNamespace()), client.MatchingLabels(jobLabels(c))); err != nil {
			return fmt.Errorf("failed to list the members' Jobs: %w", err)
		}
		for _, j := range jobs.Items {
			if j.Labels[labelMember] != "" {
				if err := e.deleteJob(ctx, j.Namespace, j.Name, metav1.DeletePropagationBackground); err != nil {
					return err
				}
			}
		}
	}
	key := r.Key()
	msg := SucceededMessage(key)
	if err := r.Driver.SetReady(ctx, r, metav1.ConditionTrue, kdcv1alpha1.ReasonRestoreSucceeded, msg, true); err != nil {
		return err
	}
	r.Driver.Observe(Observation{Phase: r.Phase(), Duration: r.now.Sub(r.phaseSince())})
	if err := e.Clear(ctx, r); err != nil {
		return err
	}
	r.Outcome = &Outcome{Succeeded: true, Message: msg}
	r.Driver.Observe(Observation{Finished: true, Outcome: kdcv1alpha1.ReasonRestoreSucceeded})
	r.log.Info("Restore succeeded", "key", key, "reason", kdcv1alpha1.ReasonRestoreSucceeded)
	r.Driver.Event(r, corev1.EventTypeNormal, kdcv1alpha1.ReasonRestoreSucceeded, msg)
	return nil
}

// SucceededMessage is the RestoreReady message of a successful restore.
func SucceededMessage(key string) string { return fmt.Sprintf("Restore from %q complete", key) }

// startFreshBackup creates the fresh backup Job from the CronJob C-etcd-backup, if the CronJob
// exists (backups enabled); the name is fixed per restore, so it is created once.
func (e *Engine) startFreshBackup(ctx context.Context, r *Restore) error {
	c := r.Cluster
	cj := &batchv1.CronJob{}
	if err := e.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: kdcv1alpha1.BackupCronJobName(c.Name)}, cj); err != nil {
		if apierrors.IsNotFound(err) {
			r.Driver.Note(r, fmt.Sprintf("No backup CronJob %s/%s: no fresh backup after the restore", c.Namespace, kdcv1alpha1.BackupCronJobName(c.Name)))
			return nil
		}
		return fmt.Errorf("failed to get CronJob %s/%s: %w", c.Namespace, kdcv1alpha1.BackupCronJobName(c.Name), err)
	}
	job := BuildFreshBackupJob(c, cj, r.Attempt())
	if err := e.Client.Create(ctx, job); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return fmt.Errorf("failed to create the fresh backup Job %s: %w", klog.KObj(job), err)
	}
	r.log.Info("Started a fresh backup", "job", klog.KObj(job))
	r.Driver.Event(r, corev1.EventTypeNormal, "BackupStarted", fmt.Sprintf("Started backup Job %s/%s from the restored state", job.Namespace, job.Name))
	return nil
}

// What happened to the tenant's data, the last part of a failure message.
const (
	outcomeUntouched      = "nothing was changed"
	outcomeOldData        = "the data was not swapped; etcd and the control plane were started again on the old data"
	outcomeRolledBack     = "the previous data was swapped back (rollback) and etcd and the control plane were started on it"
	outcomeRollbackFailed = "the rollback failed (%s); etcd and the control plane were started on the restored data"
	outcomeKeptRestored   = "the snapshot was restored and etcd runs on it (no rollback); the control plane did not become ready"
	// rollbackFailedPrefix starts the restore-rolled-back value of a failed rollback.
	rollbackFailedPrefix = "failed: "
)

// What happened to the tenant's keys in prefix mode, the last part of a failure message.
const (
	prefixOutcomeUnchanged    = "the tenant's keys were not changed; the control plane was started again on them"
	prefixOutcomeUndone       = "the tenant's keys were converged back to their content before the restore and the control plane was started on them"
	prefixOutcomeUndoFailed   = "the undo failed (%s); the tenant's keys may be partly restored, their content before the restore is kept in S3 (%s) and the control plane was started"
	prefixOutcomeKeptRestored = "the tenant's keys are the snapshot's (no undo); the control plane did not become ready"
)

// dataOutcome says what happened to the data, from what the restore recorded.
func dataOutcome(r *Restore, reason string) string {
	if p, err := r.recordedPlan(); err == nil && p.Mode == ModePrefix && r.get(kdcv1alpha1.AnnotationRestoreControlPlaneReplicas) != "" {
		rolledBack := r.get(kdcv1alpha1.AnnotationRestoreRolledBack)
		switch {
		case reason == kdcv1alpha1.ReasonControlPlaneStartFailed:
			return prefixOutcomeKeptRestored
		case !r.SwapMayHaveBegun():
			return prefixOutcomeUnchanged
		case rolledBack == restoreTrue:
			return prefixOutcomeUndone
		}
		return fmt.Sprintf(prefixOutcomeUndoFailed, strings.TrimPrefix(rolledBack, rollbackFailedPrefix), r.Cluster.Name+"/pre-restore/<attempt>.db")
	}
	cpRecorded := r.get(kdcv1alpha1.AnnotationRestoreControlPlaneReplicas) != ""
	swapped := r.get(kdcv1alpha1.AnnotationRestoreSwapped) == restoreTrue
	rolledBack := r.get(kdcv1alpha1.AnnotationRestoreRolledBack)
	switch {
	case !cpRecorded:
		return outcomeUntouched
	case !swapped:
		return outcomeOldData
	case reason == kdcv1alpha1.ReasonControlPlaneStartFailed:
		return outcomeKeptRestored
	case rolledBack == restoreTrue:
		return outcomeRolledBack
	}
	return fmt.Sprintf(outcomeRollbackFailed, strings.TrimPrefix(rolledBack, rollbackFailedPrefix))
}

// FailureMessage is the RestoreReady message of a failed restore (docs/restore.md):
// `Restore from "<key>" failed (<Reason>): <detail>; <what happened to the data>`.
func FailureMessage(key string, v Violation, outcome string) string {
	return fmt.Sprintf("Restore from %q failed (%s): %s; %s", key, v.Reason, strings.TrimPrefix(v.Detail, v.Reason+": "), outcome)
}

// finishFailure ends a failed restore: RestoreReady=False/Failed, then the record cleared
// (status first, so a restart in between repeats the report instead of losing it). An
// unfinished verify Job is deleted; finished Jobs stay for their logs until the next restore.
func (e *Engine) finishFailure(ctx context.Context, r *Restore, v Violation, outcome string, notReady []string) error {
	c := r.Cluster
	verify := &batchv1.Job{}
	err := e.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: kdcv1alpha1.VerifyJobName(c.Name)}, verify)
	if err == nil && e.jobOutcome(ctx, r, verify) == JobPending {
		if err := e.deleteJob(ctx, c.Namespace, verify.Name, metav1.DeletePropagationBackground); err != nil {
			return err
		}
	}
	msg := FailureMessage(r.Key(), v, outcome)
	if err := r.Driver.SetReady(ctx, r, metav1.ConditionFalse, kdcv1alpha1.ReasonRestoreFailed, msg, false); err != nil {
		return err
	}
	phase := r.Phase()
	if r.Failed() {
		r.Driver.Observe(Observation{Phase: PhaseRecovery, Duration: r.now.Sub(r.phaseSince())})
	}
	if err := e.Clear(ctx, r); err != nil {
		return err
	}
	r.Outcome = &Outcome{Failure: v, Message: msg, NotReady: notReady}
	r.Driver.Observe(Observation{Finished: true, Outcome: kdcv1alpha1.ReasonRestoreFailed, Reason: v.Reason})
	r.log.Info("Restore failed", "phase", phase, "reason", v.Reason, "message", msg)
	r.Driver.Event(r, corev1.EventTypeWarning, kdcv1alpha1.ReasonRestoreFailed, msg)
	return nil
}
