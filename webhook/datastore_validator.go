package webhook

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// +kubebuilder:webhook:path=/validate-k8s-kube-dc-com-v1alpha1-kdcclusterdatastore,mutating=false,failurePolicy=fail,sideEffects=None,groups=k8s.kube-dc.com,resources=kdcclusterdatastores,verbs=update,versions=v1alpha1,name=vkdcclusterdatastore.k8s.kube-dc.com,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"matchConditions":[{"name":"etcd-replicas-changed","expression":"(has(object.spec) && has(object.spec.etcd) && has(object.spec.etcd.replicas) ? object.spec.etcd.replicas : 0) != (has(oldObject.spec) && has(oldObject.spec.etcd) && has(oldObject.spec.etcd.replicas) ? oldObject.spec.etcd.replicas : 0)"}]}`

var kdcClusterDatastoreGK = kdcv1alpha1.GroupVersion.WithKind("KdcClusterDatastore").GroupKind()

// DataStoreValidator is the validating webhook of KdcClusterDatastore.
type DataStoreValidator struct {
	// Clusters lists KdcClusters by RestoringDataStoreIndex (the manager's cached client).
	Clusters client.Reader
	// ControllerUsername is the controller's identity, which is not restricted.
	ControllerUsername string
}

var _ admission.Validator[*kdcv1alpha1.KdcClusterDatastore] = &DataStoreValidator{}

// ValidateCreate accepts every new datastore.
func (v *DataStoreValidator) ValidateCreate(context.Context, *kdcv1alpha1.KdcClusterDatastore) (admission.Warnings, error) {
	return nil, nil
}

// ValidateUpdate rejects changing spec.etcd.replicas while a restore of a cluster using the
// datastore runs.
func (v *DataStoreValidator) ValidateUpdate(ctx context.Context, oldDS, ds *kdcv1alpha1.KdcClusterDatastore) (admission.Warnings, error) {
	if oldDS.Spec.Etcd.Replicas == ds.Spec.Etcd.Replicas {
		return nil, nil
	}
	requester, err := requesterOf(ctx)
	if err != nil {
		return nil, err
	}
	if requester == v.ControllerUsername {
		return nil, nil
	}
	var clusters kdcv1alpha1.KdcClusterList
	if err := v.Clusters.List(ctx, &clusters, client.MatchingFields{RestoringDataStoreIndex: ds.Namespace + "/" + ds.Name}); err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("failed to list KdcClusters restoring on %s: %w", klog.KObj(ds), err))
	}
	restoring := make([]string, 0, len(clusters.Items))
	for i := range clusters.Items {
		restoring = append(restoring, klog.KObj(&clusters.Items[i]).String())
	}
	if errs := ValidateDataStoreReplicas(field.NewPath("spec", "etcd", "replicas"), oldDS.Spec.Etcd.Replicas, ds.Spec.Etcd.Replicas, restoring); len(errs) > 0 {
		ctrl.LoggerFrom(ctx).Info("Rejected replica change", "kdcClusterDatastore", klog.KObj(ds), "requester", requester, "reason", ReasonOf(errs[0]))
		return nil, apierrors.NewInvalid(kdcClusterDatastoreGK, ds.Name, errs)
	}
	return nil, nil
}

// ValidateDelete accepts every deletion.
func (v *DataStoreValidator) ValidateDelete(context.Context, *kdcv1alpha1.KdcClusterDatastore) (admission.Warnings, error) {
	return nil, nil
}
