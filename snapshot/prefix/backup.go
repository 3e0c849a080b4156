package prefix

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/jobspec"
	"kube-dc.com/etcd-backup/snapshot"
)

// Object metadata (x-amz-meta-*) of a prefix snapshot, besides snapshot's etcd-revision,
// etcd-version, cluster, part-size and created-by.
const (
	// MetaFormat is FormatV1: the object is a prefix snapshot, not an etcd database.
	MetaFormat = snapshot.MetaSnapshotFormat
	// MetaEtcdPrefix is the tenant's etcd prefix.
	MetaEtcdPrefix = "etcd-prefix"
	// MetaPurpose is PurposeBackup or PurposePreRestore.
	MetaPurpose = "purpose"
	// MetaRestoreOf is, on a pre-restore copy, the key of the snapshot being restored.
	MetaRestoreOf = "restore-of"
)

// DefaultMinKeys is the fewest keys a backup accepts: a kube-apiserver always keeps some, so
// an empty prefix is a wrong prefix or a failed read.
const DefaultMinKeys = jobspec.DefaultMinKeys

// BackupOptions configure Backup.
type BackupOptions struct {
	// Cluster is the tenant cluster C; the key is C/C-<ts>.db.
	Cluster string
	// Prefix is the tenant kube-apiserver's --etcd-prefix.
	Prefix string
	Etcd   EtcdOptions

	Location    snapshot.S3Location
	Credentials snapshot.Credentials
	// RetentionDays of the lifecycle rule; 0 leaves lifecycle alone.
	RetentionDays int32
	// MinKeys is the fewest keys accepted; fewer exits snapshot.ExitSnapshotTooSmall.
	MinKeys int
	// PartSize and Concurrency of the multipart upload.
	PartSize    int64
	Concurrency int

	// Now is the clock of the key's timestamp; time.Now when nil.
	Now    func() time.Time
	Logger *slog.Logger
}

// BackupResult is prefix-backup's termination message.
type BackupResult struct {
	Key              string  `json:"key"`
	ObjectKey        string  `json:"objectKey"`
	Bucket           string  `json:"bucket"`
	Prefix           string  `json:"prefix"`
	Format           string  `json:"format"`
	Size             int64   `json:"size"`
	SHA256           string  `json:"sha256"`
	S3ChecksumSHA256 string  `json:"s3ChecksumSHA256,omitempty"`
	Parts            int     `json:"parts"`
	Revision         int64   `json:"revision"`
	Keys             int64   `json:"keys"`
	Leases           int     `json:"leases"`
	EtcdVersion      string  `json:"etcdVersion"`
	Endpoint         string  `json:"endpoint"`
	DurationSeconds  float64 `json:"durationSeconds"`
	Lifecycle        string  `json:"lifecycle"`
	LifecycleError   string  `json:"lifecycleError,omitempty"`
	Pruned           int     `json:"pruned,omitempty"`
	TagError         string  `json:"tagError,omitempty"`
}

func (o *BackupOptions) defaults() {
	if o.MinKeys == 0 {
		o.MinKeys = DefaultMinKeys
	}
	if o.PartSize == 0 {
		o.PartSize = snapshot.DefaultPartSize
	}
	if o.Concurrency == 0 {
		o.Concurrency = snapshot.DefaultConcurrency
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func (o *BackupOptions) validate() (KeyRange, error) {
	if o.Cluster == "" {
		return KeyRange{}, errorf(snapshot.ExitUsage, "--cluster is required")
	}
	if _, _, err := v1alpha1.ParseSnapshotKey(v1alpha1.SnapshotKey(o.Cluster, o.Now()), o.Cluster); err != nil {
		return KeyRange{}, errorf(snapshot.ExitUsage, "--cluster %q cannot name a snapshot: %w", o.Cluster, err)
	}
	rng, err := RangeOf(o.Prefix)
	if err != nil {
		return KeyRange{}, errorf(snapshot.ExitUsage, "--etcd-prefix: %w", err)
	}
	if o.RetentionDays < 0 || o.RetentionDays > 365 {
		return KeyRange{}, errorf(snapshot.ExitUsage, "--retention-days %d is outside 0..365", o.RetentionDays)
	}
	if o.PartSize < snapshot.MinPartSize {
		return KeyRange{}, errorf(snapshot.ExitUsage, "--part-size %d is below S3's minimum of %d bytes", o.PartSize, snapshot.MinPartSize)
	}
	return rng, o.Location.Validate()
}

// Backup streams every key under the prefix, read at one revision, into S3 as C/C-<ts>.db and
// applies the retention rule, with the guarantees of snapshot.Backup. See docs/jobs.md.
func Backup(ctx context.Context, o BackupOptions) (*BackupResult, error) {
	o.defaults()
	rng, err := o.validate()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	key := v1alpha1.SnapshotKey(o.Cluster, o.Now())
	res := &BackupResult{Key: key, ObjectKey: o.Location.ObjectKey(key), Bucket: o.Location.Bucket, Prefix: rng.Prefix, Format: FormatV1}
	log := o.Logger.With("key", key, "bucket", o.Location.Bucket, "prefix", rng.Prefix)

	c, err := connect(ctx, o.Etcd)
	if err != nil {
		return res, err
	}
	defer c.cli.Close()
	res.Endpoint, res.EtcdVersion = c.endpoint, c.version

	d, err := startDump(ctx, c, rng, 0, Header{Cluster: o.Cluster, CreatedAt: o.Now().UTC(), Purpose: PurposeBackup})
	if err != nil {
		return res, err
	}
	defer d.close()
	res.Revision = d.header.Revision
	if n, more := d.firstPageKeys(); !more && n < o.MinKeys {
		return res, errorf(snapshot.ExitSnapshotTooSmall, "etcd %s holds %d keys under %q at revision %d, fewer than --min-keys %d; nothing was uploaded; check --etcd-prefix is the tenant kube-apiserver's", c.endpoint, n, rng.Start, res.Revision, o.MinKeys)
	}
	log.Info("Reading the prefix", "endpoint", c.endpoint, "etcdVersion", c.version, "revision", res.Revision)

	s3c := snapshot.NewS3Client(o.Location, o.Credentials)
	upCtx := context.WithoutCancel(ctx)
	lifecycle := func() (string, error) { return snapshot.LifecycleDisabled, nil }
	if o.RetentionDays > 0 {
		// The rule does not depend on the object: applied while the snapshot uploads.
		ch := make(chan struct{})
		var state string
		var lerr error
		go func() {
			defer close(ch)
			state, lerr = snapshot.ApplyLifecycle(upCtx, s3c, o.Location, o.Cluster, o.RetentionDays)
		}()
		lifecycle = func() (string, error) { <-ch; return state, lerr }
		defer lifecycle()
	}
	up, err := snapshot.UploadStream(upCtx, s3c, o.Location, res.ObjectKey, d, snapshot.UploadOptions{
		PartSize:    o.PartSize,
		Concurrency: o.Concurrency,
		Metadata:    objectMetadata(d.header),
	})
	if err != nil {
		if ctx.Err() != nil {
			return res, errorf(snapshot.ExitFailed, "backup to s3://%s/%s was interrupted (%w); the multipart upload was aborted and nothing was stored", o.Location.Bucket, res.ObjectKey, context.Cause(ctx))
		}
		return res, err
	}
	tr := d.Trailer()
	res.Size, res.SHA256, res.S3ChecksumSHA256, res.Parts, res.TagError = up.Size, up.SHA256, up.S3ChecksumSHA256, up.Parts, up.TagError
	res.Keys, res.Leases = tr.Keys, len(tr.Leases)
	log.Info("Uploaded prefix snapshot", "size", res.Size, "keys", res.Keys, "leases", res.Leases, "sha256", res.SHA256)

	res.Lifecycle = snapshot.LifecycleDisabled
	if o.RetentionDays > 0 {
		state, err := lifecycle()
		res.Lifecycle = state
		if err != nil {
			res.LifecycleError = err.Error()
			log.Warn("Failed to apply the retention lifecycle rule; the next backup retries", "err", err)
		}
		if state == snapshot.LifecycleUnsupported {
			deleted, err := snapshot.PruneExpired(upCtx, s3c, o.Location, o.Cluster, o.RetentionDays, o.Now(), res.ObjectKey)
			res.Pruned = len(deleted)
			if err != nil {
				res.LifecycleError = err.Error()
			} else {
				res.Lifecycle = snapshot.LifecyclePruned
			}
		}
	}
	res.DurationSeconds = time.Since(start).Seconds()
	return res, nil
}

// objectMetadata is the metadata of a prefix snapshot object with header h.
func objectMetadata(h Header) map[string]string {
	m := map[string]string{
		snapshot.MetaEtcdRevision: strconv.FormatInt(h.Revision, 10),
		snapshot.MetaEtcdVersion:  h.EtcdVersion,
		snapshot.MetaCluster:      h.Cluster,
		MetaFormat:                FormatV1,
		MetaEtcdPrefix:            h.Prefix,
		MetaPurpose:               h.Purpose,
	}
	if h.RestoreOf != "" {
		m[MetaRestoreOf] = h.RestoreOf
	}
	return m
}
