package webhook

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kamajiv1alpha1 "kube-dc.com/etcd-backup/api/kamaji/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/engine"
)

// DataStoreGetter finds a cluster's datastore (nil without error when it does not exist) and the
// KdcClusters that use it.
type DataStoreGetter interface {
	GetDataStore(ctx context.Context, key types.NamespacedName) (*kdcv1alpha1.KdcClusterDatastore, error)
	DataStoreUsers(ctx context.Context, key types.NamespacedName) ([]kdcv1alpha1.KdcCluster, error)
	// EtcdPrefix is the etcd key prefix of c's kube-apiserver (engine.EtcdPrefixOf); an error
	// of its own says why it cannot be determined, a nil one with "" that C-cp does not exist.
	EtcdPrefix(ctx context.Context, c *kdcv1alpha1.KdcCluster) (string, error)
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

func (l *dataStoreLookup) EtcdPrefix(ctx context.Context, c *kdcv1alpha1.KdcCluster) (string, error) {
	d := &appsv1.Deployment{}
	key := types.NamespacedName{Namespace: c.Namespace, Name: kdcv1alpha1.ControlPlaneDeploymentName(c.Name)}
	if err := l.cached.Get(ctx, key, d); err != nil {
		if apierrors.IsNotFound(err) {
			return "", nil
		}
		return "", fmt.Errorf("failed to get Deployment %s: %w", key, err)
	}
	var tcp *kamajiv1alpha1.TenantControlPlane
	if ref := metav1.GetControllerOf(d); ref != nil && ref.Kind == engine.TenantControlPlaneKind.Kind {
		var err error
		if tcp, err = engine.GetTenantControlPlane(ctx, l.live, c.Namespace, ref.Name); err != nil {
			return "", err
		}
	}
	return engine.EtcdPrefixOf(d, tcp)
}
