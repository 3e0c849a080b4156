package controller

import (
	"context"
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/klog/v2"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// reconcileStartingEtcd is the StartingEtcd step:
//
//  1. scale DS-etcd back to the recorded replica count;
//  2. wait until it is ready on the restored data; EtcdStartFailed at the deadline (the
//     recovery then swaps the previous data back with the rollback Job);
//  3. enter StartingControlPlane.
func (r *RestoreReconciler) reconcileStartingEtcd(ctx context.Context, s *restoreScope) (stepResult, error) {
	_, sts, err := r.workloads(ctx, s.cluster)
	if err != nil {
		return r.failOnMissing(ctx, s, err)
	}
	want := s.recordedReplicas(kdcv1alpha1.AnnotationRestoreEtcdReplicas)
	if err := r.scaleStatefulSet(ctx, s, sts, want); err != nil {
		return stepResult{}, err
	}
	if !restoreStatefulSetReady(sts, want) {
		return r.wait(ctx, s, kdcv1alpha1.ReasonEtcdStartFailed,
			fmt.Sprintf("StatefulSet %s did not become ready on the restored data", klog.KObj(sts)))
	}
	return r.enter(ctx, s, kdcv1alpha1.PhaseStartingControlPlane, nil)
}

// recordedReplicas is a replica count recorded in annotation k; 1 when unreadable (etcd and the
// control plane are never left at 0 by mistake).
func (s *restoreScope) recordedReplicas(k string) int32 {
	n, err := strconv.ParseInt(s.ann(k), 10, 32)
	if err != nil || n < 0 {
		return 1
	}
	return int32(n)
}

// restoreStatefulSetReady reports whether the StatefulSet observed its spec and runs want ready
// replicas.
func restoreStatefulSetReady(sts *appsv1.StatefulSet, want int32) bool {
	st := sts.Status
	return st.ObservedGeneration >= sts.Generation && restoreReplicas(sts.Spec.Replicas) == want &&
		st.Replicas == want && st.ReadyReplicas >= want
}
