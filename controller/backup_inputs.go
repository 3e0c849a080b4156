package controller

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	obcv1alpha1 "kube-dc.com/etcd-backup/api/objectbucket/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// backupS3Location is where a cluster's snapshots go and how the Job reaches it.
type backupS3Location struct {
	Endpoint, Bucket, Prefix, Region string
	// EndpointSource says where Endpoint came from, for messages.
	EndpointSource string
}

// errNoS3Endpoint: none of spec.backup.s3Endpoint, the OBC ConfigMap and the manager's
// --s3-endpoint names an endpoint.
var errNoS3Endpoint = errors.New("no S3 endpoint is known")

// resolveBackupS3Location picks the bucket and endpoint in the order of issue 4:
// bucket from spec.backup.destinationPath, else the OBC ConfigMap's BUCKET_NAME, else the OBC's
// spec.bucketName, else NS-managed-k8s-backups; endpoint from spec.backup.s3Endpoint, else the
// ConfigMap's BUCKET_HOST and BUCKET_PORT, else defaultEndpoint. cm may be nil.
func resolveBackupS3Location(c *kdcv1alpha1.KdcCluster, obc *obcv1alpha1.ObjectBucketClaim, cm *corev1.ConfigMap, defaultEndpoint string) (backupS3Location, error) {
	var loc backupS3Location
	data := map[string]string{}
	if cm != nil {
		data = cm.Data
	}
	switch {
	case c.Spec.Backup.DestinationPath != "":
		rest := strings.TrimPrefix(c.Spec.Backup.DestinationPath, "s3://")
		loc.Bucket, loc.Prefix, _ = strings.Cut(rest, "/")
		loc.Prefix = strings.Trim(loc.Prefix, "/")
	case data[obcv1alpha1.ConfigMapKeyBucketName] != "":
		loc.Bucket = data[obcv1alpha1.ConfigMapKeyBucketName]
	case obc != nil && obc.Spec.BucketName != "":
		loc.Bucket = obc.Spec.BucketName
	default:
		loc.Bucket = kdcv1alpha1.DefaultBucketName(c.Namespace)
	}
	loc.Region = data[obcv1alpha1.ConfigMapKeyBucketRegion]
	switch host := data[obcv1alpha1.ConfigMapKeyBucketHost]; {
	case c.Spec.Backup.S3Endpoint != "":
		loc.Endpoint, loc.EndpointSource = c.Spec.Backup.S3Endpoint, "spec.backup.s3Endpoint"
	case host != "":
		loc.Endpoint = bucketHostURL(host, data[obcv1alpha1.ConfigMapKeyBucketPort])
		loc.EndpointSource = fmt.Sprintf("ConfigMap %s/%s", c.Namespace, kdcv1alpha1.ObjectBucketClaimName)
	case defaultEndpoint != "":
		loc.Endpoint, loc.EndpointSource = defaultEndpoint, "the manager's --s3-endpoint"
	default:
		return loc, errNoS3Endpoint
	}
	return loc, nil
}

// bucketHostURL turns Rook's BUCKET_HOST and BUCKET_PORT into a URL: https on 443, else http
// (Rook's in-cluster RGW service speaks plain HTTP).
func bucketHostURL(host, port string) string {
	if strings.Contains(host, "://") {
		return host
	}
	scheme := "http"
	if port == "443" {
		scheme = "https"
	}
	if port == "" || (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		return scheme + "://" + host
	}
	return scheme + "://" + net.JoinHostPort(host, port)
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

// backupCredentialSecret is spec.backup.s3CredentialSecret, else the OBC's Secret.
func backupCredentialSecret(c *kdcv1alpha1.KdcCluster) string {
	if c.Spec.Backup.S3CredentialSecret != "" {
		return c.Spec.Backup.S3CredentialSecret
	}
	return kdcv1alpha1.ObjectBucketClaimName
}

// backupDestinationPath is s3://bucket[/prefix] of a location.
func backupDestinationPath(loc backupS3Location) string {
	if loc.Prefix == "" {
		return "s3://" + loc.Bucket
	}
	return "s3://" + loc.Bucket + "/" + loc.Prefix
}
