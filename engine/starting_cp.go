package engine

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/klog/v2"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// startingControlPlane is the StartingControlPlane step:
//
//  1. scale C-cp back to the recorded replica count and stamp its pod template with
//     AnnotationRestartedAt = the attempt, so it rolls out fresh pods (nothing cached from before
//     the restore survives, even if a pod somehow outlived the drain);
//  2. wait until the rollout is complete and ready; ControlPlaneStartFailed at the deadline
//     (etcd keeps the restored data: it started fine, so there is no rollback);
//  3. resume C-cp's Kamaji owner if the restore paused it (only then: Kamaji would otherwise
//     roll the Deployment to its own spec while the restored control plane starts);
//  4. finish: Succeeded (finish.go).
func (e *Engine) startingControlPlane(ctx context.Context, r *Restore) (step, error) {
	w, err := e.workloads(ctx, r.Cluster)
	if err != nil {
		return e.failOnMissing(ctx, r, err)
	}
	want := r.recordedReplicas(kdcv1alpha1.AnnotationRestoreControlPlaneReplicas)
	d := w.ControlPlane
	if err := e.scaleDeployment(ctx, r, d, want, restartStamp(r)); err != nil {
		return step{}, err
	}
	if !DeploymentReady(d, want) {
		st := d.Status
		return e.wait(ctx, r, kdcv1alpha1.ReasonControlPlaneStartFailed,
			fmt.Sprintf("Deployment %s did not become ready", klog.KObj(d)),
			fmt.Sprintf("control plane: %d updated, %d ready, %d available of %d", st.UpdatedReplicas, st.ReadyReplicas, st.AvailableReplicas, want))
	}
	r.Driver.Note(r, "Control plane ready with fresh pods")
	if err := e.resumeOwner(ctx, r); err != nil {
		return step{}, err
	}
	return step{advanced: true}, e.finishSuccess(ctx, r)
}

// DeploymentReady reports whether the Deployment observed its spec and completed the rollout:
// want replicas, all updated, all ready and available, no old pods left.
func DeploymentReady(d *appsv1.Deployment, want int32) bool {
	st := d.Status
	return st.ObservedGeneration >= d.Generation && replicas(d.Spec.Replicas) == want &&
		st.Replicas == want && st.UpdatedReplicas == want && st.ReadyReplicas >= want && st.AvailableReplicas >= want
}

// restartStamp is the restarted-at stamp that rolls C-cp out with fresh pods, or "" under Kamaji:
// once resumed, Kamaji rewrites the pod template's annotations (internal/builders/controlplane/
// deployment.go), which would roll the restored control plane out a second time; the drain has
// left no pod, so the scale-up alone starts fresh ones (docs/restore.md).
func restartStamp(r *Restore) string {
	if r.get(kdcv1alpha1.AnnotationRestoreControlPlanePaused) != "" {
		return ""
	}
	return r.Attempt()
}
