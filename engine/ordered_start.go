package engine

import (
	"context"
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// A StatefulSet with podManagementPolicy OrderedReady creates member i+1 only once member i is
// ready; when etcd's readiness needs a quorum, member 0 of a stopped multi-member etcd never is,
// and the others are never created. So the members are started without the readiness probe
// (all of them, in order, each ready once running), and the probe is then put back, which rolls
// the members one by one while the others keep the quorum: ready again means healthy
// (docs/restore.md, "Pod management policy").

// startMembers scales DS-etcd to want and reports whether it runs want ready members, and what
// it waits for when not.
func (e *Engine) startMembers(ctx context.Context, r *Restore, sts *appsv1.StatefulSet, want int32) (bool, string, error) {
	if want > 1 && sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		return e.startOrdered(ctx, r, sts, want)
	}
	if err := e.scaleStatefulSet(ctx, r, sts, want); err != nil {
		return false, "", err
	}
	return StatefulSetReady(sts, want), fmt.Sprintf("etcd: %d/%d ready", sts.Status.ReadyReplicas, want), nil
}

// startOrdered is startMembers under OrderedReady: record the etcd container's readiness probe,
// remove it and scale up; once every member runs, put it back and wait for that rollout.
func (e *Engine) startOrdered(ctx context.Context, r *Restore, sts *appsv1.StatefulSet, want int32) (bool, string, error) {
	ctr, err := etcdContainer(sts.Spec.Template.Spec.Containers)
	if err != nil {
		return false, "", err
	}
	saved := r.get(kdcv1alpha1.AnnotationRestoreEtcdReadiness)
	if saved == "" && ctr.ReadinessProbe == nil {
		if err := e.scaleStatefulSet(ctx, r, sts, want); err != nil {
			return false, "", err
		}
		return StatefulSetReady(sts, want), fmt.Sprintf("etcd: %d/%d ready", sts.Status.ReadyReplicas, want), nil
	}
	if saved == "" {
		enc, err := json.Marshal(ctr.ReadinessProbe)
		if err != nil {
			return false, "", fmt.Errorf("failed to record the readiness probe of StatefulSet %s: %w", klog.KObj(sts), err)
		}
		if err := e.save(ctx, r, map[string]string{kdcv1alpha1.AnnotationRestoreEtcdReadiness: string(enc)}); err != nil {
			return false, "", err
		}
		saved = string(enc)
	}
	probe := &corev1.Probe{}
	if err := json.Unmarshal([]byte(saved), probe); err != nil {
		return false, "", fmt.Errorf("the recorded readiness probe is unreadable: %w", err)
	}
	if ctr.ReadinessProbe != nil && replicas(sts.Spec.Replicas) < want {
		// Start: every member without the probe, in order.
		if err := e.setReadiness(ctx, r, sts, nil); err != nil {
			return false, "", err
		}
		r.Driver.Event(r, corev1.EventTypeNormal, "EtcdStartedInOrder", fmt.Sprintf("Starting the %d members of StatefulSet %s/%s without their readiness probe (podManagementPolicy OrderedReady), then putting it back", want, sts.Namespace, sts.Name))
	}
	if err := e.scaleStatefulSet(ctx, r, sts, want); err != nil {
		return false, "", err
	}
	if ctr.ReadinessProbe == nil {
		if !StatefulSetReady(sts, want) {
			return false, fmt.Sprintf("etcd: %d/%d members running (readiness probe off)", sts.Status.ReadyReplicas, want), nil
		}
		if err := e.setReadiness(ctx, r, sts, probe); err != nil {
			return false, "", err
		}
		return false, "etcd: readiness probe back, rolling the members", nil
	}
	st := sts.Status
	done := StatefulSetReady(sts, want) && st.UpdateRevision != "" && st.CurrentRevision == st.UpdateRevision && st.UpdatedReplicas >= want
	return done, fmt.Sprintf("etcd: %d/%d members ready with their readiness probe", st.ReadyReplicas, want), nil
}

// setReadiness sets the etcd container's readiness probe (nil removes it).
func (e *Engine) setReadiness(ctx context.Context, r *Restore, sts *appsv1.StatefulSet, probe *corev1.Probe) error {
	orig := sts.DeepCopy()
	for i := range sts.Spec.Template.Spec.Containers {
		if c := &sts.Spec.Template.Spec.Containers[i]; c.Name == mustEtcdContainer(sts).Name {
			c.ReadinessProbe = probe
		}
	}
	if err := e.Client.Patch(ctx, sts, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("failed to set the readiness probe of StatefulSet %s: %w", klog.KObj(sts), err)
	}
	r.log.Info("Set the etcd readiness probe", "statefulSet", klog.KObj(sts), "probe", probe != nil)
	return nil
}

// restoreReadiness puts a readiness probe the restore removed back (the recovery's start).
func (e *Engine) restoreReadiness(ctx context.Context, r *Restore, sts *appsv1.StatefulSet) error {
	saved := r.get(kdcv1alpha1.AnnotationRestoreEtcdReadiness)
	if saved == "" {
		return nil
	}
	if c, err := etcdContainer(sts.Spec.Template.Spec.Containers); err != nil || c.ReadinessProbe != nil {
		return nil
	}
	probe := &corev1.Probe{}
	if err := json.Unmarshal([]byte(saved), probe); err != nil {
		return fmt.Errorf("the recorded readiness probe is unreadable: %w", err)
	}
	return e.setReadiness(ctx, r, sts, probe)
}

func mustEtcdContainer(sts *appsv1.StatefulSet) *corev1.Container {
	c, err := etcdContainer(sts.Spec.Template.Spec.Containers)
	if err != nil {
		return &corev1.Container{}
	}
	return c
}
