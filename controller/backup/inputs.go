package backup

import (
	"fmt"
	"net"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	obcv1alpha1 "kube-dc.com/etcd-backup/api/objectbucket/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
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

// backupEtcdEndpoints are the client URLs of the members of the etcd StatefulSet DS-etcd: one
// per ordinal, through the StatefulSet's governing Service,
// https://DS-etcd-<i>.<serviceName>.<ns>.svc:<client port>. A StatefulSet scaled to 0 (during a
// restore) still yields member 0, so the CronJob does not change under a running restore.
// Without spec.serviceName it falls back to the client Service DS-etcd-client (docs/backup.md).
func backupEtcdEndpoints(sts *appsv1.StatefulSet) []string {
	port := backupEtcdClientPort
	for _, ctr := range sts.Spec.Template.Spec.Containers {
		for _, p := range ctr.Ports {
			if p.Name == "client" && p.ContainerPort > 0 {
				port = p.ContainerPort
			}
		}
	}
	portStr := strconv.Itoa(int(port))
	if sts.Spec.ServiceName == "" {
		return []string{"https://" + net.JoinHostPort(sts.Name+"-client."+sts.Namespace+".svc", portStr)}
	}
	replicas := int32(1)
	if sts.Spec.Replicas != nil && *sts.Spec.Replicas > 1 {
		replicas = *sts.Spec.Replicas
	}
	out := make([]string, 0, replicas)
	for i := range replicas {
		host := fmt.Sprintf("%s-%d.%s.%s.svc", sts.Name, i, sts.Spec.ServiceName, sts.Namespace)
		out = append(out, "https://"+net.JoinHostPort(host, portStr))
	}
	return out
}

// backupCredentialSecret is location.CredentialSecret.
func backupCredentialSecret(c *kdcv1alpha1.KdcCluster) string { return location.CredentialSecret(c) }

// backupDestinationPath is s3://bucket[/prefix] of a location.
func backupDestinationPath(loc backupS3Location) string { return loc.DestinationPath() }
