package prefix

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/snapshot"
)

// States of the prefix a restore reports (RestoreResult.PrefixState).
const (
	// StateRestored: the prefix holds exactly the snapshot's keys.
	StateRestored = "restored"
	// StateUnchanged: the restore failed before its first write; the prefix is as it was.
	StateUnchanged = "unchanged"
	// StateUndone: the restore failed after a write and converged the prefix back to the
	// pre-restore copy.
	StateUndone = "undone"
	// StatePartial: the restore stopped after a write and could not undo it (or was
	// interrupted): re-run the same restore to finish it, or run it with --undo.
	StatePartial = "partial"
)

// RestoreOptions configure Restore and Undo.
type RestoreOptions struct {
	// Cluster is the tenant cluster C.
	Cluster string
	// Key is the snapshot key C/C-<ts>.db (without the location's prefix).
	Key string
	// Prefix is the tenant kube-apiserver's --etcd-prefix; the snapshot must record the same.
	Prefix string
	// Attempt names this restore request; the pre-restore copy is C/pre-restore/<Attempt>.db.
	// A re-run of the same request passes the same Attempt and reuses the copy.
	Attempt string
	Etcd    EtcdOptions
	Limits  Limits

	Location    snapshot.S3Location
	Credentials snapshot.Credentials
	// PartSize and Concurrency of the pre-restore copy's upload.
	PartSize    int64
	Concurrency int
	// WorkDir holds the downloaded snapshot while it is applied; os.TempDir() when empty.
	WorkDir string

	// AfterTxn is a test's fault point, called after each committed transaction of the
	// restore (not of its undo); an error fails the restore there.
	AfterTxn func(Stats) error
	Now      func() time.Time
	Logger   *slog.Logger
}

// RestoreResult is prefix-restore's termination message (on failure too, with the Failure
// fields beside it).
type RestoreResult struct {
	Key       string `json:"key"`
	ObjectKey string `json:"objectKey"`
	Bucket    string `json:"bucket"`
	Prefix    string `json:"prefix"`
	Attempt   string `json:"attempt"`
	// PreRestoreKey is the object holding the prefix as it was before the first write.
	PreRestoreKey string `json:"preRestoreKey"`
	// PreRestoreReused: an earlier run of this attempt had made the copy.
	PreRestoreReused bool  `json:"preRestoreReused"`
	PreRestoreKeys   int64 `json:"preRestoreKeys"`
	// SnapshotRevision and SnapshotKeys are the snapshot's.
	SnapshotRevision int64  `json:"snapshotRevision"`
	SnapshotKeys     int64  `json:"snapshotKeys"`
	SHA256           string `json:"sha256,omitempty"`
	Stats
	// Undo is what converging back to the pre-restore copy did, when it ran.
	Undo            *Stats  `json:"undo,omitempty"`
	PrefixState     string  `json:"prefixState"`
	EtcdVersion     string  `json:"etcdVersion,omitempty"`
	Endpoint        string  `json:"endpoint,omitempty"`
	DurationSeconds float64 `json:"durationSeconds"`
}

// RestoreFailure is the termination message of a failed prefix-restore: snapshot.Failure's
// error, reason and exit code, and what the restore did and left.
type RestoreFailure struct {
	Error    string `json:"error"`
	Reason   string `json:"reason"`
	ExitCode int    `json:"exitCode"`
	*RestoreResult
}

// NewRestoreFailure describes a failed restore or undo for the termination message.
func NewRestoreFailure(err error, res *RestoreResult) RestoreFailure {
	f := snapshot.NewFailure(err)
	if res == nil {
		res = &RestoreResult{}
	}
	return RestoreFailure{Error: f.Error, Reason: f.Reason, ExitCode: f.ExitCode, RestoreResult: res}
}

// attemptPattern keeps an attempt usable in an object key.
var attemptPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// PreRestoreKey is the key of the pre-restore copy of attempt: under C/ (so the cluster's
// retention rule expires it) but never a snapshot key C/C-<ts>.db.
func PreRestoreKey(cluster, attempt string) string {
	return cluster + "/pre-restore/" + attempt + ".db"
}

func (o *RestoreOptions) defaults() {
	if o.PartSize == 0 {
		o.PartSize = snapshot.DefaultPartSize
	}
	if o.Concurrency == 0 {
		o.Concurrency = snapshot.DefaultConcurrency
	}
	if o.WorkDir == "" {
		o.WorkDir = os.TempDir()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Limits = o.Limits.withDefaults()
}

func (o *RestoreOptions) validate(undo bool) (KeyRange, error) {
	if o.Cluster == "" {
		return KeyRange{}, errorf(snapshot.ExitUsage, "--cluster is required")
	}
	if !undo || o.Key != "" {
		if o.Key == "" {
			return KeyRange{}, errorf(snapshot.ExitUsage, "--key is required")
		}
		if _, _, err := v1alpha1.ParseSnapshotKey(o.Key, o.Cluster); err != nil {
			return KeyRange{}, errorf(snapshot.ExitUsage, "--key %q is not a snapshot key of cluster %q (C/C-<ts>.db): %w", o.Key, o.Cluster, err)
		}
	}
	if !attemptPattern.MatchString(o.Attempt) {
		return KeyRange{}, errorf(snapshot.ExitUsage, "--attempt %q must be 1-100 letters, digits, '.', '_' or '-' naming this restore request (the same on every re-run of it), e.g. the request's time 20250101T020000Z", o.Attempt)
	}
	if o.Limits.MaxTxnOps < 1 || o.Limits.MaxRequestBytes < 2*requestMargin {
		return KeyRange{}, errorf(snapshot.ExitUsage, "--max-txn-ops must be at least 1 and --max-request-bytes at least %d", 2*requestMargin)
	}
	rng, err := RangeOf(o.Prefix)
	if err != nil {
		return KeyRange{}, errorf(snapshot.ExitUsage, "--etcd-prefix: %w", err)
	}
	return rng, o.Location.Validate()
}

// Restore converges the tenant's prefix to the snapshot o.Key through the etcd API, etcd
// serving every co-tenant throughout (docs/jobs.md, "prefix-restore"):
//  1. download the snapshot into WorkDir, checking the object's SHA-256 and the snapshot's own
//     form, prefix, key order and hash; refuse a snapshot of another prefix;
//  2. unless an earlier run of the attempt made it, upload the prefix as it is now (the
//     pre-restore copy), before any write;
//  3. converge: delete, put or keep each key, in guarded transactions;
//  4. on a failure after a write, converge back to the pre-restore copy.
func Restore(ctx context.Context, o RestoreOptions) (*RestoreResult, error) {
	o.defaults()
	rng, err := o.validate(false)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	res := &RestoreResult{Key: o.Key, ObjectKey: o.Location.ObjectKey(o.Key), Bucket: o.Location.Bucket, Prefix: rng.Prefix,
		Attempt: o.Attempt, PreRestoreKey: o.Location.ObjectKey(PreRestoreKey(o.Cluster, o.Attempt)), PrefixState: StateUnchanged}
	defer func() { res.DurationSeconds = time.Since(start).Seconds() }()
	log := o.Logger.With("key", o.Key, "prefix", rng.Prefix, "attempt", o.Attempt)
	s3c := snapshot.NewS3Client(o.Location, o.Credentials)

	snap, err := spool(ctx, s3c, o.Location, res.ObjectKey, o.WorkDir)
	if err != nil {
		return res, err
	}
	defer snap.remove()
	res.SnapshotRevision, res.SnapshotKeys, res.SHA256 = snap.header.Revision, snap.trailer.Keys, snap.sha256
	if err := checkSnapshotHeader(snap.header, rng, o.Cluster, PurposeBackup); err != nil {
		return res, err
	}
	log.Info("Verified the snapshot", "revision", snap.header.Revision, "keys", snap.trailer.Keys, "sha256", snap.sha256)

	c, err := connect(ctx, o.Etcd)
	if err != nil {
		return res, err
	}
	defer c.cli.Close()
	res.EtcdVersion, res.Endpoint = c.version, c.endpoint

	rev, err := ensurePreRestoreCopy(ctx, s3c, c, rng, o, res, log)
	if err != nil {
		return res, err
	}

	src, err := snap.open()
	if err != nil {
		return res, err
	}
	stats, wrote, err := converge(ctx, c, rng, src, snap.trailer.Leases, rev, o.Limits, o.AfterTxn, log)
	res.Stats = stats
	if err == nil {
		res.PrefixState = StateRestored
		log.Info("Restored the prefix", "put", stats.Put, "deleted", stats.Deleted, "unchanged", stats.Unchanged, "revisionBefore", stats.RevisionBefore, "revisionAfter", stats.RevisionAfter)
		return res, nil
	}
	if !wrote {
		return res, err
	}
	res.PrefixState = StatePartial
	if ctx.Err() != nil {
		// A signal: the Job is going away. A re-run converges; so does --undo.
		return res, errorf(snapshot.CodeOf(err), "%w; interrupted after %d puts and %d deletes: the prefix is partly restored, re-run the same restore (same --attempt) or run it with --undo", err, stats.Put, stats.Deleted)
	}
	log.Error("The restore failed after a write; converging the prefix back to the pre-restore copy", "err", err)
	undo, uerr := undoTo(ctx, s3c, c, rng, o, res.PreRestoreKey)
	res.Undo = undo
	if uerr != nil {
		return res, errorf(snapshot.CodeOf(err), "%w; converging back to the pre-restore copy s3://%s/%s failed too (%v): the prefix is partly restored, run prefix-restore --undo with the same --attempt", err, o.Location.Bucket, res.PreRestoreKey, uerr)
	}
	res.PrefixState = StateUndone
	return res, errorf(snapshot.CodeOf(err), "%w; the prefix was converged back to its pre-restore content (s3://%s/%s)", err, o.Location.Bucket, res.PreRestoreKey)
}

// Undo converges the prefix back to the pre-restore copy of o.Attempt. Without a copy the
// attempt never wrote, and there is nothing to undo.
func Undo(ctx context.Context, o RestoreOptions) (*RestoreResult, error) {
	o.defaults()
	rng, err := o.validate(true)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	res := &RestoreResult{Key: o.Key, Bucket: o.Location.Bucket, Prefix: rng.Prefix, Attempt: o.Attempt,
		PreRestoreKey: o.Location.ObjectKey(PreRestoreKey(o.Cluster, o.Attempt)), PrefixState: StateUnchanged}
	defer func() { res.DurationSeconds = time.Since(start).Seconds() }()
	s3c := snapshot.NewS3Client(o.Location, o.Credentials)
	if _, err := headPreRestore(ctx, s3c, o.Location, res.PreRestoreKey); errors.Is(err, errNoCopy) {
		o.Logger.Info("No pre-restore copy: the attempt never wrote, nothing to undo", "preRestoreKey", res.PreRestoreKey)
		return res, nil
	} else if err != nil {
		return res, err
	}
	c, err := connect(ctx, o.Etcd)
	if err != nil {
		return res, err
	}
	defer c.cli.Close()
	res.EtcdVersion, res.Endpoint = c.version, c.endpoint
	st, err := undoTo(ctx, s3c, c, rng, o, res.PreRestoreKey)
	res.Undo = st
	if err != nil {
		res.PrefixState = StatePartial
		return res, err
	}
	res.PrefixState = StateUndone
	return res, nil
}

// undoTo converges the prefix to the pre-restore copy objectKey.
func undoTo(ctx context.Context, s3c *s3.Client, c *etcdConn, rng KeyRange, o RestoreOptions, objectKey string) (*Stats, error) {
	pre, err := spool(ctx, s3c, o.Location, objectKey, o.WorkDir)
	if err != nil {
		return nil, err
	}
	defer pre.remove()
	if err := checkSnapshotHeader(pre.header, rng, o.Cluster, PurposePreRestore); err != nil {
		return nil, err
	}
	if pre.header.Attempt != o.Attempt {
		return nil, errorf(snapshot.ExitIntegrity, "s3://%s/%s is the pre-restore copy of attempt %q, not %q; check --attempt", o.Location.Bucket, objectKey, pre.header.Attempt, o.Attempt)
	}
	src, err := pre.open()
	if err != nil {
		return nil, err
	}
	st, _, err := converge(ctx, c, rng, src, pre.trailer.Leases, 0, o.Limits, nil, o.Logger)
	if err == nil {
		o.Logger.Info("Converged the prefix back to the pre-restore copy", "put", st.Put, "deleted", st.Deleted, "unchanged", st.Unchanged)
	}
	return &st, err
}

// checkSnapshotHeader refuses a snapshot of another prefix, cluster or purpose.
func checkSnapshotHeader(h Header, rng KeyRange, cluster, purpose string) error {
	if h.Prefix != rng.Prefix {
		return errorf(snapshot.ExitUsage, "the snapshot holds etcd prefix %q, not %q: refusing to restore another tenant's keys; restore a snapshot of this cluster's prefix (kubectl kdc backups %s)", h.Prefix, rng.Prefix, cluster)
	}
	if h.Cluster != cluster {
		return errorf(snapshot.ExitUsage, "the snapshot was taken for cluster %q, not %q; restore a snapshot of this cluster", h.Cluster, cluster)
	}
	if h.Purpose != purpose {
		return errorf(snapshot.ExitUsage, "the object is a %q prefix snapshot, not a %q one", h.Purpose, purpose)
	}
	return nil
}

var errNoCopy = errors.New("no pre-restore copy")

// headPreRestore reads the pre-restore copy's metadata; errNoCopy when there is none.
func headPreRestore(ctx context.Context, s3c *s3.Client, loc snapshot.S3Location, objectKey string) (map[string]string, error) {
	out, err := s3c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(loc.Bucket), Key: aws.String(objectKey)})
	if err != nil {
		var re interface{ HTTPStatusCode() int }
		if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound {
			return nil, errNoCopy
		}
		return nil, snapshot.ClassifyS3Error("read", loc, objectKey, err)
	}
	return out.Metadata, nil
}

// ensurePreRestoreCopy makes the pre-restore copy unless an earlier run of the attempt did,
// and returns the revision the copy was read at when it made one now (the convergence then
// reads the same revision, so every write is guarded against any change since the copy), or 0.
func ensurePreRestoreCopy(ctx context.Context, s3c *s3.Client, c *etcdConn, rng KeyRange, o RestoreOptions, res *RestoreResult, log *slog.Logger) (int64, error) {
	meta, err := headPreRestore(ctx, s3c, o.Location, res.PreRestoreKey)
	switch {
	case err == nil:
		if meta[MetaRestoreOf] != o.Key || meta[MetaEtcdPrefix] != rng.Prefix {
			return 0, errorf(snapshot.ExitUsage, "attempt %q already restored %q on prefix %q (s3://%s/%s); a new restore request needs a new --attempt", o.Attempt, meta[MetaRestoreOf], meta[MetaEtcdPrefix], o.Location.Bucket, res.PreRestoreKey)
		}
		res.PreRestoreReused = true
		log.Info("Reusing the pre-restore copy of an earlier run of this attempt", "preRestoreKey", res.PreRestoreKey)
		return 0, nil
	case !errors.Is(err, errNoCopy):
		return 0, err
	}
	d, err := startDump(ctx, c, rng, 0, Header{Cluster: o.Cluster, CreatedAt: o.Now().UTC(), Purpose: PurposePreRestore, RestoreOf: o.Key, Attempt: o.Attempt})
	if err != nil {
		return 0, err
	}
	defer d.close()
	up, err := snapshot.UploadStream(context.WithoutCancel(ctx), s3c, o.Location, res.PreRestoreKey, d, snapshot.UploadOptions{
		PartSize: o.PartSize, Concurrency: o.Concurrency, Metadata: objectMetadata(d.header),
	})
	if err != nil {
		return 0, fmt.Errorf("failed to keep the prefix's content before the restore: %w", err)
	}
	res.PreRestoreKeys = d.Trailer().Keys
	log.Info("Kept the prefix's content before the restore", "preRestoreKey", res.PreRestoreKey, "revision", d.header.Revision, "keys", res.PreRestoreKeys, "size", up.Size)
	return d.header.Revision, nil
}

// spooled is a verified prefix snapshot in a local file.
type spooled struct {
	path    string
	readers []*os.File
	header  Header
	trailer Trailer
	sha256  string
}

// spool downloads objectKey into a file in dir while checking the object (snapshot.OpenVerified)
// and the snapshot's own form and hash in the same pass. Nothing is written to etcd from a
// snapshot before all of it passed.
func spool(ctx context.Context, s3c *s3.Client, loc snapshot.S3Location, objectKey, dir string) (*spooled, error) {
	obj, err := snapshot.OpenVerified(ctx, s3c, loc, objectKey)
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	if f := obj.Metadata[MetaFormat]; f != FormatV1 {
		return nil, errorf(snapshot.ExitUsage, "s3://%s/%s is not a prefix snapshot (%s metadata %q, want %q); a whole-etcd snapshot is restored with the restore subcommand", loc.Bucket, objectKey, MetaFormat, f, FormatV1)
	}
	f, err := os.CreateTemp(dir, "kdc-prefix-*.snap")
	if err != nil {
		return nil, localError("create a file in", dir, err)
	}
	s := &spooled{path: f.Name()}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			s.remove()
		}
	}()
	var werr error
	tee := io.TeeReader(obj, writerFunc(func(p []byte) (int, error) {
		n, err := f.Write(p)
		if err != nil && werr == nil {
			werr = err
		}
		return n, err
	}))
	rd, err := NewReader(tee)
	if err == nil {
		var r Record
		for err = rd.Next(&r); err == nil; err = rd.Next(&r) {
			if ctx.Err() != nil {
				return nil, errorf(snapshot.ExitFailed, "interrupted while downloading s3://%s/%s: %w", loc.Bucket, objectKey, context.Cause(ctx))
			}
		}
		if errors.Is(err, io.EOF) {
			err = nil
		}
	}
	var se *snapshot.Error
	switch {
	case werr != nil:
		return nil, localError("write the snapshot to", s.path, werr)
	case errors.As(err, &se):
		return nil, se
	case err != nil:
		return nil, errorf(snapshot.ExitIntegrity, "s3://%s/%s: %w; use another snapshot", loc.Bucket, objectKey, err)
	}
	if err := f.Close(); err != nil {
		return nil, localError("write the snapshot to", s.path, err)
	}
	s.header, s.trailer, s.sha256, ok = rd.Header(), rd.Trailer(), obj.SHA256(), true
	return s, nil
}

// open reads the spooled snapshot again (every check runs again).
func (s *spooled) open() (*Reader, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return nil, localError("read", s.path, err)
	}
	s.readers = append(s.readers, f)
	return NewReader(f)
}

func (s *spooled) remove() {
	for _, f := range s.readers {
		f.Close()
	}
	_ = os.Remove(s.path)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// localError classifies a failure of the work directory.
func localError(what, path string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return errorf(snapshot.ExitDiskFull, "failed to %s %s: no space left (%w); the work directory needs the snapshot's size free (--work-dir)", what, path, err)
	}
	return errorf(snapshot.ExitLocalIO, "failed to %s %s: %w; check --work-dir is writable", what, path, err)
}
