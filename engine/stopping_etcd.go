package engine

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// stoppingEtcd is the StoppingEtcd step. DS-etcd's replica count was recorded on entering the
// phase; here:
//
//  1. scale DS-etcd to 0 (idempotent; several members get memberStopGrace to stop);
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
	if err := e.scaleStatefulSet(ctx, r, w.Etcd, 0); err != nil {
		return step{}, err
	}
	if n := p.memberCount(); n > 1 {
		if err := e.hurryMembers(ctx, r, n); err != nil {
			return step{}, err
		}
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

// memberStopGrace is how long a member of a multi-member etcd may take to stop (a kubelet gives
// at least 2 s): members stopped together each try to hand their leadership to another stopping
// one and give up only after etcd's request timeout (7 s); the control plane is drained, so
// nothing writes, and etcd's data survives a kill.
const memberStopGrace int64 = 1

// hurryMembers deletes the terminating pods DS-etcd-0 to -<n-1> again with memberStopGrace.
func (e *Engine) hurryMembers(ctx context.Context, r *Restore, n int) error {
	c := r.Cluster
	for i := range n {
		pod := objectMeta("Pod")
		err := e.Client.Get(ctx, client.ObjectKey{Namespace: c.DataStoreNamespace(), Name: kdcv1alpha1.MemberPodName(c.DataStore(), i)}, pod)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("failed to get pod %s: %w", klog.KRef(c.DataStoreNamespace(), kdcv1alpha1.MemberPodName(c.DataStore(), i)), err)
		}
		if g := pod.DeletionGracePeriodSeconds; g != nil && *g <= memberStopGrace {
			continue
		}
		uid := pod.UID
		err = e.Client.Delete(ctx, pod, client.GracePeriodSeconds(memberStopGrace), client.Preconditions{UID: &uid})
		if client.IgnoreNotFound(err) != nil && !apierrors.IsConflict(err) {
			return fmt.Errorf("failed to stop pod %s: %w", klog.KObj(pod), err)
		}
	}
	return nil
}
