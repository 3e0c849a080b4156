package framework

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
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

// EtcdStatefulSet is datastore ds's etcd StatefulSet (DS-etcd) in namespace ns, as the backup
// controller reads it: one replica, its governing Service name and named client and peer ports.
func EtcdStatefulSet(ns, ds string) *appsv1.StatefulSet {
	labels := map[string]string{"app": ds + "-etcd"}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: kdcv1alpha1.EtcdStatefulSetName(ds), Namespace: ns},
		Spec: appsv1.StatefulSetSpec{
			ServiceName: ds + "-etcd",
			Replicas:    ptr.To[int32](1),
			Selector:    &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "etcd", Image: "etcd:3.5.21-0",
					Ports: []corev1.ContainerPort{{Name: "client", ContainerPort: 2379}, {Name: "peer", ContainerPort: 2380}},
				}}},
			},
		},
	}
}
