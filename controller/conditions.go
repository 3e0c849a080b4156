package controller

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// setCondition sets a condition on the cluster's status, always filling ObservedGeneration.
// It reports whether anything changed.
func setCondition(c *kdcv1alpha1.KdcCluster, condType string, status metav1.ConditionStatus, reason, message string) bool {
	return meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{
		Type:               condType,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: c.Generation,
	})
}
