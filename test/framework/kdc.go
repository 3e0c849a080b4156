package framework

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// BackupCronJobKey is the key of cluster c's backup CronJob (C-etcd-backup in its namespace).
func BackupCronJobKey(c *kdcv1alpha1.KdcCluster) types.NamespacedName {
	return types.NamespacedName{Namespace: c.Namespace, Name: kdcv1alpha1.BackupCronJobName(c.Name)}
}

// StoredCondition reads cluster c from the API server and returns its condition condType; it
// is an error when the cluster has none.
func StoredCondition(ctx context.Context, cl client.Reader, c *kdcv1alpha1.KdcCluster, condType string) (metav1.Condition, error) {
	got := &kdcv1alpha1.KdcCluster{}
	if err := cl.Get(ctx, client.ObjectKeyFromObject(c), got); err != nil {
		return metav1.Condition{}, err
	}
	cond := meta.FindStatusCondition(got.Status.Conditions, condType)
	if cond == nil {
		return metav1.Condition{}, fmt.Errorf("no %s condition", condType)
	}
	return *cond, nil
}
