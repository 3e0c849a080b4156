package plugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/spf13/pflag"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/jobspec"
	"kube-dc.com/etcd-backup/location"
	"kube-dc.com/etcd-backup/snapshot"
)

// s3Flags are the flags of every command that reads the snapshots from S3 itself.
type s3Flags struct {
	// Endpoint overrides the resolved S3 endpoint (an in-cluster endpoint is usually not
	// reachable from an operator's machine).
	Endpoint string
}

// AddFlags registers --s3-endpoint.
func (f *s3Flags) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.Endpoint, "s3-endpoint", f.Endpoint,
		"S3 endpoint URL reachable from this machine, overriding the one the controller uses (e.g. http://127.0.0.1:8080 with kubectl port-forward)")
}

// snapshotStore is where a cluster's snapshots live, resolved exactly as the controller resolves
// it, with an S3 client holding the credentials of the cluster's credential Secret.
type snapshotStore struct {
	cluster *kdcv1alpha1.KdcCluster
	loc     snapshot.S3Location
	// endpointSource and bucketSource say where the endpoint and bucket came from, for messages.
	endpointSource, bucketSource string
	// overridden is true when --s3-endpoint set the endpoint.
	overridden bool
	// secret is namespace/name of the credential Secret.
	secret string
	s3     *s3.Client
	// redact are the credential values, scrubbed from every error text.
	redact []string
}

// openSnapshotStore resolves the cluster's S3 location and credentials. The default endpoint,
// used when neither spec.backup.s3Endpoint nor the OBC ConfigMap names one, is the --s3-endpoint
// argument of the cluster's backup CronJob (which carries the manager's --s3-endpoint).
func (o *Options) openSnapshotStore(ctx context.Context, c *kdcv1alpha1.KdcCluster, flags *s3Flags) (*snapshotStore, error) {
	cl, err := o.Client()
	if err != nil {
		return nil, err
	}
	defaultEndpoint, err := backupCronJobEndpoint(ctx, cl, c)
	if err != nil {
		return nil, err
	}
	st := &snapshotStore{cluster: c, bucketSource: bucketSource(c)}
	loc, err := location.Lookup(ctx, cl, c, defaultEndpoint)
	switch {
	case flags != nil && flags.Endpoint != "":
		if err != nil && !errors.Is(err, location.ErrNoEndpoint) {
			return nil, err
		}
		loc.Endpoint, loc.EndpointSource, st.overridden = flags.Endpoint, "--s3-endpoint", true
	case errors.Is(err, location.ErrNoEndpoint):
		return nil, fmt.Errorf("no S3 endpoint is known for KdcCluster %s/%s: neither spec.backup.s3Endpoint, BUCKET_HOST in ConfigMap %s/%s nor CronJob %s/%s names one; pass --s3-endpoint",
			c.Namespace, c.Name, c.Namespace, kdcv1alpha1.ObjectBucketClaimName, c.Namespace, kdcv1alpha1.BackupCronJobName(c.Name))
	case err != nil:
		return nil, err
	case loc.Endpoint == defaultEndpoint && loc.EndpointSource != "spec.backup.s3Endpoint" && !strings.HasPrefix(loc.EndpointSource, "ConfigMap"):
		loc.EndpointSource = fmt.Sprintf("the --s3-endpoint of CronJob %s/%s", c.Namespace, kdcv1alpha1.BackupCronJobName(c.Name))
	}
	st.endpointSource = loc.EndpointSource
	st.loc = snapshot.S3Location{Endpoint: loc.Endpoint, Bucket: loc.Bucket, Prefix: loc.Prefix, Region: loc.Region}
	if err := st.loc.Validate(); err != nil {
		return nil, fmt.Errorf("S3 endpoint %q (from %s) is not usable: %s", loc.Endpoint, loc.EndpointSource,
			strings.TrimPrefix(err.Error(), "--s3-endpoint "))
	}

	cred, err := o.s3Credentials(ctx, cl, c, st)
	if err != nil {
		return nil, err
	}
	st.redact = []string{cred.AccessKeyID, cred.SecretAccessKey, cred.SessionToken}
	st.s3 = snapshot.NewS3Client(st.loc, cred)
	return st, nil
}

// s3Credentials reads AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN when
// set) from the cluster's credential Secret. Errors name the Secret and the keys, never values.
func (o *Options) s3Credentials(ctx context.Context, cl client.Client, c *kdcv1alpha1.KdcCluster, st *snapshotStore) (snapshot.Credentials, error) {
	name := location.CredentialSecret(c)
	st.secret = c.Namespace + "/" + name
	from := "the ObjectBucketClaim's Secret; spec.backup.s3CredentialSecret can name another"
	if c.Spec.Backup.S3CredentialSecret != "" {
		from = "spec.backup.s3CredentialSecret"
	}
	sec := &corev1.Secret{}
	if err := cl.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: name}, sec); err != nil {
		switch {
		case apierrors.IsNotFound(err):
			return snapshot.Credentials{}, fmt.Errorf("the S3 credential Secret %s does not exist (%s); the bucket provisioner writes it when ObjectBucketClaim %s/%s is Bound: check kubectl get obc -n %s %s",
				st.secret, from, c.Namespace, kdcv1alpha1.ObjectBucketClaimName, c.Namespace, kdcv1alpha1.ObjectBucketClaimName)
		case apierrors.IsForbidden(err):
			return snapshot.Credentials{}, fmt.Errorf("you may not read the S3 credential Secret %s: %w; reading the snapshots from S3 needs get on secrets in namespace %s", st.secret, err, c.Namespace)
		}
		return snapshot.Credentials{}, fmt.Errorf("failed to get the S3 credential Secret %s: %w", st.secret, err)
	}
	cred := snapshot.Credentials{
		AccessKeyID:     strings.TrimSpace(string(sec.Data[snapshot.EnvAccessKeyID])),
		SecretAccessKey: strings.TrimSpace(string(sec.Data[snapshot.EnvSecretAccessKey])),
		SessionToken:    strings.TrimSpace(string(sec.Data[snapshot.EnvSessionToken])),
	}
	var missing []string
	if cred.AccessKeyID == "" {
		missing = append(missing, snapshot.EnvAccessKeyID)
	}
	if cred.SecretAccessKey == "" {
		missing = append(missing, snapshot.EnvSecretAccessKey)
	}
	if len(missing) > 0 {
		return snapshot.Credentials{}, fmt.Errorf("the S3 credential Secret %s (%s) has no %s; it must hold %s and %s",
			st.secret, from, strings.Join(missing, " and no "), snapshot.EnvAccessKeyID, snapshot.EnvSecretAccessKey)
	}
	return cred, nil
}

// backupCronJobEndpoint is the --s3-endpoint argument of the cluster's backup CronJob, "" when
// the CronJob does not exist (or may not be read) or names none.
func backupCronJobEndpoint(ctx context.Context, cl client.Client, c *kdcv1alpha1.KdcCluster) (string, error) {
	cj := &batchv1.CronJob{}
	key := client.ObjectKey{Namespace: c.Namespace, Name: kdcv1alpha1.BackupCronJobName(c.Name)}
	if err := cl.Get(ctx, key, cj); err != nil {
		if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
			return "", nil
		}
		return "", fmt.Errorf("failed to get CronJob %s: %w", key, err)
	}
	return cronJobS3Endpoint(cj), nil
}

// cronJobS3Endpoint is the --s3-endpoint of the CronJob's backup container, read back through
// the Job contract (jobspec.ParseBackup).
func cronJobS3Endpoint(cj *batchv1.CronJob) string {
	for _, ctr := range cj.Spec.JobTemplate.Spec.Template.Spec.Containers {
		if b, err := jobspec.ParseBackup(ctr.Args); err == nil {
			return b.Location.Endpoint
		}
	}
	return ""
}

// bucketSource says where Resolve takes the bucket from, for messages.
func bucketSource(c *kdcv1alpha1.KdcCluster) string {
	if c.Spec.Backup.DestinationPath != "" {
		return "spec.backup.destinationPath"
	}
	return fmt.Sprintf("ObjectBucketClaim %s/%s", c.Namespace, kdcv1alpha1.ObjectBucketClaimName)
}

// explain turns an S3 error of what (e.g. "list the snapshots in") into a message that says what
// to check: the credentials, the bucket or the endpoint's reachability from this machine.
func (st *snapshotStore) explain(what string, err error) error {
	classified := snapshot.ClassifyS3Error(what, st.loc, "", err)
	c := st.cluster
	var msg string
	switch snapshot.CodeOf(classified) {
	case snapshot.ExitS3Unreachable:
		cause := networkCause(err)
		if st.overridden {
			msg = fmt.Sprintf("S3 endpoint %s (--s3-endpoint) is unreachable from this machine: %s; check the URL and, with kubectl port-forward, that the forward is still running", st.loc.Endpoint, cause)
		} else {
			msg = fmt.Sprintf("S3 endpoint %s (from %s) is unreachable from this machine: %s; an in-cluster endpoint usually is not reachable from outside the cluster: %s",
				st.loc.Endpoint, st.endpointSource, cause, portForwardHint(st.loc.Endpoint))
		}
	case snapshot.ExitAccessDenied:
		msg = fmt.Sprintf("S3 at %s denied access to bucket %q (%s); check the keys %s and %s of Secret %s and that they may list and read the bucket",
			st.loc.Endpoint, st.loc.Bucket, s3ErrorCode(err, "HTTP 403"), snapshot.EnvAccessKeyID, snapshot.EnvSecretAccessKey, st.secret)
	case snapshot.ExitBucketMissing:
		msg = fmt.Sprintf("bucket %q (from %s) does not exist at %s (from %s); check spec.backup.destinationPath and the ObjectBucketClaim: kubectl get obc -n %s %s",
			st.loc.Bucket, st.bucketSource, st.loc.Endpoint, st.endpointSource, c.Namespace, kdcv1alpha1.ObjectBucketClaimName)
	default:
		msg = classified.Error()
	}
	return errors.New(st.scrub(msg))
}

// scrub removes the credential values from s.
func (st *snapshotStore) scrub(s string) string {
	for _, v := range st.redact {
		if len(v) >= 4 {
			s = strings.ReplaceAll(s, v, "<redacted>")
		}
	}
	return s
}

// s3ErrorCode is the S3 error code of err, or def.
func s3ErrorCode(err error, def string) string {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() != "" {
		return ae.ErrorCode()
	}
	return def
}

// networkCause is the innermost network error of err (DNS, refused, timeout), short enough for
// one line; the whole error otherwise.
func networkCause(err error) string {
	var de *net.DNSError
	if errors.As(err, &de) {
		return de.Error()
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Error()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// portForwardHint says how to reach an in-cluster S3 endpoint from this machine. For a Service
// host name (svc.ns, svc.ns.svc, svc.ns.svc.cluster.local) it names the Service.
func portForwardHint(endpoint string) string {
	const local = "8080"
	svc, ns, port, scheme := "<s3-service>", "<s3-namespace>", "80", "http"
	if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
		scheme = u.Scheme
		switch p := u.Port(); {
		case p != "":
			port = p
		case scheme == "https":
			port = "443"
		}
		host := u.Hostname()
		if labels := strings.Split(host, "."); net.ParseIP(host) == nil &&
			(len(labels) == 2 || (len(labels) >= 3 && labels[2] == "svc")) {
			svc, ns = labels[0], labels[1]
		}
	}
	return fmt.Sprintf("run `kubectl port-forward -n %s svc/%s %s:%s` and pass --s3-endpoint=%s://127.0.0.1:%s",
		ns, svc, local, port, scheme, local)
}
