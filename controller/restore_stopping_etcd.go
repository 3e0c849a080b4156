package controller

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// reconcileStoppingEtcd is the StoppingEtcd step. DS-etcd's replica count was recorded on
// entering the phase; here:
//
//  1. scale DS-etcd to 0 (idempotent);
//  2. wait until pod DS-etcd-0 is gone (nothing may hold the data directory while the restore
//     Job swaps it); EtcdStopFailed at the deadline;
//  3. enter RestoringSnapshot.
func (r *RestoreReconciler) reconcileStoppingEtcd(ctx context.Context, s *restoreScope) (stepResult, error) {
	_, sts, err := r.workloads(ctx, s.cluster)
	if err != nil {
		return r.failOnMissing(ctx, s, err)
	}
	if err := r.scaleStatefulSet(ctx, s, sts, 0); err != nil {
		return stepResult{}, err
	}
	stopped, err := r.etcdStopped(ctx, s.cluster)
	if err != nil {
		return stepResult{}, err
	}
	if !stopped || sts.Status.ObservedGeneration < sts.Generation || sts.Status.Replicas != 0 {
		return r.wait(ctx, s, kdcv1alpha1.ReasonEtcdStopFailed,
			fmt.Sprintf("pod %s did not go away", klog.KRef(s.cluster.DataStoreNamespace(), kdcv1alpha1.EtcdPodName(s.cluster.DataStore()))))
	}
	return r.enter(ctx, s, kdcv1alpha1.PhaseRestoringSnapshot, nil)
}

// etcdStopped reports whether pod DS-etcd-0 is gone (read from the metadata cache).
func (r *RestoreReconciler) etcdStopped(ctx context.Context, c *kdcv1alpha1.KdcCluster) (bool, error) {
	pod := restoreObjectMeta("Pod")
	key := client.ObjectKey{Namespace: c.DataStoreNamespace(), Name: kdcv1alpha1.EtcdPodName(c.DataStore())}
	err := r.Client.Get(ctx, key, pod)
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("failed to get pod %s: %w", klog.KRef(key.Namespace, key.Name), err)
	}
	return false, nil
}
