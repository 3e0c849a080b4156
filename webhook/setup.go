package webhook

import (
	"context"
	"errors"
	"fmt"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// RBAC the webhooks need: they read clusters and datastores (cached, plus a live read before
// rejecting a restore on datastore grounds).
// +kubebuilder:rbac:groups=k8s.kube-dc.com,resources=kdcclusters;kdcclusterdatastores,verbs=get;list;watch

// RestoringDataStoreIndex indexes KdcClusters whose restore runs by "namespace/name" of their
// datastore, so the datastore validator finds them with one cached lookup.
const RestoringDataStoreIndex = "webhook.k8s.kube-dc.com/restoring-datastore"

// Options configure the webhooks.
type Options struct {
	// ControllerUsername is the controller's identity: the only one that may write restore
	// bookkeeping annotations.
	ControllerUsername string
	// Now is the clock of the request time stamp; default time.Now.
	Now func() time.Time
}

// SetupWithManager registers the KdcCluster validating and mutating webhooks and the
// KdcClusterDatastore validating webhook with the manager's webhook server, plus the cache
// index they use.
func SetupWithManager(mgr ctrl.Manager, o Options) error {
	if o.ControllerUsername == "" {
		return errors.New("webhook: the controller username is empty")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &kdcv1alpha1.KdcCluster{}, RestoringDataStoreIndex, RestoringDataStoreIndexFunc); err != nil {
		return fmt.Errorf("failed to index KdcClusters by restoring datastore: %w", err)
	}
	lookup := &dataStoreLookup{cached: mgr.GetClient(), live: mgr.GetAPIReader()}
	if err := ctrl.NewWebhookManagedBy(mgr, &kdcv1alpha1.KdcCluster{}).
		WithValidator(&KdcClusterValidator{DataStores: lookup, ControllerUsername: o.ControllerUsername, Now: o.Now}).
		WithDefaulter(&KdcClusterDefaulter{ControllerUsername: o.ControllerUsername, Now: o.Now}).
		Complete(); err != nil {
		return fmt.Errorf("failed to set up the KdcCluster webhooks: %w", err)
	}
	if err := ctrl.NewWebhookManagedBy(mgr, &kdcv1alpha1.KdcClusterDatastore{}).
		WithValidator(&DataStoreValidator{Clusters: mgr.GetClient(), ControllerUsername: o.ControllerUsername}).
		Complete(); err != nil {
		return fmt.Errorf("failed to set up the KdcClusterDatastore webhook: %w", err)
	}
	return nil
}

// RestoringDataStoreIndexFunc is the RestoringDataStoreIndex function: "namespace/name" of the
// datastore of a cluster whose restore runs, else nothing.
func RestoringDataStoreIndexFunc(obj client.Object) []string {
	c, ok := obj.(*kdcv1alpha1.KdcCluster)
	if !ok || !kdcv1alpha1.RestoreRunning(c.Annotations) || c.DataStore() == "" {
		return nil
	}
	return []string{c.DataStoreNamespace() + "/" + c.DataStore()}
}
