package kamaji

import (
	"context"
	"fmt"
	"sync/atomic"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kamajiv1alpha1 "kube-dc.com/etcd-backup/api/kamaji/v1alpha1"
)

// defaultReplicas is Kamaji's default of spec.controlPlane.deployment.replicas.
const defaultReplicas int32 = 2

// StandIn reconciles TenantControlPlanes the way Kamaji's TenantControlPlane controller treats
// their Deployments.
type StandIn struct {
	client.Client
	// reverts counts the writes that set the Deployment's replicas back to the TCP's.
	reverts atomic.Int64
}

// Reverts is how often the stand-in set a Deployment's replicas back to its TCP's.
func (s *StandIn) Reverts() int64 { return s.reverts.Load() }

// Reconcile brings the Deployment named after the TCP to the TCP's spec, unless the TCP is paused.
func (s *StandIn) Reconcile(ctx context.Context, req reconcile.Request) (ctrl.Result, error) {
	tcp := &kamajiv1alpha1.TenantControlPlane{}
	if err := s.Get(ctx, req.NamespacedName, tcp); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	// controllers/utils/is_paused.go: the annotation's key alone pauses every reconcile,
	// checked first in controllers/tenantcontrolplane_controller.go.
	if _, paused := tcp.Annotations[kamajiv1alpha1.AnnotationPaused]; paused {
		return ctrl.Result{}, nil
	}
	// internal/resources/k8s_deployment_resource.go: the Deployment has the TCP's name.
	d := &appsv1.Deployment{}
	if err := s.Get(ctx, req.NamespacedName, d); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil // Kamaji would create it; the tests create it themselves
		}
		return ctrl.Result{}, err
	}
	orig := d.DeepCopy()
	// internal/resources/k8s_deployment_resource.go: CreateOrUpdate makes the TCP its controller.
	if err := controllerutil.SetControllerReference(tcp, d, s.Scheme()); err != nil {
		return ctrl.Result{}, fmt.Errorf("failed to own Deployment %s: %w", req.NamespacedName, err)
	}
	// internal/builders/controlplane/deployment.go (setReplicas): replicas from the TCP's spec.
	want := ptr.Deref(tcp.Spec.ControlPlane.Deployment.Replicas, defaultReplicas)
	reverted := ptr.Deref(d.Spec.Replicas, 1) != want
	d.Spec.Replicas = ptr.To(want)
	// internal/builders/controlplane/deployment.go: the pods carry kamaji.clastix.io/name.
	if d.Spec.Template.Labels == nil {
		d.Spec.Template.Labels = map[string]string{}
	}
	d.Spec.Template.Labels[kamajiv1alpha1.LabelName] = tcp.Name
	// internal/builders/controlplane/deployment.go (setTemplateAnnotations): the template's
	// annotations are Kamaji's own, replaced wholesale; the stand-in's TCP asks for none.
	d.Spec.Template.Annotations = nil
	if err := s.Patch(ctx, d, client.MergeFrom(orig)); err != nil {
		return ctrl.Result{}, fmt.Errorf("failed to update Deployment %s: %w", req.NamespacedName, err)
	}
	if reverted {
		s.reverts.Add(1)
	}
	return ctrl.Result{}, nil
}

// Setup registers the stand-in with mgr. controllers/tenantcontrolplane_controller.go watches the
// TCP (For) and the Deployments it owns (Owns): every change of the Deployment, a scale
// included, is reconciled at once.
func Setup(mgr ctrl.Manager) (*StandIn, error) {
	s := &StandIn{Client: mgr.GetClient()}
	return s, ctrl.NewControllerManagedBy(mgr).
		Named("kamaji-standin").
		For(&kamajiv1alpha1.TenantControlPlane{}).
		Owns(&appsv1.Deployment{}).
		Complete(s)
}

// TenantControlPlane is a TCP name in ns (named like the control plane Deployment it runs)
// asking for replicas.
func TenantControlPlane(ns, name string, replicas int32) *kamajiv1alpha1.TenantControlPlane {
	return &kamajiv1alpha1.TenantControlPlane{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: kamajiv1alpha1.TenantControlPlaneSpec{ControlPlane: kamajiv1alpha1.ControlPlane{
			Deployment: kamajiv1alpha1.DeploymentSpec{Replicas: ptr.To(replicas)},
		}},
	}
}
