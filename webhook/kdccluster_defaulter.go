package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// The API server calls the mutating webhook only for a new or changed restore-from (the
// matchCondition mirrors the first test of StampRestoreRequest), so the controller's many
// state-machine writes cost no mutating call.
// +kubebuilder:webhook:path=/mutate-k8s-kube-dc-com-v1alpha1-kdccluster,mutating=true,failurePolicy=fail,sideEffects=None,groups=k8s.kube-dc.com,resources=kdcclusters,verbs=create;update,versions=v1alpha1,name=mkdccluster.k8s.kube-dc.com,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"matchConditions":[{"name":"new-restore-request","expression":"has(object.metadata.annotations) && 'kube-dc.com/restore-from' in object.metadata.annotations && (oldObject == null || !has(oldObject.metadata.annotations) || !('kube-dc.com/restore-from' in oldObject.metadata.annotations) || oldObject.metadata.annotations['kube-dc.com/restore-from'] != object.metadata.annotations['kube-dc.com/restore-from'])"}]}`

// KdcClusterDefaulter is the mutating webhook of KdcCluster: it stamps a new restore request
// with state Validating, the requester and the request time, so `kubectl get` shows the
// restore at once and a concurrent request sees it as running.
type KdcClusterDefaulter struct {
	// ControllerUsername is the controller's identity, whose writes are never stamped.
	ControllerUsername string
	// Now is the clock of the request time.
	Now func() time.Time
}

var _ admission.Defaulter[*kdcv1alpha1.KdcCluster] = &KdcClusterDefaulter{}

// Default stamps a new or changed restore-from of a non-controller requester, unless a restore
// already runs (the validator rejects that request). It is idempotent: stamps already in the
// request are kept.
func (d *KdcClusterDefaulter) Default(ctx context.Context, c *kdcv1alpha1.KdcCluster) error {
	req, err := admission.RequestFromContext(ctx)
	if err != nil {
		return fmt.Errorf("failed to read the admission request: %w", err)
	}
	requester := req.UserInfo.Username
	if requester == d.ControllerUsername {
		return nil
	}
	var oldAnnotations map[string]string
	if req.Operation == admissionv1.Update && len(req.OldObject.Raw) > 0 {
		var oldC kdcv1alpha1.KdcCluster
		if err := json.Unmarshal(req.OldObject.Raw, &oldC); err != nil {
			return fmt.Errorf("failed to decode the stored KdcCluster: %w", err)
		}
		oldAnnotations = oldC.Annotations
	}
	stamps := StampRestoreRequest(oldAnnotations, c.Annotations, requester, d.Now())
	if stamps == nil {
		return nil
	}
	if c.Annotations == nil {
		c.Annotations = map[string]string{}
	}
	maps.Copy(c.Annotations, stamps)
	ctrl.LoggerFrom(ctx).Info("Stamped restore request", "kdcCluster", klog.KObj(c), "requester", requester,
		"key", c.Annotations[kdcv1alpha1.AnnotationRestoreFrom])
	return nil
}

// StampRestoreRequest returns the stamps to add to newAnnotations, or nil when the request
// carries no new restore request (restore-from absent or unchanged) or a restore already runs
// in oldAnnotations. A request time already stamped in this request (different from the stored
// one and well formed) is kept, so defaulting twice changes nothing.
func StampRestoreRequest(oldAnnotations, newAnnotations map[string]string, requester string, now time.Time) map[string]string {
	key, has := newAnnotations[kdcv1alpha1.AnnotationRestoreFrom]
	oldKey, hadKey := oldAnnotations[kdcv1alpha1.AnnotationRestoreFrom]
	if !has || (hadKey && oldKey == key) || kdcv1alpha1.RestoreRunning(oldAnnotations) {
		return nil
	}
	stamps := RestoreStamps(requester, now)
	at := newAnnotations[kdcv1alpha1.AnnotationRestoreRequestedAt]
	if at != "" && at != oldAnnotations[kdcv1alpha1.AnnotationRestoreRequestedAt] &&
		(StampsAllowed{NewRequest: true, Now: now}).validStamp(kdcv1alpha1.AnnotationRestoreRequestedAt, at) {
		stamps[kdcv1alpha1.AnnotationRestoreRequestedAt] = at
	}
	return stamps
}
