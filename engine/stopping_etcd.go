package engine

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// stoppingEtcd is the StoppingEtcd step. DS-etcd's replica count was recorded on entering the
// phase; here:
//
//  1. scale DS-etcd to 0 (idempotent; several members one at a time, stopTarget);
//  2. wait until pod DS-etcd-0 is gone (nothing may hold the data directory while the restore
//     Job swaps it); EtcdStopFailed at the deadline;
//  3. enter RestoringSnapshot.
func (e *Engine) stoppingEtcd(ctx context.Context, r *Restore) (step, error) {
	w, err := e.workloads(ctx, r.Cluster)
	if err != nil {
		return e.failOnMissing(ctx, r, err)
	}
	p, err := e.plan(ctx, r)
	if err != nil {
		return e.failOnMissing(ctx, r, err)
	}
	if err := e.scaleStatefulSet(ctx, r, w.Etcd, e.stopTarget(ctx, r, w.Etcd)); err != nil {
		return step{}, err
	}
	stopped, err := e.etcdStopped(ctx, r.Cluster, p.memberCount())
	if err != nil {
		return step{}, err
	}
	pod := klog.KRef(r.Cluster.DataStoreNamespace(), kdcv1alpha1.EtcdPodName(r.Cluster.DataStore()))
	if sts := w.Etcd; !stopped || sts.Status.ObservedGeneration < sts.Generation || sts.Status.Replicas != 0 {
		return e.wait(ctx, r, kdcv1alpha1.ReasonEtcdStopFailed, fmt.Sprintf("pod %s did not go away", pod), "")
	}
	r.Driver.Note(r, fmt.Sprintf("etcd stopped: pod %s is gone", pod))
	return e.enter(ctx, r, kdcv1alpha1.PhaseRestoringSnapshot, nil)
}

// etcdStopped reports whether the pods DS-etcd-0 to -<n-1> are gone (read from the metadata
// cache).
func (e *Engine) etcdStopped(ctx context.Context, c *kdcv1alpha1.KdcCluster, n int) (bool, error) {
	for i := range n {
		pod := objectMeta("Pod")
		key := client.ObjectKey{Namespace: c.DataStoreNamespace(), Name: kdcv1alpha1.MemberPodName(c.DataStore(), i)}
		err := e.Client.Get(ctx, key, pod)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("failed to get pod %s: %w", klog.KRef(key.Namespace, key.Name), err)
		}
		return false, nil
	}
	return true, nil
}

// stopTarget is the replica count to scale DS-etcd to now: one member fewer than it has once
// the member removed last is gone, down to 0. Members stopped all at once each try to hand
// their leadership to another stopping one and give up only after seconds; one by one, the
// leader hands it to a running member at once (docs/restore.md, "Multi-member datastores").
func (e *Engine) stopTarget(ctx context.Context, r *Restore, sts *appsv1.StatefulSet) int32 {
	cur := replicas(sts.Spec.Replicas)
	if cur <= 1 {
		return 0
	}
	total := r.recordedReplicas(kdcv1alpha1.AnnotationRestoreEtcdReplicas)
	if cur < total {
		if gone, err := e.memberGone(ctx, r.Cluster, int(cur)); err != nil || !gone {
			return cur
		}
	}
	return cur - 1
}

// memberGone reports whether pod DS-etcd-<i> is gone (read from the metadata cache).
func (e *Engine) memberGone(ctx context.Context, c *kdcv1alpha1.KdcCluster, i int) (bool, error) {
	pod := objectMeta("Pod")
	err := e.Client.Get(ctx, client.ObjectKey{Namespace: c.DataStoreNamespace(), Name: kdcv1alpha1.MemberPodName(c.DataStore(), i)}, pod)
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	return false, err
}
