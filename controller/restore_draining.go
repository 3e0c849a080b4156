package controller

import (
	"context"
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// reconcileDraining is the DrainingControlPlane step. C-cp's replica count was recorded on
// entering the phase; here:
//
//  1. scale C-cp to 0 (idempotent);
//  2. wait until the Deployment reports no replicas and none of its pods exists any more (a
//     terminating API server could still write to etcd); DrainFailed at the deadline;
//  3. record DS-etcd's replica count and enter StoppingEtcd.
func (r *RestoreReconciler) reconcileDraining(ctx context.Context, s *restoreScope) (stepResult, error) {
	c := s.cluster
	deploy, sts, err := r.workloads(ctx, c)
	if err != nil {
		return r.failOnMissing(ctx, s, err)
	}
	if err := r.scaleDeployment(ctx, s, deploy, 0, ""); err != nil {
		return stepResult{}, err
	}
	gone, err := r.deploymentDrained(ctx, deploy)
	if err != nil {
		return stepResult{}, err
	}
	if !gone {
		return r.wait(ctx, s, kdcv1alpha1.ReasonDrainFailed, fmt.Sprintf("Deployment %s did not scale to 0", klog.KObj(deploy)))
	}
	extra := map[string]string{}
	if s.ann(kdcv1alpha1.AnnotationRestoreEtcdReplicas) == "" {
		extra[kdcv1alpha1.AnnotationRestoreEtcdReplicas] = strconv.Itoa(int(restoreReplicas(sts.Spec.Replicas)))
	}
	return r.enter(ctx, s, kdcv1alpha1.PhaseStoppingEtcd, extra)
}

// failOnMissing turns a missing C-cp or DS-etcd in a disruptive phase into ObjectsMissing (the
// recovery brings back whatever still exists); other errors are returned.
func (r *RestoreReconciler) failOnMissing(ctx context.Context, s *restoreScope, err error) (stepResult, error) {
	if ie, ok := err.(*restoreInputsError); ok {
		return stepResult{advanced: true}, r.fail(ctx, s, ie.reason, ie.Error())
	}
	return stepResult{}, err
}

// scaleDeployment sets the Deployment's replicas and, when restartedAt is set, its pod
// template's AnnotationRestartedAt (a rollout: fresh pods). It patches only what differs.
func (r *RestoreReconciler) scaleDeployment(ctx context.Context, s *restoreScope, d *appsv1.Deployment, replicas int32, restartedAt string) error {
	if restoreReplicas(d.Spec.Replicas) == replicas && (restartedAt == "" || d.Spec.Template.Annotations[kdcv1alpha1.AnnotationRestartedAt] == restartedAt) {
		return nil
	}
	orig := d.DeepCopy()
	d.Spec.Replicas = &replicas
	if restartedAt != "" {
		if d.Spec.Template.Annotations == nil {
			d.Spec.Template.Annotations = map[string]string{}
		}
		d.Spec.Template.Annotations[kdcv1alpha1.AnnotationRestartedAt] = restartedAt
	}
	if err := r.Client.Patch(ctx, d, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("failed to scale Deployment %s to %d: %w", klog.KObj(d), replicas, err)
	}
	s.log.Info("Scaled Deployment", "deployment", klog.KObj(d), "replicas", replicas)
	r.event(s, corev1.EventTypeNormal, "Scaled", "Scaled Deployment %s/%s to %d", d.Namespace, d.Name, replicas)
	return nil
}

// scaleStatefulSet sets the StatefulSet's replicas when they differ.
func (r *RestoreReconciler) scaleStatefulSet(ctx context.Context, s *restoreScope, sts *appsv1.StatefulSet, replicas int32) error {
	if restoreReplicas(sts.Spec.Replicas) == replicas {
		return nil
	}
	orig := sts.DeepCopy()
	sts.Spec.Replicas = &replicas
	if err := r.Client.Patch(ctx, sts, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("failed to scale StatefulSet %s to %d: %w", klog.KObj(sts), replicas, err)
	}
	s.log.Info("Scaled StatefulSet", "statefulSet", klog.KObj(sts), "replicas", replicas)
	r.event(s, corev1.EventTypeNormal, "Scaled", "Scaled StatefulSet %s/%s to %d", sts.Namespace, sts.Name, replicas)
	return nil
}

// deploymentDrained reports whether the Deployment observed its scale-down to 0 and none of its
// pods exists, terminating ones included.
func (r *RestoreReconciler) deploymentDrained(ctx context.Context, d *appsv1.Deployment) (bool, error) {
	if d.Status.ObservedGeneration < d.Generation || d.Status.Replicas != 0 {
		return false, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return false, fmt.Errorf("deployment %s has an invalid selector: %w", klog.KObj(d), err)
	}
	pods := &metav1.PartialObjectMetadataList{}
	pods.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := r.Client.List(ctx, pods, client.InNamespace(d.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return false, fmt.Errorf("failed to list the pods of Deployment %s: %w", klog.KObj(d), err)
	}
	return len(pods.Items) == 0, nil
}
