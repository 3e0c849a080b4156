package controller

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/klog/v2"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// reconcileStartingControlPlane is the StartingControlPlane step:
//
//  1. scale C-cp back to the recorded replica count and stamp its pod template with
//     AnnotationRestartedAt = the attempt, so it rolls out fresh pods (nothing cached from before
//     the restore survives, even if a pod somehow outlived the drain);
//  2. wait until the rollout is complete and ready; ControlPlaneStartFailed at the deadline
//     (etcd keeps the restored data: it started fine, so there is no rollback);
//  3. finish: Succeeded (restore_finish.go).
func (r *RestoreReconciler) reconcileStartingControlPlane(ctx context.Context, s *restoreScope) (stepResult, error) {
	deploy, _, err := r.workloads(ctx, s.cluster)
	if err != nil {
		return r.failOnMissing(ctx, s, err)
	}
	want := s.recordedReplicas(kdcv1alpha1.AnnotationRestoreControlPlaneReplicas)
	if err := r.scaleDeployment(ctx, s, deploy, want, s.attempt()); err != nil {
		return stepResult{}, err
	}
	if !restoreDeploymentReady(deploy, want) {
		return r.wait(ctx, s, kdcv1alpha1.ReasonControlPlaneStartFailed,
			fmt.Sprintf("Deployment %s did not become ready", klog.KObj(deploy)))
	}
	return stepResult{advanced: true}, r.finishSuccess(ctx, s)
}

// restoreDeploymentReady reports whether the Deployment observed its spec and completed the
// rollout: want replicas, all updated, all ready and available, no old pods left.
func restoreDeploymentReady(d *appsv1.Deployment, want int32) bool {
	st := d.Status
	return st.ObservedGeneration >= d.Generation && restoreReplicas(d.Spec.Replicas) == want &&
		st.Replicas == want && st.UpdatedReplicas == want && st.ReadyReplicas >= want && st.AvailableReplicas >= want
}
