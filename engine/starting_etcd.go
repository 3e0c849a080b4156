package engine

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/klog/v2"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// startingEtcd is the StartingEtcd step:
//
//  1. scale DS-etcd back to the recorded replica count (several members under OrderedReady:
//     without their readiness probe, then with it again; ordered_start.go);
//  2. wait until it is ready on the restored data; EtcdStartFailed at the deadline (the
//     recovery then swaps the previous data back with the rollback Job);
//  3. enter StartingControlPlane.
func (e *Engine) startingEtcd(ctx context.Context, r *Restore) (step, error) {
	w, err := e.workloads(ctx, r.Cluster)
	if err != nil {
		return e.failOnMissing(ctx, r, err)
	}
	want := r.recordedReplicas(kdcv1alpha1.AnnotationRestoreEtcdReplicas)
	ready, status, err := e.startMembers(ctx, r, w.Etcd, want)
	if err != nil {
		return step{}, err
	}
	if !ready {
		return e.wait(ctx, r, kdcv1alpha1.ReasonEtcdStartFailed,
			fmt.Sprintf("StatefulSet %s did not become ready on the restored data", klog.KObj(w.Etcd)), status)
	}
	r.Driver.Note(r, "etcd ready on the restored data")
	return e.enter(ctx, r, kdcv1alpha1.PhaseStartingControlPlane, nil)
}

// StatefulSetReady reports whether the StatefulSet observed its spec and runs want ready
// replicas.
func StatefulSetReady(sts *appsv1.StatefulSet, want int32) bool {
	st := sts.Status
	return st.ObservedGeneration >= sts.Generation && replicas(sts.Spec.Replicas) == want &&
		st.Replicas == want && st.ReadyReplicas >= want
}
