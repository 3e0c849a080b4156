// Package location resolves where a KdcCluster's snapshots live (S3 endpoint, bucket, prefix,
// region) and which Secret holds the S3 credentials. The backup CronJob, the restore Jobs and the
// kubectl-kdc plugin all resolve them here, so they always agree.
package location

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	obcv1alpha1 "kube-dc.com/etcd-backup/api/objectbucket/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/jobspec"
)

// Location is where a cluster's snapshots go and how to reach it.
type Location struct {
	jobspec.S3Location
	// EndpointSource says where Endpoint came from, for messages.
	EndpointSource string
}

// ErrNoEndpoint: none of spec.backup.s3Endpoint, the OBC ConfigMap and the default endpoint
// (the manager's --s3-endpoint) names an endpoint.
var ErrNoEndpoint = errors.New("no S3 endpoint is known")

// Resolve picks the bucket and endpoint: bucket from spec.backup.destinationPath, else the OBC
// ConfigMap's BUCKET_NAME, else the OBC's spec.bucketName, else NS-managed-k8s-backups; endpoint
// from spec.backup.s3Endpoint, else the ConfigMap's BUCKET_HOST and BUCKET_PORT, else
// defaultEndpoint. obc and cm may be nil.
func Resolve(c *kdcv1alpha1.KdcCluster, obc *obcv1alpha1.ObjectBucketClaim, cm *corev1.ConfigMap, defaultEndpoint string) (Location, error) {
	var loc Location
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
		loc.Endpoint = BucketHostURL(host, data[obcv1alpha1.ConfigMapKeyBucketPort])
		loc.EndpointSource = fmt.Sprintf("ConfigMap %s/%s", c.Namespace, kdcv1alpha1.ObjectBucketClaimName)
	case defaultEndpoint != "":
		loc.Endpoint, loc.EndpointSource = defaultEndpoint, "the manager's --s3-endpoint"
	default:
		return loc, ErrNoEndpoint
	}
	return loc, nil
}

// Lookup reads the cluster's ObjectBucketClaim and its ConfigMap (both optional) and resolves the
// location with Resolve.
func Lookup(ctx context.Context, r client.Reader, c *kdcv1alpha1.KdcCluster, defaultEndpoint string) (Location, error) {
	key := client.ObjectKey{Namespace: c.Namespace, Name: kdcv1alpha1.ObjectBucketClaimName}
	obc := &obcv1alpha1.ObjectBucketClaim{}
	if found, err := getOptional(ctx, r, key, obc); err != nil {
		return Location{}, fmt.Errorf("failed to get ObjectBucketClaim %s: %w", key, err)
	} else if !found {
		obc = nil
	}
	cm := &corev1.ConfigMap{}
	if found, err := getOptional(ctx, r, key, cm); err != nil {
		return Location{}, fmt.Errorf("failed to get ConfigMap %s: %w", key, err)
	} else if !found {
		cm = nil
	}
	return Resolve(c, obc, cm, defaultEndpoint)
}

// getOptional gets key into obj; a missing object is not an error.
func getOptional(ctx context.Context, r client.Reader, key client.ObjectKey, obj client.Object) (bool, error) {
	if err := r.Get(ctx, key, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// BucketHostURL turns Rook's BUCKET_HOST and BUCKET_PORT into a URL: https on 443, else http
// (Rook's in-cluster RGW service speaks plain HTTP).
func BucketHostURL(host, port string) string {
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

// CredentialSecret is spec.backup.s3CredentialSecret, else the OBC's Secret. It holds
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
func CredentialSecret(c *kdcv1alpha1.KdcCluster) string {
	if c.Spec.Backup.S3CredentialSecret != "" {
		return c.Spec.Backup.S3CredentialSecret
	}
	return kdcv1alpha1.ObjectBucketClaimName
}
