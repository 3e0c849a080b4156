package engine

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// A control plane owned by a Kamaji TenantControlPlane is paused before the drain and resumed
// after it is ready again (docs/restore.md, "Control planes owned by Kamaji"): Kamaji sets the
// Deployment's replicas back to the TCP's on every change of the Deployment unless the TCP
// carries kamaji.clastix.io/paused.

// TenantControlPlaneKind is Kamaji's kind that owns a control plane Deployment.
var TenantControlPlaneKind = schema.GroupVersionKind{Group: "kamaji.clastix.io", Version: "v1alpha1", Kind: "TenantControlPlane"}

// AnnotationKamajiPaused stops every reconcile of a TenantControlPlane while present, whatever
// its value.
const AnnotationKamajiPaused = "kamaji.clastix.io/paused"

// Values of restore-cp-paused.
const (
	// PausedByRestore: the restore paused the TCP and removes its pause when it ends.
	PausedByRestore = "restore"
	// PausedBefore: the TCP was paused before the restore; its pause stays.
	PausedBefore = "before"
	// PauseRemoved: the restore removed its pause again.
	PauseRemoved = "resumed"
)

// Owner is the controller of C-cp that the restore must pause, recorded in the plan.
type Owner struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
}

// controlPlaneOwner is C-cp's controller when it is a TenantControlPlane, else nil.
func controlPlaneOwner(d *appsv1.Deployment) *Owner {
	ref := metav1.GetControllerOf(d)
	if ref == nil {
		return nil
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil || gv.Group != TenantControlPlaneKind.Group || ref.Kind != TenantControlPlaneKind.Kind {
		return nil
	}
	return &Owner{APIVersion: ref.APIVersion, Kind: ref.Kind, Name: ref.Name}
}

// ownerObject is the owner's metadata in namespace ns (the TCP's annotations are all the restore
// reads and writes).
func (o *Owner) object(ns string) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(schema.FromAPIVersionAndKind(o.APIVersion, o.Kind))
	m.SetNamespace(ns)
	m.SetName(o.Name)
	return m
}

// String is kind/namespace/name for messages.
func (o *Owner) ref(ns string) string { return fmt.Sprintf("%s %s/%s", o.Kind, ns, o.Name) }

// pauseState reads whether the owner is paused now: PausedBefore when it is, else
// PausedByRestore (the pause the restore is about to add).
func (e *Engine) pauseState(ctx context.Context, r *Restore, o *Owner) (string, error) {
	m := o.object(r.Cluster.Namespace)
	if err := e.Live.Get(ctx, client.ObjectKeyFromObject(m), m); err != nil {
		if apierrors.IsNotFound(err) {
			return "", &Violation{Reason: kdcv1alpha1.ReasonObjectsMissing, Detail: fmt.Sprintf("%s, the controller of the control plane, does not exist", o.ref(r.Cluster.Namespace))}
		}
		return "", fmt.Errorf("failed to get %s: %w", o.ref(r.Cluster.Namespace), err)
	}
	if _, ok := m.Annotations[AnnotationKamajiPaused]; ok {
		return PausedBefore, nil
	}
	return PausedByRestore, nil
}

// setPaused adds (paused) or removes the owner's pause annotation, if it differs.
func (e *Engine) setPaused(ctx context.Context, r *Restore, o *Owner, paused bool) error {
	m := o.object(r.Cluster.Namespace)
	if err := e.Live.Get(ctx, client.ObjectKeyFromObject(m), m); err != nil {
		if apierrors.IsNotFound(err) && !paused {
			return nil
		}
		return fmt.Errorf("failed to get %s: %w", o.ref(r.Cluster.Namespace), err)
	}
	if _, has := m.Annotations[AnnotationKamajiPaused]; has == paused {
		return nil
	}
	orig := m.DeepCopy()
	ann := m.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	verb, reason, note := "Paused", "ControlPlanePaused", "so that Kamaji does not scale the control plane back during the restore"
	if paused {
		ann[AnnotationKamajiPaused] = "kdc-etcd-backup restore " + r.Attempt()
	} else {
		delete(ann, AnnotationKamajiPaused)
		verb, reason, note = "Resumed", "ControlPlaneResumed", "Kamaji manages the control plane again"
	}
	m.SetAnnotations(ann)
	if err := e.Client.Patch(ctx, m, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("failed to %s %s: %w", map[bool]string{true: "pause", false: "resume"}[paused], o.ref(r.Cluster.Namespace), err)
	}
	r.log.Info(verb+" the control plane's owner", "owner", klog.KRef(r.Cluster.Namespace, o.Name), "kind", o.Kind)
	r.Driver.Event(r, corev1.EventTypeNormal, reason, fmt.Sprintf("%s %s (%s): %s", verb, o.ref(r.Cluster.Namespace), AnnotationKamajiPaused, note))
	return nil
}

// resumeOwner removes the restore's own pause, if it paused the owner.
func (e *Engine) resumeOwner(ctx context.Context, r *Restore) error {
	if r.get(kdcv1alpha1.AnnotationRestoreControlPlanePaused) != PausedByRestore {
		return nil
	}
	p, err := e.plan(ctx, r)
	if err != nil {
		return err
	}
	if p.ControlPlaneOwner != nil {
		if err := e.setPaused(ctx, r, p.ControlPlaneOwner, false); err != nil {
			return err
		}
	}
	return e.save(ctx, r, map[string]string{kdcv1alpha1.AnnotationRestoreControlPlanePaused: PauseRemoved})
}
