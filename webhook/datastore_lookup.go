package webhook

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// DataStoreGetter finds a cluster's datastore (nil without error when it does not exist) and the
// KdcClusters that use it.
type DataStoreGetter interface {
	GetDataStore(ctx context.Context, key types.NamespacedName) (*kdcv1alpha1.KdcClusterDatastore, error)
	DataStoreUsers(ctx context.Context, key types.NamespacedName) ([]kdcv1alpha1.KdcCluster, error)
}

// dataStoreLookup reads the datastore from the cache, and reads it live before a rejection
// could rest on a stale cache (missing, or not yet scaled to 1 replica).
type dataStoreLookup struct {
	cached, live client.Reader
}

func (l *dataStoreLookup) GetDataStore(ctx context.Context, key types.NamespacedName) (*kdcv1alpha1.KdcClusterDatastore, error) {
	ds := &kdcv1alpha1.KdcClusterDatastore{}
	err := l.cached.Get(ctx, key, ds)
	if err == nil && ds.Spec.Etcd.Replicas == 1 {
		return ds, nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("failed to get KdcClusterDatastore %s: %w", key, err)
	}
	if err := l.live.Get(ctx, key, ds); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("failed to get KdcClusterDatastore %s: %w", key, err)
	}
	return ds, nil
}

func (l *dataStoreLookup) DataStoreUsers(ctx context.Context, key types.NamespacedName) ([]kdcv1alpha1.KdcCluster, error) {
	var list kdcv1alpha1.KdcClusterList
	if err := l.cached.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("failed to list the KdcClusters of datastore %s: %w", key, err)
	}
	var users []kdcv1alpha1.KdcCluster
	for _, c := range list.Items {
		if c.DataStoreNamespace() == key.Namespace && c.DataStore() == key.Name {
			users = append(users, c)
		}
	}
	return users, nil
}
