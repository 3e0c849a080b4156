package engine

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// recovery is one Run of the recovery after a recorded failure.
type recovery struct {
	failure Violation
	// left is the time until the recovery's deadline (Timeouts.Recovery, from the failure).
	left time.Duration
	// notReady lists what did not come back before the deadline.
	notReady []string
	// keepEtcdOff: a restore Job may still write the data directory; nothing may start on it.
	keepEtcdOff bool
	// deploy and sts are C-cp and DS-etcd, nil when gone.
	deploy *appsv1.Deployment
	sts    *appsv1.StatefulSet
}

// waitOr waits for what until the recovery's deadline; after it, what is reported as not ready
// and the recovery goes on.
func (rc *recovery) waitOr(r *Restore, what string) (step, bool) {
	if rc.left > 0 {
		r.log.V(1).Info("Recovering: waiting", "for", what, "deadlineIn", rc.left)
		return step{requeueAfter: rc.left, waiting: what}, true
	}
	rc.notReady = append(rc.notReady, what)
	return step{}, false
}

// recoveryStep is one guarded step of the recovery: done means go on with the next one.
type recoveryStep func(ctx context.Context, r *Restore, rc *recovery) (res step, done bool, err error)

// recover brings the cluster back after a recorded failure, then reports Failed. Its steps run in
// order, each guarded by what the restore recorded and idempotent, so a restart resumes it; the
// whole recovery has one deadline (Timeouts.Recovery, from the failure) after which it reports
// what is still not ready instead of waiting on (docs/restore.md, "Recovery"):
//
//  1. stopRestoreJob: a restore Job still running is deleted (foreground) and waited for, so
//     nothing writes the data directory while etcd starts; one that succeeded meanwhile counts as
//     swapped;
//  2. rollBack: if the snapshot was swapped in and etcd did not prove healthy on it (any failure
//     but ControlPlaneStartFailed), stop etcd and run the rollback Job, which swaps the previous
//     data back; record its outcome in restore-rolled-back;
//  3. startEtcd: DS-etcd back to the recorded count, until ready;
//  4. startControlPlane: C-cp back to the recorded count (fresh pods), until ready;
//  5. resumeControlPlane: the restore's own pause of C-cp's Kamaji owner removed (also when
//     something did not come back: no restore ends with a pause of its own left behind);
//  6. report: RestoreReady=False/Failed with the reason, the detail and what happened to the
//     data, and the record cleared.
//
// Steps 3 and 4 only touch what the restore recorded (changed); after ControlPlaneStartFailed
// there is nothing left to wait for.
func (e *Engine) recover(ctx context.Context, r *Restore) (step, error) {
	rc := &recovery{failure: r.Failure(), left: r.phaseSince().Add(e.timeouts().Recovery).Sub(r.now)}
	c := r.Cluster
	rc.deploy, rc.sts = &appsv1.Deployment{}, &appsv1.StatefulSet{}
	if ok, err := e.getIfExists(ctx, c.Namespace, kdcv1alpha1.ControlPlaneDeploymentName(c.Name), rc.deploy); err != nil {
		return step{}, err
	} else if !ok {
		rc.deploy = nil
	}
	if ok, err := e.getIfExists(ctx, c.DataStoreNamespace(), kdcv1alpha1.EtcdStatefulSetName(c.DataStore()), rc.sts); err != nil {
		return step{}, err
	} else if !ok {
		rc.sts = nil
	}
	for _, s := range []recoveryStep{e.stopRestoreJob, e.rollBack, e.startEtcd, e.startControlPlane, e.resumeControlPlane} {
		res, done, err := s(ctx, r, rc)
		if err != nil || !done {
			return res, err
		}
	}
	outcome := dataOutcome(r, rc.failure.Reason)
	if len(rc.notReady) > 0 {
		outcome += fmt.Sprintf(" (after %s: %s)", e.timeouts().Recovery, strings.Join(rc.notReady, "; "))
	}
	return step{advanced: true}, e.finishFailure(ctx, r, rc.failure, outcome, rc.notReady)
}

// stopRestoreJob is recovery step 1.
func (e *Engine) stopRestoreJob(ctx context.Context, r *Restore, rc *recovery) (step, bool, error) {
	if r.Phase() != kdcv1alpha1.PhaseRestoringSnapshot {
		return step{}, true, nil
	}
	c := r.Cluster
	p, err := e.plan(ctx, r)
	if err != nil {
		return step{}, false, err
	}
	if p.memberCount() > 1 {
		return e.stopMemberJobs(ctx, r, rc, p)
	}
	job := &batchv1.Job{}
	err = e.Client.Get(ctx, client.ObjectKey{Namespace: p.restoreJobNamespace(c), Name: kdcv1alpha1.RestoreJobName(c.Name)}, job)
	if apierrors.IsNotFound(err) || (err == nil && job.Annotations[kdcv1alpha1.AnnotationRestoreAttempt] != r.Attempt()) {
		return step{}, true, nil
	}
	if err != nil {
		return step{}, false, fmt.Errorf("failed to get the restore Job: %w", err)
	}
	// Finished: by its condition, or by its terminal pod (nothing runs any more).
	switch e.jobOutcome(ctx, r, job) {
	case JobSucceeded:
		if r.get(kdcv1alpha1.AnnotationRestoreSwapped) == "" {
			if err := e.save(ctx, r, map[string]string{kdcv1alpha1.AnnotationRestoreSwapped: restoreTrue}); err != nil {
				return step{}, false, err
			}
		}
		return step{}, true, nil
	case JobFailed:
		return step{}, true, nil
	}
	if job.DeletionTimestamp.IsZero() {
		r.Driver.Note(r, fmt.Sprintf("Stopping the unfinished restore Job %s/%s", job.Namespace, job.Name), "job", klog.KObj(job))
		if err := e.Client.Delete(ctx, job, client.PropagationPolicy(metav1.DeletePropagationForeground)); client.IgnoreNotFound(err) != nil {
			return step{}, false, fmt.Errorf("failed to delete Job %s: %w", klog.KObj(job), err)
		}
	}
	// The Job's deletion event wakes the next Run; its pod must be gone before etcd starts.
	if res, wait := rc.waitOr(r, "the restore Job did not stop"); wait {
		return res, false, nil
	}
	rc.keepEtcdOff = true
	return step{}, true, nil
}

// rollBack is recovery step 2.
func (e *Engine) rollBack(ctx context.Context, r *Restore, rc *recovery) (step, bool, error) {
	if rc.failure.Reason == kdcv1alpha1.ReasonControlPlaneStartFailed || r.get(kdcv1alpha1.AnnotationRestoreRolledBack) != "" || rc.keepEtcdOff {
		return step{}, true, nil
	}
	if p, err := e.plan(ctx, r); err == nil && p.Mode == ModePrefix {
		return e.undoPrefix(ctx, r, rc, p)
	} else if err == nil && p.memberCount() > 1 {
		if !r.SwapMayHaveBegun() && r.Phase() != kdcv1alpha1.PhaseRestoringSnapshot || rc.sts == nil {
			return step{}, true, nil
		}
		return e.rollBackMembers(ctx, r, rc, p)
	}
	swapped := r.get(kdcv1alpha1.AnnotationRestoreSwapped) == restoreTrue
	if !swapped || rc.sts == nil {
		return step{}, true, nil
	}
	if err := e.scaleStatefulSet(ctx, r, rc.sts, 0); err != nil {
		return step{}, false, err
	}
	stopped, err := e.etcdStopped(ctx, r.Cluster, 1)
	if err != nil {
		return step{}, false, err
	}
	if !stopped {
		if res, wait := rc.waitOr(r, "etcd did not stop for the rollback"); wait {
			return res, false, nil
		}
		return e.recordRollback(ctx, r, rollbackFailedPrefix+"etcd did not stop")
	}
	p, err := e.plan(ctx, r)
	if err != nil {
		return e.recordRollback(ctx, r, rollbackFailedPrefix+err.Error())
	}
	job, out, err := e.ensureJob(ctx, r, JobRollback, p)
	if err != nil {
		return step{}, false, err
	}
	switch out {
	case JobSucceeded:
		r.Driver.Event(r, corev1.EventTypeNormal, "RolledBack", "Swapped the previous data back into the etcd data directory")
		r.Driver.Note(r, "Rolled back: the previous data is in place again")
		return e.recordRollback(ctx, r, restoreTrue)
	case JobFailed:
		return e.recordRollback(ctx, r, rollbackFailedPrefix+e.failureDetail(ctx, job))
	}
	if res, wait := rc.waitOr(r, "the rollback Job did not finish"); wait {
		return res, false, nil
	}
	return e.recordRollback(ctx, r, rollbackFailedPrefix+"the rollback Job did not finish")
}

// recordRollback records the rollback's outcome; the recovery goes on with starting etcd.
func (e *Engine) recordRollback(ctx context.Context, r *Restore, value string) (step, bool, error) {
	if strings.HasPrefix(value, rollbackFailedPrefix) {
		r.log.Info("Rollback failed", "reason", kdcv1alpha1.ReasonEtcdStartFailed, "detail", value)
		r.Driver.Event(r, corev1.EventTypeWarning, "RollbackFailed", "Rollback "+value)
	}
	if err := e.save(ctx, r, map[string]string{kdcv1alpha1.AnnotationRestoreRolledBack: value}); err != nil {
		return step{}, false, err
	}
	return step{}, true, nil
}

// startEtcd is recovery step 3.
func (e *Engine) startEtcd(ctx context.Context, r *Restore, rc *recovery) (step, bool, error) {
	if r.get(kdcv1alpha1.AnnotationRestoreEtcdReplicas) == "" || rc.sts == nil || rc.keepEtcdOff {
		return step{}, true, nil
	}
	want := r.recordedReplicas(kdcv1alpha1.AnnotationRestoreEtcdReplicas)
	ready, _, err := e.startMembers(ctx, r, rc.sts, want)
	if err != nil {
		return step{}, false, err
	}
	if rc.failure.Reason != kdcv1alpha1.ReasonControlPlaneStartFailed && !ready {
		if res, wait := rc.waitOr(r, "etcd is not ready"); wait {
			return res, false, nil
		}
	}
	// No member may be left without its readiness probe, whatever happened.
	if err := e.restoreReadiness(ctx, r, rc.sts); err != nil {
		return step{}, false, err
	}
	return step{}, true, nil
}

// startControlPlane is recovery step 4.
func (e *Engine) startControlPlane(ctx context.Context, r *Restore, rc *recovery) (step, bool, error) {
	if r.get(kdcv1alpha1.AnnotationRestoreControlPlaneReplicas) == "" || rc.deploy == nil || rc.keepEtcdOff {
		return step{}, true, nil
	}
	d := rc.deploy
	want := r.recordedReplicas(kdcv1alpha1.AnnotationRestoreControlPlaneReplicas)
	if err := e.scaleDeployment(ctx, r, d, want, restartStamp(r)); err != nil {
		return step{}, false, err
	}
	if rc.failure.Reason != kdcv1alpha1.ReasonControlPlaneStartFailed && len(rc.notReady) == 0 && !DeploymentReady(d, want) {
		if res, wait := rc.waitOr(r, "the control plane is not ready"); wait {
			return res, false, nil
		}
	}
	return step{}, true, nil
}

// getIfExists reads namespace/name into obj and reports whether it exists.
func (e *Engine) getIfExists(ctx context.Context, namespace, name string, obj client.Object) (bool, error) {
	err := e.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, obj)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("failed to get %s: %w", klog.KRef(namespace, name), err)
	}
	return true, nil
}

// resumeControlPlane is recovery step 5.
func (e *Engine) resumeControlPlane(ctx context.Context, r *Restore, _ *recovery) (step, bool, error) {
	return step{}, true, e.resumeOwner(ctx, r)
}

// undoPrefix is recovery step 2 in prefix mode: once the restore Job may have written, the undo
// Job converges the prefix back to the copy the restore kept before its first write (it does
// nothing when no copy was made: nothing was written).
func (e *Engine) undoPrefix(ctx context.Context, r *Restore, rc *recovery, p *Plan) (step, bool, error) {
	if !r.SwapMayHaveBegun() {
		return step{}, true, nil
	}
	job, out, err := e.ensureJob(ctx, r, JobRollback, p)
	if err != nil {
		return step{}, false, err
	}
	switch out {
	case JobSucceeded:
		r.Driver.Event(r, corev1.EventTypeNormal, "RolledBack", "Converged the keys under "+p.EtcdPrefix+"/ back to their content before the restore")
		r.Driver.Note(r, "Rolled back: the tenant's keys are as before the restore")
		return e.recordRollback(ctx, r, restoreTrue)
	case JobFailed:
		return e.recordRollback(ctx, r, rollbackFailedPrefix+e.failureDetail(ctx, job))
	}
	if res, wait := rc.waitOr(r, "the undo Job did not finish"); wait {
		return res, false, nil
	}
	return e.recordRollback(ctx, r, rollbackFailedPrefix+"the undo Job did not finish")
}
