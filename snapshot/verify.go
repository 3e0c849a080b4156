package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"

	"kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/jobspec"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Key is the snapshot key C/C-<ts>.db, without the location's prefix.
	Key string
	// Cluster, when set, must own Key.
	Cluster     string
	Location    S3Location
	Credentials Credentials
	Logger      *slog.Logger
}

// Verify downloads the snapshot as a stream and runs every integrity check Restore runs,
// writing nothing to disk.
func Verify(ctx context.Context, o VerifyOptions) (*jobspec.Result, error) {
	start := time.Now()
	if err := CheckKey(o.Key, o.Cluster); err != nil {
		return nil, err
	}
	if err := o.Location.Validate(); err != nil {
		return nil, err
	}
	res := &jobspec.Result{Command: jobspec.CommandVerify, Key: o.Key, ObjectKey: o.Location.ObjectKey(o.Key), Bucket: o.Location.Bucket}
	c := NewS3Client(o.Location, o.Credentials)
	info, body, err := OpenObject(ctx, c, o.Location, res.ObjectKey)
	if err != nil {
		return res, err
	}
	defer body.Close()
	sum, err := Download(o.Location, info, body, io.Discard)
	if err != nil {
		return res, err
	}
	res.Size, res.SHA256, res.S3Checksum = info.Size, sum, info.ChecksumState()
	res.Revision, res.EtcdVersion = info.Revision, info.EtcdVersion
	res.DurationSeconds = time.Since(start).Seconds()
	if o.Logger != nil {
		o.Logger.Info("Verified snapshot", "objectKey", res.ObjectKey, "size", res.Size, "sha256", res.SHA256, "s3Checksum", res.S3Checksum)
	}
	return res, nil
}

// CheckKey validates a snapshot key and, when cluster is set, that it belongs to cluster.
func CheckKey(key, cluster string) error {
	if key == "" {
		return errorf(ExitUsage, "--key is required")
	}
	if _, _, err := v1alpha1.ParseSnapshotKey(key, cluster); err != nil {
		return errorf(ExitUsage, "--key %q is not a snapshot key of the form C/C-<ts>.db: %w", key, err)
	}
	return nil
}

// ObjectInfo is what statObject learns about a snapshot object before downloading it.
type ObjectInfo struct {
	ObjectKey   string
	Size        int64
	Checksum    s3Checksum
	HasChecksum bool
	PartSize    int64
	TagSHA256   string
	Revision    int64
	EtcdVersion string
}

func (i *ObjectInfo) ChecksumState() string {
	if !i.HasChecksum {
		return "absent"
	}
	return i.Checksum.String()
}

// OpenObject starts the download of the object: one GET, whose headers carry everything HEAD
// would (size, checksum, metadata), with the tags read in parallel. The caller reads and closes
// body, which newObjectInfo's checks have passed.
func OpenObject(ctx context.Context, c *s3.Client, loc S3Location, objectKey string) (*ObjectInfo, io.ReadCloser, error) {
	tags := readTags(ctx, c, loc, objectKey)
	out, err := c.GetObject(ctx, &s3.GetObjectInput{
		Bucket:       aws.String(loc.Bucket),
		Key:          aws.String(objectKey),
		ChecksumMode: types.ChecksumModeEnabled,
	}, s3.WithAPIOptions(withoutResponseChecksumValidation))
	if err != nil {
		<-tags // the tags request must not outlive the call
		return nil, nil, notFoundError(ctx, c, loc, objectKey, s3Error("download", loc, objectKey, err))
	}
	info, err := newObjectInfo(loc, objectKey, aws.ToInt64(out.ContentLength), aws.ToString(out.ChecksumSHA256), out.Metadata, tags)
	if err != nil {
		out.Body.Close()
		return nil, nil, err
	}
	return info, out.Body, nil
}

// withoutResponseChecksumValidation removes the SDK's check of a full-object response checksum,
// which ChecksumMode turns on: download checks the same checksum (and a composite one, which the
// SDK skips) in its own hash pass, and reports a mismatch as corruption, where the SDK's reader
// would fail the read with a second pass over the same bytes.
func withoutResponseChecksumValidation(stack *middleware.Stack) error {
	if _, ok := stack.Deserialize.Get(responseChecksumValidationID); !ok {
		return nil
	}
	_, err := stack.Deserialize.Remove(responseChecksumValidationID)
	return err
}

// responseChecksumValidationID is the SDK's middleware that validates response checksums.
const responseChecksumValidationID = "AWSChecksum:ValidateOutputPayloadChecksum"

// notFoundError refines se: a 404 without an error code (HEAD) may mean the bucket is missing.
func notFoundError(ctx context.Context, c *s3.Client, loc S3Location, objectKey string, se *Error) error {
	if se.Code != ExitObjectMissing {
		return se
	}
	if berr := checkBucket(ctx, c, loc); berr != nil {
		var be *Error
		if errors.As(berr, &be) && be.Code == ExitBucketMissing {
			return errorf(ExitBucketMissing, "failed to read s3://%s/%s: bucket %q does not exist at %s; check --bucket (the ObjectBucketClaim's bucket or destinationPath)", loc.Bucket, objectKey, loc.Bucket, loc.Endpoint)
		}
	}
	return se
}

// tagging is the outcome of GetObjectTagging.
type tagging struct {
	out *s3.GetObjectTaggingOutput
	err error
}

// readTags reads the object's tags in the background; the channel yields the outcome once.
func readTags(ctx context.Context, c *s3.Client, loc S3Location, objectKey string) <-chan tagging {
	tagsc := make(chan tagging, 1)
	go func() {
		out, err := c.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: aws.String(loc.Bucket), Key: aws.String(objectKey)})
		tagsc <- tagging{out, err}
	}()
	return tagsc
}

// newObjectInfo checks what S3 said about a snapshot object (the headers of a HEAD or a GET, and
// the tags from tagsc) and returns it as an ObjectInfo.
func newObjectInfo(loc S3Location, objectKey string, size int64, checksum string, meta map[string]string, tagsc <-chan tagging) (*ObjectInfo, error) {
	info, err := newStreamInfo(loc, objectKey, size, checksum, meta, tagsc)
	if err != nil {
		return nil, err
	}
	if f := meta[MetaSnapshotFormat]; f != "" {
		return nil, errorf(ExitUsage, "s3://%s/%s is a %s snapshot of one etcd key prefix, not an etcd database; restore it with prefix-restore (docs/jobs.md, \"Prefix mode\")", loc.Bucket, objectKey, f)
	}
	if !hasEtcdHash(info.Size) {
		return nil, errorf(ExitIntegrity, "s3://%s/%s is %d bytes, not a database followed by etcd's 32-byte hash; the object is truncated or not an etcd snapshot", loc.Bucket, objectKey, info.Size)
	}
	return info, nil
}

// newStreamInfo runs the checks of newObjectInfo that hold for any object this tool stores.
func newStreamInfo(loc S3Location, objectKey string, size int64, checksum string, meta map[string]string, tagsc <-chan tagging) (*ObjectInfo, error) {
	tags := <-tagsc
	info := &ObjectInfo{ObjectKey: objectKey, Size: size}
	var err error
	if info.Checksum, info.HasChecksum, err = parseS3Checksum(checksum); err != nil {
		return nil, errorf(ExitIntegrity, "s3://%s/%s has a malformed checksum: %w; the object is not a snapshot of this tool or is damaged", loc.Bucket, objectKey, err)
	}
	if v := meta[MetaPartSize]; v != "" {
		info.PartSize, _ = strconv.ParseInt(v, 10, 64)
	}
	info.Revision, _ = strconv.ParseInt(meta[MetaEtcdRevision], 10, 64)
	info.EtcdVersion = meta[MetaEtcdVersion]
	if info.HasChecksum && info.Checksum.Parts > 0 {
		if info.PartSize <= 0 {
			return nil, errorf(ExitIntegrity, "s3://%s/%s has a composite checksum %s but no %s metadata to recompute it; the object was not written by kdc-etcd-backup", loc.Bucket, objectKey, info.Checksum, MetaPartSize)
		}
		if want := (info.Size + info.PartSize - 1) / info.PartSize; want != int64(info.Checksum.Parts) {
			return nil, errorf(ExitIntegrity, "s3://%s/%s is %d bytes, which is %d parts of %d, but its checksum %s counts %d parts; the object is damaged", loc.Bucket, objectKey, info.Size, want, info.PartSize, info.Checksum, info.Checksum.Parts)
		}
	}
	if err := tags.err; err == nil {
		for _, t := range tags.out.TagSet {
			if aws.ToString(t.Key) == TagSHA256 {
				info.TagSHA256 = aws.ToString(t.Value)
			}
		}
	} else if se := s3Error("read the tags of", loc, objectKey, err); se.Code == ExitS3Unreachable {
		return nil, se
	} // a backend without tagging (or without the permission) still gets the other checks
	return info, nil
}

// Download streams body, the object info describes, into w while checking, in order: the byte
// count, etcd's appended hash, the S3 checksum (full-object or composite) and the sha256 tag. It
// returns the hex SHA-256 of the object. w's errors are classified as local I/O errors (a full
// disk).
func Download(loc S3Location, info *ObjectInfo, body io.Reader, w io.Writer) (string, error) {
	obj := fmt.Sprintf("s3://%s/%s", loc.Bucket, info.ObjectKey)
	v := newVerifier(info)
	n, werr, err := v.copy(w, body)
	if err != nil {
		if werr != nil {
			return "", LocalIOError("write the downloaded snapshot", obj, werr)
		}
		return "", errorf(ExitS3Unreachable, "download of %s broke after %d of %d bytes: %w; check the S3 endpoint %s and retry", obj, n, info.Size, err, loc.Endpoint)
	}
	return v.check(obj)
}

// Download buffers: copyChunk bytes are read, hashed and written at a time, in copyChunks
// buffers that circulate between the reading, the hashing and the writing goroutine.
const (
	copyChunk  = 1 << 20
	copyChunks = 4
)

// chunk is one buffer of the download.
type chunk struct {
	buf []byte
	n   int
}

// copy streams r into w and through every hash as a pipeline of three goroutines over the same
// buffers: one reads from r; this one runs the whole-object SHA-256 (which also yields etcd's
// hash); the last runs the per-part SHA-256s of a composite checksum, when needed, and writes to
// w. A buffer goes back to the reader only when the writer is through with it, so w gets exactly
// the bytes that were hashed. The download then takes about as long as the slower of S3 sending
// the object and one SHA-256 pass, instead of their sum (docs/benchmarks.md). It returns the
// bytes read, the error of w (a full disk) if that is what stopped it, and the error.
func (v *verifier) copy(w io.Writer, r io.Reader) (n int64, werr, err error) {
	var (
		free   = make(chan *chunk, copyChunks)
		read   = make(chan *chunk, copyChunks)
		hashed = make(chan *chunk, copyChunks)
		stop   = make(chan struct{}) // closed when w failed: the reader stops
		rerr   error
		writer sync.WaitGroup
	)
	for range copyChunks {
		free <- &chunk{buf: make([]byte, copyChunk)}
	}
	go func() { // the reader; n and rerr are read only after read is closed
		defer close(read)
		for {
			var c *chunk
			select {
			case c = <-free:
			case <-stop:
				return
			}
			var err error
			c.n, err = io.ReadFull(r, c.buf)
			n += int64(c.n)
			if c.n > 0 {
				read <- c // never blocks: read holds every buffer
			}
			switch {
			case err == io.EOF || err == io.ErrUnexpectedEOF:
				return
			case err != nil:
				rerr = err
				return
			}
		}
	}()
	writer.Go(func() {
		for c := range hashed {
			if werr == nil {
				if v.parts != nil {
					v.parts.Write(c.buf[:c.n])
				}
				if _, err := w.Write(c.buf[:c.n]); err != nil {
					werr = err
					close(stop)
				}
			}
			free <- c // never blocks: free holds every buffer
		}
	})
	for c := range read {
		v.writeWhole(c.buf[:c.n])
		hashed <- c
	}
	close(hashed)
	writer.Wait()
	if werr != nil {
		return n, werr, werr
	}
	return n, nil, rerr
}

// verifier hashes an object as it streams by: one SHA-256 pass for the whole object (whose Sum
// at the database boundary is etcd's hash) plus the per-part hashes of a composite checksum.
type verifier struct {
	info    *ObjectInfo
	n       int64
	whole   hash.Hash
	dbSum   []byte
	trailer []byte
	parts   *partHasher
}

// newVerifier hashes for the checks info allows. The per-part hashes of a composite S3 checksum
// are computed only when the object has no sha256 tag: the tag is the backup's SHA-256 of the
// whole stream (cross-checked at upload against the same composite, docs/jobs.md), and the
// whole-object hash that yields etcd's hash checks it for free, so recomputing the composite as
// well would be a second SHA-256 pass over the same bytes that can catch nothing the tag does not.
func newVerifier(info *ObjectInfo) *verifier {
	v := &verifier{info: info, whole: sha256.New()}
	if info.HasChecksum && info.Checksum.Parts > 0 && info.TagSHA256 == "" {
		v.parts = newPartHasher(info.PartSize)
	}
	return v
}

// Write hashes p with every hash (tests; download runs the part hashes in parallel).
func (v *verifier) Write(p []byte) (int, error) {
	v.writeWhole(p)
	if v.parts != nil {
		v.parts.Write(p)
	}
	return len(p), nil
}

// writeWhole feeds p to the whole-object hash, capturing etcd's hash at the database boundary
// and the 32 bytes after it.
func (v *verifier) writeWhole(p []byte) {
	dbSize := v.info.Size - etcdHashSize
	db := p
	if v.n < dbSize {
		if left := dbSize - v.n; int64(len(db)) > left {
			db = db[:left]
		}
	} else {
		db = nil
	}
	v.whole.Write(db)
	if v.n+int64(len(db)) == dbSize && v.dbSum == nil {
		// The same hasher serves both: Sum does not change its state, so this is SHA-256 of
		// the database, and the hasher goes on over the 32 bytes for the whole object.
		v.dbSum = v.whole.Sum(nil)
	}
	rest := p[len(db):]
	if len(v.trailer) < etcdHashSize {
		v.trailer = append(v.trailer, rest[:min(len(rest), etcdHashSize-len(v.trailer))]...)
	}
	v.whole.Write(rest)
	v.n += int64(len(p))
}

// check runs the end-of-download checks and returns the object's hex SHA-256.
func (v *verifier) check(obj string) (string, error) {
	if v.n != v.info.Size {
		return "", errorf(ExitIntegrity, "%s: read %d bytes but the object is %d bytes; it is truncated, restore another snapshot", obj, v.n, v.info.Size)
	}
	if !bytes.Equal(v.dbSum, v.trailer) {
		return "", errorf(ExitIntegrity, "%s is corrupt: its database does not match etcd's appended hash (computed %x, stored %x); restore another snapshot", obj, v.dbSum, v.trailer)
	}
	whole := v.whole.Sum(nil)
	// A composite checksum is recomputed only without a tag (newVerifier); with one, the tag
	// check below covers the same bytes.
	if v.info.HasChecksum && (v.info.Checksum.Parts == 0 || v.parts != nil) {
		var got s3Checksum
		if v.parts != nil {
			var err error
			if got, err = v.parts.composite(); err != nil {
				return "", errorf(ExitIntegrity, "%s: %w", obj, err)
			}
		} else {
			got = s3Checksum{Digest: base64.StdEncoding.EncodeToString(whole)}
		}
		if got != v.info.Checksum {
			return "", errorf(ExitIntegrity, "%s is corrupt: its content has SHA-256 checksum %s but S3 recorded %s; restore another snapshot", obj, got, v.info.Checksum)
		}
	}
	hexSum := hex.EncodeToString(whole)
	if v.info.TagSHA256 != "" && v.info.TagSHA256 != hexSum {
		return "", errorf(ExitIntegrity, "%s is corrupt: its content has SHA-256 %s but its %s tag says %s; restore another snapshot", obj, hexSum, TagSHA256, v.info.TagSHA256)
	}
	return hexSum, nil
}
