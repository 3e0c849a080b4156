package controller

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

// What happened to the tenant's data, the last part of a failure message.
const (
	restoreOutcomeUntouched      = "nothing was changed"
	restoreOutcomeOldData        = "the data was not swapped; etcd and the control plane were started again on the old data"
	restoreOutcomeRolledBack     = "the previous data was swapped back (rollback) and etcd and the control plane were started on it"
	restoreOutcomeRollbackFailed = "the rollback failed (%s); etcd and the control plane were started on the restored data"
	restoreOutcomeKeptRestored   = "the snapshot was restored and etcd runs on it (no rollback); the control plane did not become ready"
	// restoreRollbackFailedPrefix starts the restore-rolled-back value of a failed rollback.
	restoreRollbackFailedPrefix = "failed: "
)

// reconcileFailure brings the cluster back after a recorded failure (restore-failure), then
// reports Failed. Each step is idempotent and resumable like the phases; the whole recovery has
// one deadline (RestoreTimeouts.Recovery, from the failure) after which it reports what is still
// not ready instead of waiting on:
//
//  1. a restore Job still running is deleted (foreground) and waited for, so nothing writes the
//     data directory while etcd starts; one that succeeded meanwhile counts as swapped;
//  2. if the snapshot was swapped in and etcd did not prove healthy on it (any failure but
//     ControlPlaneStartFailed), stop etcd and run the rollback Job, which swaps the previous
//     data back; record its outcome in restore-rolled-back;
//  3. scale DS-etcd back to the recorded count and wait until ready;
//  4. scale C-cp back to the recorded count (fresh pods) and wait until ready;
//  5. report RestoreReady=False/Failed with the reason, the detail and what happened to the data,
//     and clear the annotations.
//
// Steps 3 and 4 only touch what the restore recorded (changed); after ControlPlaneStartFailed
// there is nothing left to wait for.
func (r *RestoreReconciler) reconcileFailure(ctx context.Context, s *restoreScope) (stepResult, error) {
	c := s.cluster
	reason, detail, _ := strings.Cut(s.ann(kdcv1alpha1.AnnotationRestoreFailure), ": ")
	left := s.phaseSince().Add(r.timeouts().Recovery).Sub(s.now)
	var notReady []string
	waitOr := func(what string) (stepResult, bool) {
		if left > 0 {
			s.log.V(1).Info("Recovering: waiting", "for", what, "deadlineIn", left)
			return stepResult{requeueAfter: left}, true
		}
		notReady = append(notReady, what)
		return stepResult{}, false
	}

	// 1. No restore Job may run any more.
	if s.phase() == kdcv1alpha1.PhaseRestoringSnapshot {
		job := &batchv1.Job{}
		err := r.Client.Get(ctx, client.ObjectKey{Namespace: c.DataStoreNamespace(), Name: kdcv1alpha1.RestoreJobName(c.Name)}, job)
		if err != nil && !apierrors.IsNotFound(err) {
			return stepResult{}, fmt.Errorf("failed to get the restore Job: %w", err)
		}
		if err == nil && job.Annotations[kdcv1alpha1.AnnotationRestoreAttempt] == s.attempt() {
			// Finished: by its condition, or by its terminal pod (nothing runs any more).
			switch r.restoreJobState(ctx, s, job) {
			case restoreJobSucceeded:
				if s.ann(kdcv1alpha1.AnnotationRestoreSwapped) == "" {
					if err := r.recordAnnotations(ctx, s, map[string]string{kdcv1alpha1.AnnotationRestoreSwapped: restoreTrue}); err != nil {
						return stepResult{}, err
					}
				}
			case restoreJobFailedState:
			default:
				if job.DeletionTimestamp.IsZero() {
					s.log.Info("Stopping the unfinished restore Job", "job", klog.KObj(job))
					if err := r.Client.Delete(ctx, job, client.PropagationPolicy(metav1.DeletePropagationForeground)); client.IgnoreNotFound(err) != nil {
						return stepResult{}, fmt.Errorf("failed to delete Job %s: %w", klog.KObj(job), err)
					}
				}
				// The Job's deletion event wakes us; its pod must be gone before etcd starts.
				return stepResult{}, nil
			}
		}
	}

	swapped := s.ann(kdcv1alpha1.AnnotationRestoreSwapped) == restoreTrue
	rollback := swapped && reason != kdcv1alpha1.ReasonControlPlaneStartFailed
	_, sts, err := r.workloads(ctx, c)
	if _, missing := err.(*restoreInputsError); err != nil && !missing {
		return stepResult{}, err
	}

	// 2. Roll back to the previous data.
	if rollback && s.ann(kdcv1alpha1.AnnotationRestoreRolledBack) == "" && sts != nil {
		if err := r.scaleStatefulSet(ctx, s, sts, 0); err != nil {
			return stepResult{}, err
		}
		stopped, err := r.etcdStopped(ctx, c)
		if err != nil {
			return stepResult{}, err
		}
		if !stopped {
			if res, wait := waitOr("etcd did not stop for the rollback"); wait {
				return res, nil
			}
			return r.recordRollback(ctx, s, restoreRollbackFailedPrefix+"etcd did not stop")
		}
		in := restoreJobInputs{Attempt: s.attempt(), Image: r.Options.Image}
		if in.Member, err = deriveEtcdMember(sts); err != nil {
			return r.recordRollback(ctx, s, restoreRollbackFailedPrefix+err.Error())
		}
		in.RunAs = restoreRunAsOf(&sts.Spec.Template.Spec)
		job, state, err := r.ensureRestoreJob(ctx, s, restoreJobRollback, in)
		if err != nil {
			return stepResult{}, err
		}
		switch state {
		case restoreJobSucceeded:
			r.event(s, corev1.EventTypeNormal, "RolledBack", "Swapped the previous data back into the etcd data directory")
			return r.recordRollback(ctx, s, restoreTrue)
		case restoreJobFailedState:
			return r.recordRollback(ctx, s, restoreRollbackFailedPrefix+r.jobFailureDetail(ctx, job))
		}
		if res, wait := waitOr("the rollback Job did not finish"); wait {
			return res, nil
		}
		return r.recordRollback(ctx, s, restoreRollbackFailedPrefix+"the rollback Job did not finish")
	}

	waitReady := reason != kdcv1alpha1.ReasonControlPlaneStartFailed
	// 3. etcd back up.
	if s.ann(kdcv1alpha1.AnnotationRestoreEtcdReplicas) != "" && sts != nil {
		want := s.recordedReplicas(kdcv1alpha1.AnnotationRestoreEtcdReplicas)
		if err := r.scaleStatefulSet(ctx, s, sts, want); err != nil {
			return stepResult{}, err
		}
		if waitReady && !restoreStatefulSetReady(sts, want) {
			if res, wait := waitOr("etcd is not ready"); wait {
				return res, nil
			}
		}
	}
	// 4. Control plane back up, with fresh pods.
	if s.ann(kdcv1alpha1.AnnotationRestoreControlPlaneReplicas) != "" {
		deploy, _, err := r.workloads(ctx, c)
		if deploy == nil {
			if _, missing := err.(*restoreInputsError); !missing {
				return stepResult{}, err
			}
		} else {
			want := s.recordedReplicas(kdcv1alpha1.AnnotationRestoreControlPlaneReplicas)
			if err := r.scaleDeployment(ctx, s, deploy, want, s.attempt()); err != nil {
				return stepResult{}, err
			}
			if waitReady && len(notReady) == 0 && !restoreDeploymentReady(deploy, want) {
				if res, wait := waitOr("the control plane is not ready"); wait {
					return res, nil
				}
			}
		}
	}

	// 5. Report.
	outcome := restoreFailureOutcome(s, reason)
	if len(notReady) > 0 {
		outcome += fmt.Sprintf(" (after %s: %s)", r.timeouts().Recovery, strings.Join(notReady, "; "))
	}
	return stepResult{advanced: true}, r.finishFailure(ctx, s, reason, detail, outcome)
}

// recordRollback records the rollback's outcome; the recovery goes on with starting etcd.
func (r *RestoreReconciler) recordRollback(ctx context.Context, s *restoreScope, value string) (stepResult, error) {
	if strings.HasPrefix(value, restoreRollbackFailedPrefix) {
		s.log.Info("Rollback failed", "reason", kdcv1alpha1.ReasonEtcdStartFailed, "detail", value)
		r.event(s, corev1.EventTypeWarning, "RollbackFailed", "Rollback %s", value)
	}
	if err := r.recordAnnotations(ctx, s, map[string]string{kdcv1alpha1.AnnotationRestoreRolledBack: value}); err != nil {
		return stepResult{}, err
	}
	return stepResult{advanced: true}, nil
}

// restoreFailureOutcome says what happened to the data, from what the restore recorded.
func restoreFailureOutcome(s *restoreScope, reason string) string {
	return restoreOutcomeOf(s.ann(kdcv1alpha1.AnnotationRestoreControlPlaneReplicas) != "",
		s.ann(kdcv1alpha1.AnnotationRestoreSwapped) == restoreTrue, s.ann(kdcv1alpha1.AnnotationRestoreRolledBack), reason)
}

// restoreOutcomeOf says what happened to the data: cpRecorded when the control plane's count was
// recorded (the drain may have begun), swapped when the snapshot was swapped in, rolledBack the
// restore-rolled-back value ("true" or "failed: <detail>").
func restoreOutcomeOf(cpRecorded, swapped bool, rolledBack, reason string) string {
	switch {
	case !cpRecorded:
		return restoreOutcomeUntouched
	case !swapped:
		return restoreOutcomeOldData
	case reason == kdcv1alpha1.ReasonControlPlaneStartFailed:
		return restoreOutcomeKeptRestored
	case rolledBack == restoreTrue:
		return restoreOutcomeRolledBack
	}
	return fmt.Sprintf(restoreOutcomeRollbackFailed, strings.TrimPrefix(rolledBack, restoreRollbackFailedPrefix))
}

// restoreFailureMessage is the RestoreReady message of a failed restore (DESIGN.md). The
// webhook's rule details start with their reason; it is already in the parentheses.
func restoreFailureMessage(key, reason, detail, outcome string) string {
	detail = strings.TrimPrefix(detail, reason+": ")
	return fmt.Sprintf("Restore from %q failed (%s): %s; %s", key, reason, detail, outcome)
}

// finishFailure ends a failed restore: RestoreReady=False/Failed, then the annotations cleared
// (status first, so a restart in between repeats the report instead of losing it). An
// unfinished verify Job is deleted; finished Jobs stay for their logs until the next restore.
func (r *RestoreReconciler) finishFailure(ctx context.Context, s *restoreScope, reason, detail, outcome string) error {
	c := s.cluster
	verify := &batchv1.Job{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: kdcv1alpha1.VerifyJobName(c.Name)}, verify)
	if err == nil && r.restoreJobState(ctx, s, verify) == restoreJobPending {
		if err := r.deleteRestoreJob(ctx, c.Namespace, verify.Name, metav1.DeletePropagationBackground); err != nil {
			return err
		}
	}
	msg := restoreFailureMessage(s.key(), reason, detail, outcome)
	if err := r.patchStatus(ctx, s, func(c *kdcv1alpha1.KdcCluster) {
		setCondition(c, kdcv1alpha1.ConditionRestoreReady, metav1.ConditionFalse, kdcv1alpha1.ReasonRestoreFailed, msg)
	}); err != nil {
		return err
	}
	phase := s.phase()
	if s.ann(kdcv1alpha1.AnnotationRestoreFailure) != "" {
		restoreObservePhase(restoreRecoveryPhase, s.now.Sub(s.phaseSince()))
	}
	if err := r.clearRestoreAnnotations(ctx, s); err != nil {
		return err
	}
	s.finished = true
	restoreFinished(kdcv1alpha1.ReasonRestoreFailed, reason)
	s.log.Info("Restore failed", "phase", phase, "reason", reason, "message", msg)
	r.event(s, corev1.EventTypeWarning, kdcv1alpha1.ReasonRestoreFailed, "%s", msg)
	return nil
}
