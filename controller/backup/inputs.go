package backup

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	obcv1alpha1 "kube-dc.com/etcd-backup/api/objectbucket/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/engine"
	"kube-dc.com/etcd-backup/location"
)

// backupS3Location is where a cluster's snapshots go and how the Job reaches it.
type backupS3Location = location.Location

// errNoS3Endpoint: none of spec.backup.s3Endpoint, the OBC ConfigMap and the manager's
// --s3-endpoint names an endpoint.
var errNoS3Endpoint = location.ErrNoEndpoint

// resolveBackupS3Location is location.Resolve (shared with the kubectl-kdc plugin).
func resolveBackupS3Location(c *kdcv1alpha1.KdcCluster, obc *obcv1alpha1.ObjectBucketClaim, cm *corev1.ConfigMap, defaultEndpoint string) (backupS3Location, error) {
	return location.Resolve(c, obc, cm, defaultEndpoint)
}

// backupEtcdEndpoints are DS-etcd's client URLs (engine.EtcdEndpoints).
func backupEtcdEndpoints(sts *appsv1.StatefulSet) []string { return engine.EtcdEndpoints(sts) }

// backupCredentialSecret is location.CredentialSecret.
func backupCredentialSecret(c *kdcv1alpha1.KdcCluster) string { return location.CredentialSecret(c) }

// backupDestinationPath is s3://bucket[/prefix] of a location.
func backupDestinationPath(loc backupS3Location) string { return loc.DestinationPath() }
