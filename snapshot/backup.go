package snapshot

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/jobspec"
)

// Object metadata keys (x-amz-meta-*) of a snapshot object.
const (
	MetaEtcdRevision       = "etcd-revision"
	MetaEtcdVersion        = "etcd-version"
	MetaEtcdStorageVersion = "etcd-storage-version"
	MetaEtcdDBSize         = "etcd-db-size"
	MetaPartSize           = "part-size"
	MetaCluster            = "cluster"
	MetaCreatedBy          = "created-by"
	// TagSHA256 is the object tag holding the whole-object SHA-256 (hex), set after completion.
	TagSHA256 = "sha256"
	createdBy = "kdc-etcd-backup"
)

// Backup defaults (jobspec's flag defaults).
const (
	DefaultMinSize     = jobspec.DefaultMinSize
	DefaultPartSize    = jobspec.DefaultPartSize
	DefaultConcurrency = jobspec.DefaultConcurrency
	DefaultDialTimeout = jobspec.DefaultDialTimeout
	// MinPartSize is S3's minimum multipart part size.
	MinPartSize = 5 << 20
)

// BackupOptions configure Backup.
type BackupOptions struct {
	// Cluster is the tenant cluster C; the key is C/C-<ts>.db.
	Cluster string
	// Endpoints are etcd client URLs; the first that answers Status is used.
	Endpoints []string
	// CACert, Cert and Key are the client TLS files of the DS-etcd-certs Secret.
	CACert, Cert, Key string
	// DialTimeout bounds connecting to etcd and its Status call.
	DialTimeout time.Duration

	Location    S3Location
	Credentials Credentials
	// RetentionDays of the lifecycle rule; 0 leaves lifecycle alone.
	RetentionDays int32
	// MinSize is the smallest acceptable snapshot in bytes; smaller exits ExitSnapshotTooSmall.
	MinSize int64
	// PartSize and Concurrency of the multipart upload; memory is about (Concurrency+1)*PartSize.
	PartSize    int64
	Concurrency int

	// Now is the clock of the key's timestamp; time.Now when nil.
	Now    func() time.Time
	Logger *slog.Logger
}

// BackupResult is the backup's termination message.
type BackupResult = jobspec.Result

func (o *BackupOptions) defaults() {
	if o.MinSize == 0 {
		o.MinSize = DefaultMinSize
	}
	if o.PartSize == 0 {
		o.PartSize = DefaultPartSize
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func (o *BackupOptions) validate() error {
	if o.Cluster == "" {
		return errorf(ExitUsage, "--cluster is required")
	}
	if _, _, err := v1alpha1.ParseSnapshotKey(v1alpha1.SnapshotKey(o.Cluster, o.Now()), o.Cluster); err != nil {
		return errorf(ExitUsage, "--cluster %q cannot name a snapshot: %w", o.Cluster, err)
	}
	if len(o.Endpoints) == 0 {
		return errorf(ExitUsage, "--endpoints is required")
	}
	if o.PartSize < MinPartSize {
		return errorf(ExitUsage, "--part-size %d is below S3's minimum of %d bytes", o.PartSize, MinPartSize)
	}
	if o.Concurrency < 1 {
		return errorf(ExitUsage, "--concurrency must be at least 1")
	}
	if o.RetentionDays < 0 || o.RetentionDays > 365 {
		return errorf(ExitUsage, "--retention-days %d is outside 0..365", o.RetentionDays)
	}
	return o.Location.Validate()
}

// Backup streams a snapshot of etcd into S3 and applies the retention rule. See docs/jobs.md.
func Backup(ctx context.Context, o BackupOptions) (*BackupResult, error) {
	o.defaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	key := v1alpha1.SnapshotKey(o.Cluster, o.Now())
	res := &BackupResult{Command: jobspec.CommandBackup, Key: key, ObjectKey: o.Location.ObjectKey(key), Bucket: o.Location.Bucket}
	log := o.Logger.With("key", key, "bucket", o.Location.Bucket)

	cli, endpoint, status, err := connectEtcd(ctx, o)
	if err != nil {
		return res, err
	}
	defer cli.Close()
	res.Endpoint, res.EtcdVersion, res.Revision = endpoint, status.Version, status.Header.Revision
	log.Info("Connected to etcd", "endpoint", endpoint, "etcdVersion", status.Version, "revision", status.Header.Revision, "dbSize", status.DbSize)

	// The stream follows ctx (a signal stops reading from etcd); the upload does not, so that
	// the uploader can still abort the multipart upload after a signal.
	streamCtx, cancelStream := context.WithCancel(ctx)
	defer cancelStream()
	sc, err := pb.NewMaintenanceClient(cli.ActiveConnection()).Snapshot(streamCtx, &pb.SnapshotRequest{}, grpc.ForceCodecV2(snapshotCodec{}))
	if err != nil {
		return res, errorf(ExitEtcdUnavailable, "failed to open the snapshot stream from etcd %s: %w; check etcd's health", endpoint, err)
	}
	stream, storageVersion, err := newSnapshotStream(endpoint, func(m *snapshotMessage) error { return sc.RecvMsg(m) })
	if err != nil {
		return res, err
	}
	res.StorageVersion = storageVersion
	if stream.dbSize < o.MinSize {
		return res, errorf(ExitSnapshotTooSmall, "snapshot from etcd %s is %d bytes, below the minimum of %d; nothing was uploaded to s3://%s/%s; check etcd's health and data (--min-size)", endpoint, stream.dbSize, o.MinSize, o.Location.Bucket, res.ObjectKey)
	}

	s3c := NewS3Client(o.Location, o.Credentials)
	upCtx := context.WithoutCancel(ctx)
	// The retention rule does not depend on the object, so it is applied while the snapshot
	// uploads (up to three round trips off the critical path). A backup that then fails has
	// still set the rule the cluster's spec asks for, which is harmless.
	lifecycle := func() (string, error) { return LifecycleDisabled, nil }
	if o.RetentionDays > 0 {
		lifecycle = inBackground(func() (string, error) {
			return ApplyLifecycle(upCtx, s3c, o.Location, o.Cluster, o.RetentionDays)
		})
		defer lifecycle() // no request outlives Backup
	}
	uploader := &streamUploader{
		client:      s3c,
		partSize:    o.PartSize,
		concurrency: o.Concurrency,
		// Every part carries its own signed x-amz-checksum-sha256, which the server verifies, so
		// hashing the payload a second time for the SigV4 signature (done over plain http) would
		// only cost CPU.
		opts: []func(*s3.Options){s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)},
	}
	out, err := uploader.upload(upCtx, stream, &s3.CreateMultipartUploadInput{
		Bucket:            aws.String(o.Location.Bucket),
		Key:               aws.String(res.ObjectKey),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
		ContentType:       aws.String("application/octet-stream"),
		Metadata: map[string]string{
			MetaEtcdRevision:       strconv.FormatInt(status.Header.Revision, 10),
			MetaEtcdVersion:        status.Version,
			MetaEtcdStorageVersion: storageVersion,
			MetaEtcdDBSize:         strconv.FormatInt(stream.dbSize, 10),
			MetaPartSize:           strconv.FormatInt(o.PartSize, 10),
			MetaCluster:            o.Cluster,
			MetaCreatedBy:          createdBy,
		},
	})
	if err != nil {
		if ctx.Err() != nil {
			return res, errorf(ExitFailed, "backup to s3://%s/%s was interrupted (%w); the multipart upload was aborted and nothing was stored", o.Location.Bucket, res.ObjectKey, context.Cause(ctx))
		}
		var se *Error
		if errors.As(err, &se) { // the stream's own failure, or a part stored with another checksum
			return res, se
		}
		return res, s3Error("upload the snapshot to", o.Location, res.ObjectKey, err)
	}
	res.Size, res.SHA256 = stream.Size(), stream.SHA256()
	res.Parts = max(len(out.Parts), 1)
	res.S3ChecksumSHA256 = out.ChecksumSHA256
	if err := checkUploadChecksum(out, res.SHA256); err != nil {
		// The object is complete but S3 recorded another checksum than we sent: remove it.
		if _, derr := s3c.DeleteObject(upCtx, &s3.DeleteObjectInput{Bucket: aws.String(o.Location.Bucket), Key: aws.String(res.ObjectKey)}); derr != nil {
			log.Error("Failed to delete the object with a wrong checksum", "err", derr)
		}
		return res, errorf(ExitIntegrity, "S3 stored s3://%s/%s with checksum %s: %w; the object was deleted, retry", o.Location.Bucket, res.ObjectKey, res.S3ChecksumSHA256, err)
	}
	log.Info("Uploaded snapshot", "size", res.Size, "parts", res.Parts, "sha256", res.SHA256)

	if _, err := s3c.PutObjectTagging(upCtx, &s3.PutObjectTaggingInput{
		Bucket:  aws.String(o.Location.Bucket),
		Key:     aws.String(res.ObjectKey),
		Tagging: &types.Tagging{TagSet: []types.Tag{{Key: aws.String(TagSHA256), Value: aws.String(res.SHA256)}}},
	}); err != nil {
		res.TagError = firstLine(err.Error())
		log.Warn("Failed to tag the snapshot with its SHA-256; restores still check the S3 checksum and etcd's hash", "err", err)
	}

	res.Lifecycle = LifecycleDisabled
	if o.RetentionDays > 0 {
		state, err := lifecycle()
		res.Lifecycle = state
		if err != nil {
			res.LifecycleError = firstLine(err.Error())
			log.Warn("Failed to apply the retention lifecycle rule; the next backup retries", "err", err)
		}
		if state == LifecycleUnsupported {
			// The fallback: this backup deletes the expired snapshots itself.
			deleted, err := PruneExpired(upCtx, s3c, o.Location, o.Cluster, o.RetentionDays, o.Now(), res.ObjectKey)
			res.Pruned = len(deleted)
			for _, k := range deleted {
				log.Info("Deleted an expired snapshot (the backend has no lifecycle rules)", "object", k, "retentionDays", o.RetentionDays)
			}
			if err != nil {
				res.LifecycleError = firstLine(err.Error())
				log.Warn("Failed to delete expired snapshots; the next backup retries", "err", err)
			} else {
				res.Lifecycle = LifecyclePruned
			}
		}
	}
	res.DurationSeconds = time.Since(start).Seconds()
	return res, nil
}

// checkUploadChecksum compares the checksum S3 recorded with the one our data implies: the
// whole-object SHA-256 for a single PutObject, the composite of the parts' SHA-256s otherwise.
// A backend that returns no checksum is accepted (restores still check etcd's hash and the tag).
func checkUploadChecksum(out *uploadResult, wholeHex string) error {
	got, ok, err := parseS3Checksum(out.ChecksumSHA256)
	if err != nil || !ok {
		return err
	}
	var want s3Checksum
	if got.Parts == 0 {
		raw, err := hex.DecodeString(wholeHex)
		if err != nil {
			return err
		}
		want = s3Checksum{Digest: base64.StdEncoding.EncodeToString(raw)}
	} else {
		sums := make([]string, 0, len(out.Parts))
		for _, p := range out.Parts {
			sums = append(sums, aws.ToString(p.ChecksumSHA256))
		}
		if want, err = compositeOf(sums); err != nil {
			return err
		}
	}
	if got != want {
		return fmt.Errorf("expected %s", want)
	}
	return nil
}

// connectEtcd returns a client bound to the first endpoint that answers Status, so the status
// and the snapshot come from the same member, over the same connection.
func connectEtcd(ctx context.Context, o BackupOptions) (*clientv3.Client, string, *pb.StatusResponse, error) {
	tlsInfo := transport.TLSInfo{CertFile: o.Cert, KeyFile: o.Key, TrustedCAFile: o.CACert}
	tlsCfg, err := tlsInfo.ClientConfig()
	if err != nil {
		return nil, "", nil, errorf(ExitEtcdUnavailable, "failed to load the etcd client TLS files (--cacert %s, --cert %s, --key %s): %w; check the DS-etcd-certs Secret is mounted", o.CACert, o.Cert, o.Key, err)
	}
	var errs []string
	for _, ep := range o.Endpoints {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{ep},
			TLS:         tlsCfg,
			DialTimeout: o.DialTimeout,
			Logger:      zap.NewNop(),
			Context:     ctx,
			DialOptions: etcdDialOptions,
		})
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", ep, err))
			continue
		}
		// Status on the client's own connection, the one the snapshot streams over: clientv3's
		// Maintenance.Status would dial the endpoint a second time (another TCP connection and
		// TLS handshake before the snapshot can start) only to close it again.
		sctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
		st, err := pb.NewMaintenanceClient(cli.ActiveConnection()).Status(sctx, &pb.StatusRequest{})
		cancel()
		if err != nil {
			cli.Close()
			errs = append(errs, fmt.Sprintf("%s: %v", ep, err))
			continue
		}
		return cli, ep, st, nil
	}
	return nil, "", nil, errorf(ExitEtcdUnavailable, "no etcd endpoint answered (%s); check --endpoints, the DS-etcd-certs client certificate and that etcd is running", strings.Join(errs, "; "))
}

// etcdFlowControlWindow caps what gRPC buffers of the snapshot stream ahead of the uploader.
// By default gRPC grows the HTTP/2 window from a bandwidth estimate (up to 16 MiB), and a fast
// etcd filled it with data waiting for a free part buffer: megabytes of heap for nothing. 1 MiB
// still covers 1 GB/s at a 1 ms round trip.
const etcdFlowControlWindow = 1 << 20

var etcdDialOptions = []grpc.DialOption{
	grpc.WithInitialWindowSize(etcdFlowControlWindow),
	grpc.WithInitialConnWindowSize(etcdFlowControlWindow),
}

// firstLine keeps error text on one line for the termination message.
func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
