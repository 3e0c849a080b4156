// Package v1alpha1 holds the k8s.kube-dc.com/v1alpha1 API of kdc-etcd-backup: the KdcCluster
// and KdcClusterDatastore types (field names match the Kube-DC platform's API), and the
// documented constants every other package uses for condition types, reasons, restore phases,
// annotation keys and object names. It imports apimachinery only.
//
// +kubebuilder:object:generate=true
// +groupName=k8s.kube-dc.com
package v1alpha1
