package engine

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// draining is the DrainingControlPlane step. C-cp's replica count was recorded on entering the
// phase; here:
//
//  1. pause C-cp's Kamaji owner when the restore recorded it pauses it (idempotent);
//  2. scale C-cp to 0 (idempotent, again whenever an owner scaled it back);
//  3. wait until the API server shows the Deployment at 0 replicas, reporting none, and none of
//     its pods any more (a terminating API server could still write to etcd); DrainFailed at the
//     deadline;
//  4. whole-etcd mode: record DS-etcd's replica count and enter StoppingEtcd; prefix mode: enter
//     RestoringSnapshot (etcd stays up).
func (e *Engine) draining(ctx context.Context, r *Restore) (step, error) {
	w, err := e.workloads(ctx, r.Cluster)
	if err != nil {
		return e.failOnMissing(ctx, r, err)
	}
	if r.get(kdcv1alpha1.AnnotationRestoreControlPlanePaused) == PausedByRestore {
		p, err := e.plan(ctx, r)
		if err != nil {
			return e.failOnMissing(ctx, r, err)
		}
		if err := e.setPaused(ctx, r, p.ControlPlaneOwner, true); err != nil {
			return step{}, err
		}
	}
	if err := e.scaleDeployment(ctx, r, w.ControlPlane, 0, ""); err != nil {
		return step{}, err
	}
	// The drain is the restore's write barrier: judged on the API server, never on a cache that
	// may lag an owner that scaled the Deployment back.
	d := &appsv1.Deployment{}
	if err := e.Live.Get(ctx, client.ObjectKeyFromObject(w.ControlPlane), d); err != nil {
		return step{}, fmt.Errorf("failed to get Deployment %s: %w", klog.KObj(w.ControlPlane), err)
	}
	left, err := e.controlPlanePods(ctx, d)
	if err != nil {
		return step{}, err
	}
	if len(left) > 0 || replicas(d.Spec.Replicas) != 0 || d.Status.ObservedGeneration < d.Generation || d.Status.Replicas != 0 {
		status := fmt.Sprintf("waiting for Deployment %s/%s to report 0 replicas", d.Namespace, d.Name)
		if len(left) > 0 {
			status = fmt.Sprintf("waiting for %d control-plane pod(s) to go: %s", len(left), strings.Join(left, ", "))
		}
		return e.wait(ctx, r, kdcv1alpha1.ReasonDrainFailed, fmt.Sprintf("Deployment %s did not scale to 0", klog.KObj(d)), status)
	}
	r.Driver.Note(r, fmt.Sprintf("Control plane drained: no pod of Deployment %s/%s left", w.ControlPlane.Namespace, w.ControlPlane.Name))
	p, err := e.plan(ctx, r)
	if err != nil {
		return e.failOnMissing(ctx, r, err)
	}
	if p.Mode == ModePrefix {
		// etcd stays up for everyone: the tenant's keys are converged through its API.
		return e.enter(ctx, r, kdcv1alpha1.PhaseRestoringSnapshot, nil)
	}
	extra := map[string]string{}
	if r.get(kdcv1alpha1.AnnotationRestoreEtcdReplicas) == "" {
		extra[kdcv1alpha1.AnnotationRestoreEtcdReplicas] = strconv.Itoa(int(replicas(w.Etcd.Spec.Replicas)))
	}
	return e.enter(ctx, r, kdcv1alpha1.PhaseStoppingEtcd, extra)
}

// failOnMissing turns a missing C-cp or DS-etcd in a disruptive phase into ObjectsMissing (the
// recovery brings back whatever still exists); other errors are returned.
func (e *Engine) failOnMissing(ctx context.Context, r *Restore, err error) (step, error) {
	if v := AsViolation(err); v != nil {
		return step{advanced: true}, e.Fail(ctx, r, *v)
	}
	return step{}, err
}

// scaleDeployment sets the Deployment's replicas and, when restartedAt is set, its pod
// template's AnnotationRestartedAt (a rollout: fresh pods). It patches only what differs.
func (e *Engine) scaleDeployment(ctx context.Context, r *Restore, d *appsv1.Deployment, n int32, restartedAt string) error {
	if replicas(d.Spec.Replicas) == n && (restartedAt == "" || d.Spec.Template.Annotations[kdcv1alpha1.AnnotationRestartedAt] == restartedAt) {
		return nil
	}
	orig := d.DeepCopy()
	d.Spec.Replicas = &n
	if restartedAt != "" {
		if d.Spec.Template.Annotations == nil {
			d.Spec.Template.Annotations = map[string]string{}
		}
		d.Spec.Template.Annotations[kdcv1alpha1.AnnotationRestartedAt] = restartedAt
	}
	if err := e.Client.Patch(ctx, d, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("failed to scale Deployment %s to %d: %w", klog.KObj(d), n, err)
	}
	r.log.Info("Scaled Deployment", "deployment", klog.KObj(d), "replicas", n)
	r.Driver.Event(r, corev1.EventTypeNormal, "Scaled", fmt.Sprintf("Scaled Deployment %s/%s to %d", d.Namespace, d.Name, n))
	return nil
}

// scaleStatefulSet sets the StatefulSet's replicas when they differ.
func (e *Engine) scaleStatefulSet(ctx context.Context, r *Restore, sts *appsv1.StatefulSet, n int32) error {
	if replicas(sts.Spec.Replicas) == n {
		return nil
	}
	orig := sts.DeepCopy()
	sts.Spec.Replicas = &n
	if err := e.Client.Patch(ctx, sts, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("failed to scale StatefulSet %s to %d: %w", klog.KObj(sts), n, err)
	}
	r.log.Info("Scaled StatefulSet", "statefulSet", klog.KObj(sts), "replicas", n)
	r.Driver.Event(r, corev1.EventTypeNormal, "Scaled", fmt.Sprintf("Scaled StatefulSet %s/%s to %d", sts.Namespace, sts.Name, n))
	return nil
}

// controlPlanePods lists the names of the Deployment's pods on the API server, terminating ones
// included.
func (e *Engine) controlPlanePods(ctx context.Context, d *appsv1.Deployment) ([]string, error) {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("deployment %s has an invalid selector: %w", klog.KObj(d), err)
	}
	pods := &metav1.PartialObjectMetadataList{}
	pods.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := e.Live.List(ctx, pods, client.InNamespace(d.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, fmt.Errorf("failed to list the pods of Deployment %s: %w", klog.KObj(d), err)
	}
	names := make([]string, 0, len(pods.Items))
	for _, p := range pods.Items {
		names = append(names, p.Name)
	}
	return names, nil
}
