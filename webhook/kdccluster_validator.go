package webhook

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/engine"
)

// +kubebuilder:webhook:path=/validate-k8s-kube-dc-com-v1alpha1-kdccluster,mutating=false,failurePolicy=fail,sideEffects=None,groups=k8s.kube-dc.com,resources=kdcclusters,verbs=create;update;delete,versions=v1alpha1,name=vkdccluster.k8s.kube-dc.com,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"matchConditions":[{"name":"restore-annotations-or-spec-changed","expression":"request.operation != 'UPDATE' || has(object.spec) != has(oldObject.spec) || (has(object.spec) && object.spec != oldObject.spec) || (has(object.metadata.annotations) && object.metadata.annotations.exists(k, k.startsWith('kube-dc.com/restore-') && (!has(oldObject.metadata.annotations) || !(k in oldObject.metadata.annotations) || oldObject.metadata.annotations[k] != object.metadata.annotations[k]))) || (has(oldObject.metadata.annotations) && oldObject.metadata.annotations.exists(k, k.startsWith('kube-dc.com/restore-') && (!has(object.metadata.annotations) || !(k in object.metadata.annotations))))"}]}`

var (
	kdcClusterGK = kdcv1alpha1.GroupVersion.WithKind("KdcCluster").GroupKind()
	kdcClusterGR = kdcv1alpha1.GroupVersion.WithResource("kdcclusters").GroupResource()
)

// KdcClusterValidator is the validating webhook of KdcCluster.
type KdcClusterValidator struct {
	// DataStores finds the datastore of a cluster asking for a restore.
	DataStores DataStoreGetter
	// ControllerUsername is the identity that may write restore bookkeeping annotations.
	ControllerUsername string
	// Now is the clock the request-time stamp is checked against.
	Now func() time.Time
}

var _ admission.Validator[*kdcv1alpha1.KdcCluster] = &KdcClusterValidator{}

// ValidateCreate validates a new cluster: spec.backup and any restore request it carries.
func (v *KdcClusterValidator) ValidateCreate(ctx context.Context, c *kdcv1alpha1.KdcCluster) (admission.Warnings, error) {
	return nil, v.validate(ctx, nil, c)
}

// ValidateUpdate validates a changed cluster. The restore rules look at the stored (old)
// object's annotations: on a resourceVersion conflict the API server re-runs admission against
// the newer stored object, which is what makes exactly one of concurrent requests win.
func (v *KdcClusterValidator) ValidateUpdate(ctx context.Context, oldC, c *kdcv1alpha1.KdcCluster) (admission.Warnings, error) {
	return nil, v.validate(ctx, oldC, c)
}

// ValidateDelete rejects deleting a cluster while its restore runs, unless the controller does it.
func (v *KdcClusterValidator) ValidateDelete(ctx context.Context, c *kdcv1alpha1.KdcCluster) (admission.Warnings, error) {
	requester, err := requesterOf(ctx)
	if err != nil {
		return nil, err
	}
	if requester == v.ControllerUsername {
		return nil, nil
	}
	if errs := ValidateDeletion(AnnotationsPath.Key(kdcv1alpha1.AnnotationRestoreState), c.Annotations); len(errs) > 0 {
		ctrl.LoggerFrom(ctx).Info("Rejected deletion", "kdcCluster", klog.KObj(c), "requester", requester, "reason", ReasonOf(errs[0]))
		return nil, apierrors.NewForbidden(kdcClusterGR, c.Name, errs.ToAggregate())
	}
	return nil, nil
}

// requesterOf is the username of the admission request in ctx.
func requesterOf(ctx context.Context) (string, error) {
	req, err := admission.RequestFromContext(ctx)
	if err != nil {
		return "", fmt.Errorf("failed to read the admission request: %w", err)
	}
	return req.UserInfo.Username, nil
}

// validate runs the rules, in order: spec.backup, the restore request, the bookkeeping
// annotations. oldC is nil on create.
func (v *KdcClusterValidator) validate(ctx context.Context, oldC, c *kdcv1alpha1.KdcCluster) error {
	requester, err := requesterOf(ctx)
	if err != nil {
		return err
	}
	var oldAnnotations map[string]string
	if oldC != nil {
		oldAnnotations = oldC.Annotations
	}
	isController := requester == v.ControllerUsername

	var errs field.ErrorList
	// Ratcheting: a stored spec.backup that later rules would reject does not block other updates.
	if oldC == nil || !equality.Semantic.DeepEqual(oldC.Spec.Backup, c.Spec.Backup) {
		errs = append(errs, ValidateBackupSpec(field.NewPath("spec", "backup"), &c.Spec.Backup)...)
	}

	attachErrs, err := v.validateAttach(ctx, oldC, c)
	if err != nil {
		return err
	}
	errs = append(errs, attachErrs...)

	requestErrs, newRequest, err := v.validateRestoreRequest(ctx, oldAnnotations, c, isController)
	if err != nil {
		return err
	}
	errs = append(errs, requestErrs...)

	if !isController {
		// The stamps of a new request are the mutating webhook's; when the request fails the
		// restore rules it is rejected for those causes alone.
		allowed := StampsAllowed{NewRequest: newRequest, Requester: requester, Now: v.Now()}
		errs = append(errs, ValidateBookkeepingAnnotations(AnnotationsPath, oldAnnotations, c.Annotations, allowed, v.ControllerUsername)...)
	}

	log := ctrl.LoggerFrom(ctx).WithValues("kdcCluster", klog.KObj(c), "requester", requester)
	if len(errs) > 0 {
		log.Info("Rejected", "reason", ReasonOf(errs[0]), "causes", len(errs))
		return apierrors.NewInvalid(kdcClusterGK, c.Name, errs)
	}
	if newRequest {
		log.Info("Accepted restore request", "key", c.Annotations[kdcv1alpha1.AnnotationRestoreFrom])
	}
	return nil
}

// validateRestoreRequest checks a new or changed restore-from, and that restore-from is kept
// while a restore runs. It reports whether the request carries a new restore request.
func (v *KdcClusterValidator) validateRestoreRequest(ctx context.Context, oldAnnotations map[string]string, c *kdcv1alpha1.KdcCluster, isController bool) (field.ErrorList, bool, error) {
	fldPath := AnnotationsPath.Key(kdcv1alpha1.AnnotationRestoreFrom)
	key, has := c.Annotations[kdcv1alpha1.AnnotationRestoreFrom]
	oldKey, hadKey := oldAnnotations[kdcv1alpha1.AnnotationRestoreFrom]
	newRequest := has && (!hadKey || oldKey != key)
	if !newRequest {
		if isController {
			return nil, false, nil
		}
		return ValidateRestoreFromKept(fldPath, oldAnnotations, c.Annotations), false, nil
	}

	var errs field.ErrorList
	if !isController {
		if errs = ValidateNoRestoreInProgress(fldPath, oldAnnotations); len(errs) > 0 {
			// Concurrent requests end here, without any further lookup.
			return errs, true, nil
		}
	}
	errs = append(errs, ValidateRestoreKey(fldPath, key, c.Name)...)
	name, namespace := c.DataStore(), c.DataStoreNamespace()
	if name == "" {
		return append(errs, ValidateDataStoreFound(fldPath, namespace, name)...), true, nil
	}
	ds, err := v.DataStores.GetDataStore(ctx, types.NamespacedName{Namespace: namespace, Name: name})
	if err != nil {
		return nil, true, apierrors.NewInternalError(err)
	}
	if ds == nil {
		return append(errs, ValidateDataStoreFound(fldPath, namespace, name)...), true, nil
	}
	users, err := v.DataStores.DataStoreUsers(ctx, types.NamespacedName{Namespace: namespace, Name: name})
	if err != nil {
		return nil, true, apierrors.NewInternalError(err)
	}
	if mode, why := engine.ModeOf(c, ds, users); mode == engine.ModePrefix {
		// The member count does not matter to a restore of the tenant's prefix (docs/restore.md);
		// a prefix that cannot be determined does.
		if _, err := v.DataStores.EtcdPrefix(ctx, c); err != nil {
			errs = append(errs, field.Forbidden(fldPath, fmt.Sprintf("%s: the datastore is shared (%s) and the tenant's etcd key prefix is unknown: %v; a restore of the whole etcd would roll every other tenant back",
				kdcv1alpha1.ReasonPrefixUnknown, why, err)))
		}
		return errs, true, nil
	}
	return append(errs, ValidateDataStoreForRestore(fldPath, ds)...), true, nil
}

// validateAttach refuses to attach c to a datastore (create, or a new spec.dataStore) while a
// whole-etcd restore of that datastore runs: the restore would roll the new cluster back too.
func (v *KdcClusterValidator) validateAttach(ctx context.Context, oldC, c *kdcv1alpha1.KdcCluster) (field.ErrorList, error) {
	name, namespace := c.DataStore(), c.DataStoreNamespace()
	if name == "" || (oldC != nil && oldC.DataStore() == name && oldC.DataStoreNamespace() == namespace) {
		return nil, nil
	}
	users, err := v.DataStores.DataStoreUsers(ctx, types.NamespacedName{Namespace: namespace, Name: name})
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	return ValidateNoWholeEtcdRestore(field.NewPath("spec", "dataStore"), c, users), nil
}
