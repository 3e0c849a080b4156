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

	"kube-dc.com/etcd-backup/api/v1alpha1"
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

// VerifyResult is verify's termination message.
type VerifyResult struct {
	Key             string  `json:"key"`
	ObjectKey       string  `json:"objectKey"`
	Bucket          string  `json:"bucket"`
	Size            int64   `json:"size"`
	SHA256          string  `json:"sha256"`
	S3Checksum      string  `json:"s3Checksum"`
	Revision        int64   `json:"revision"`
	EtcdVersion     string  `json:"etcdVersion"`
	DurationSeconds float64 `json:"durationSeconds"`
}

// Verify downloads the snapshot as a stream and runs every integrity check Restore runs,
// writing nothing to disk.
func Verify(ctx context.Context, o VerifyOptions) (*VerifyResult, error) {
	start := time.Now()
	if err := checkKey(o.Key, o.Cluster); err != nil {
		return nil, err
	}
	if err := o.Location.Validate(); err != nil {
		return nil, err
	}
	res := &VerifyResult{Key: o.Key, ObjectKey: o.Location.ObjectKey(o.Key), Bucket: o.Location.Bucket}
	c := NewS3Client(o.Location, o.Credentials)
	info, err := statObject(ctx, c, o.Location, res.ObjectKey)
	if err != nil {
		return res, err
	}
	sum, err := download(ctx, c, o.Location, info, io.Discard)
	if err != nil {
		return res, err
	}
	res.Size, res.SHA256, res.S3Checksum = info.Size, sum, info.checksumState()
	res.Revision, res.EtcdVersion = info.Revision, info.EtcdVersion
	res.DurationSeconds = time.Since(start).Seconds()
	if o.Logger != nil {
		o.Logger.Info("Verified snapshot", "objectKey", res.ObjectKey, "size", res.Size, "sha256", res.SHA256, "s3Checksum", res.S3Checksum)
	}
	return res, nil
}

// checkKey validates a snapshot key and, when cluster is set, that it belongs to cluster.
func checkKey(key, cluster string) error {
	if key == "" {
		return errorf(ExitUsage, "--key is required")
	}
	if _, _, err := v1alpha1.ParseSnapshotKey(key, cluster); err != nil {
		return errorf(ExitUsage, "--key %q is not a snapshot key of the form C/C-<ts>.db: %w", key, err)
	}
	return nil
}

// objectInfo is what statObject learns about a snapshot object before downloading it.
type objectInfo struct {
	ObjectKey   string
	ETag        string
	Size        int64
	Checksum    s3Checksum
	HasChecksum bool
	PartSize    int64
	TagSHA256   string
	Revision    int64
	EtcdVersion string
}

func (i *objectInfo) checksumState() string {
	if !i.HasChecksum {
		return "absent"
	}
	return i.Checksum.String()
}

// statObject reads the object's size, checksum, metadata and sha256 tag.
func statObject(ctx context.Context, c *s3.Client, loc S3Location, objectKey string) (*objectInfo, error) {
	// The tags are read while the HEAD request runs: one round trip to S3 instead of two.
	type tagging struct {
		out *s3.GetObjectTaggingOutput
		err error
	}
	tagsc := make(chan tagging, 1)
	go func() {
		out, err := c.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: aws.String(loc.Bucket), Key: aws.String(objectKey)})
		tagsc <- tagging{out, err}
	}()
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket:       aws.String(loc.Bucket),
		Key:          aws.String(objectKey),
		ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		se := s3Error("read", loc, objectKey, err)
		if se.Code == ExitObjectMissing { // a HEAD 404 has no body: the bucket may be what is missing
			if berr := checkBucket(ctx, c, loc); berr != nil {
				var be *Error
				if errors.As(berr, &be) && be.Code == ExitBucketMissing {
					return nil, errorf(ExitBucketMissing, "failed to read s3://%s/%s: bucket %q does not exist at %s; check --bucket (the ObjectBucketClaim's bucket or destinationPath)", loc.Bucket, objectKey, loc.Bucket, loc.Endpoint)
				}
			}
		}
		return nil, se
	}
	info := &objectInfo{ObjectKey: objectKey, ETag: aws.ToString(head.ETag), Size: aws.ToInt64(head.ContentLength)}
	if info.Checksum, info.HasChecksum, err = parseS3Checksum(aws.ToString(head.ChecksumSHA256)); err != nil {
		return nil, errorf(ExitIntegrity, "s3://%s/%s has a malformed checksum: %w; the object is not a snapshot of this tool or is damaged", loc.Bucket, objectKey, err)
	}
	if v := head.Metadata[MetaPartSize]; v != "" {
		info.PartSize, _ = strconv.ParseInt(v, 10, 64)
	}
	info.Revision, _ = strconv.ParseInt(head.Metadata[MetaEtcdRevision], 10, 64)
	info.EtcdVersion = head.Metadata[MetaEtcdVersion]
	if info.HasChecksum && info.Checksum.Parts > 0 {
		if info.PartSize <= 0 {
			return nil, errorf(ExitIntegrity, "s3://%s/%s has a composite checksum %s but no %s metadata to recompute it; the object was not written by kdc-etcd-backup", loc.Bucket, objectKey, info.Checksum, MetaPartSize)
		}
		if want := (info.Size + info.PartSize - 1) / info.PartSize; want != int64(info.Checksum.Parts) {
			return nil, errorf(ExitIntegrity, "s3://%s/%s is %d bytes, which is %d parts of %d, but its checksum %s counts %d parts; the object is damaged", loc.Bucket, objectKey, info.Size, want, info.PartSize, info.Checksum, info.Checksum.Parts)
		}
	}
	tags := <-tagsc
	if err := tags.err; err == nil {
		for _, t := range tags.out.TagSet {
			if aws.ToString(t.Key) == TagSHA256 {
				info.TagSHA256 = aws.ToString(t.Value)
			}
		}
	} else if se := s3Error("read the tags of", loc, objectKey, err); se.Code == ExitS3Unreachable {
		return nil, se
	} // a backend without tagging (or without the permission) still gets the other checks
	if !hasEtcdHash(info.Size) {
		return nil, errorf(ExitIntegrity, "s3://%s/%s is %d bytes, not a database followed by etcd's 32-byte hash; the object is truncated or not an etcd snapshot", loc.Bucket, objectKey, info.Size)
	}
	return info, nil
}

// download streams the object into w while checking, in order: the byte count, etcd's appended
// hash, the S3 checksum (full-object or composite) and the sha256 tag. It returns the hex
// SHA-256 of the object. w's errors are classified as local I/O errors (a full disk).
func download(ctx context.Context, c *s3.Client, loc S3Location, info *objectInfo, w io.Writer) (string, error) {
	obj := fmt.Sprintf("s3://%s/%s", loc.Bucket, info.ObjectKey)
	in := &s3.GetObjectInput{Bucket: aws.String(loc.Bucket), Key: aws.String(info.ObjectKey)}
	if info.ETag != "" {
		in.IfMatch = aws.String(info.ETag) // the object we looked at, not one replaced meanwhile
	}
	out, err := c.GetObject(ctx, in)
	if err != nil {
		if apiCode(err) == codePreconditionFailed {
			return "", errorf(ExitFailed, "%s was replaced while it was being read; retry", obj)
		}
		return "", s3Error("download", loc, info.ObjectKey, err)
	}
	defer out.Body.Close()

	v := newVerifier(info)
	n, werr, err := v.copy(w, out.Body)
	if err != nil {
		if werr != nil {
			return "", localIOError("write the downloaded snapshot", obj, werr)
		}
		return "", errorf(ExitS3Unreachable, "download of %s broke after %d of %d bytes: %w; check the S3 endpoint %s and retry", obj, n, info.Size, err, loc.Endpoint)
	}
	return v.check(obj)
}

// Download buffers: copyChunk bytes are read, hashed and written at a time, in copyChunks
// buffers that circulate between the reading and the writing goroutine.
const (
	copyChunk  = 1 << 20
	copyChunks = 4
)

// chunk is one buffer of the download; done is closed when the writer is through with it.
type chunk struct {
	buf  []byte
	n    int
	done chan struct{}
}

// copy streams r into w and through every hash, in two goroutines over the same buffers: this
// one reads and runs the whole-object SHA-256 (which also yields etcd's hash); the other runs
// the per-part SHA-256s of a composite checksum and writes to w. A buffer is reused only when
// both are through with it, so w gets exactly the bytes that were hashed. On two CPUs the two
// hashing passes and the write take about the time of one pass (docs/benchmarks.md). It returns
// the bytes read, the error of w (a full disk) if that is what stopped it, and the error.
func (v *verifier) copy(w io.Writer, r io.Reader) (n int64, werr, err error) {
	var (
		mu      sync.Mutex
		written sync.WaitGroup
		chunks  = make(chan *chunk, copyChunks)
	)
	failed := func() error { mu.Lock(); defer mu.Unlock(); return werr }
	written.Go(func() {
		for c := range chunks {
			if v.parts != nil {
				v.parts.Write(c.buf[:c.n])
			}
			if failed() == nil {
				if _, err := w.Write(c.buf[:c.n]); err != nil {
					mu.Lock()
					werr = err
					mu.Unlock()
				}
			}
			close(c.done)
		}
	})
	finish := func(rerr error) (int64, error, error) {
		close(chunks)
		written.Wait()
		if werr != nil {
			return n, werr, werr
		}
		return n, nil, rerr
	}
	ring := make([]*chunk, copyChunks)
	for i := 0; ; i++ {
		c := ring[i%copyChunks]
		if c == nil {
			c = &chunk{buf: make([]byte, copyChunk)}
			ring[i%copyChunks] = c
		} else {
			<-c.done // the writer has finished with this buffer
		}
		if failed() != nil {
			return finish(nil)
		}
		var rerr error
		c.n, rerr = io.ReadFull(r, c.buf)
		n += int64(c.n)
		if rerr == io.ErrUnexpectedEOF || rerr == io.EOF {
			rerr = nil
		}
		if rerr != nil || c.n == 0 {
			return finish(rerr)
		}
		c.done = make(chan struct{})
		chunks <- c
		v.writeWhole(c.buf[:c.n])
		if c.n < len(c.buf) {
			return finish(nil)
		}
	}
}

// verifier hashes an object as it streams by: one SHA-256 pass for the whole object (whose Sum
// at the database boundary is etcd's hash) plus the per-part hashes of a composite checksum.
type verifier struct {
	info    *objectInfo
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
func newVerifier(info *objectInfo) *verifier {
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
