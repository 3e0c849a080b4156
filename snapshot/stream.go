package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Other object formats (the prefix snapshots of snapshot/prefix) get the upload and download
// guarantees Backup and Verify give etcd snapshots: streamed multipart
// uploads with per-part SHA-256s, no partial object, the sha256 tag, and downloads checked
// against the tag and the S3 checksum.

// MetaSnapshotFormat is the metadata naming the form of an object that is not an etcd
// database (prefix snapshots); restore and verify refuse such objects.
const MetaSnapshotFormat = "snapshot-format"

// StreamBody is a stream to upload. Its Read must return io.EOF only once the stream is
// complete and its own checks passed (any other error aborts the upload); SHA256 is the hex
// SHA-256 of everything read, valid once Read returned io.EOF.
type StreamBody interface {
	io.Reader
	SHA256() string
}

// UploadOptions configure UploadStream.
type UploadOptions struct {
	// PartSize and Concurrency of the multipart upload; memory is (Concurrency+1)*PartSize.
	PartSize    int64
	Concurrency int
	// Metadata is the object's user metadata; MetaPartSize and MetaCreatedBy are added.
	Metadata map[string]string
}

// Uploaded is what UploadStream stored.
type Uploaded struct {
	Size             int64
	SHA256           string
	S3ChecksumSHA256 string
	Parts            int
	// TagError is set when the object is complete but its sha256 tag could not be written.
	TagError string
}

// countingBody adapts a StreamBody of unknown size to the uploader.
type countingBody struct {
	StreamBody
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.StreamBody.Read(p)
	b.n += int64(n)
	return n, err
}

// Size is unknown ahead: the uploader then creates the multipart upload once a part is full.
func (b *countingBody) Size() int64 { return 0 }

// UploadStream streams body into objectKey with the guarantees of Backup (docs/jobs.md, "Object
// checksums"): per-part SHA-256s the server verifies, the composite compared with ours, no
// object at all unless body ended cleanly, and the whole-object SHA-256 as the sha256 tag.
// ctx must not be cancelled by a signal: aborting the upload needs it. Errors are *Error.
func UploadStream(ctx context.Context, c *s3.Client, loc S3Location, objectKey string, body StreamBody, o UploadOptions) (*Uploaded, error) {
	if o.PartSize < MinPartSize {
		return nil, errorf(ExitUsage, "--part-size %d is below S3's minimum of %d bytes", o.PartSize, MinPartSize)
	}
	if o.Concurrency < 1 {
		return nil, errorf(ExitUsage, "--concurrency must be at least 1")
	}
	meta := map[string]string{MetaPartSize: strconv.FormatInt(o.PartSize, 10), MetaCreatedBy: createdBy}
	for k, v := range o.Metadata {
		meta[k] = v
	}
	u := &streamUploader{
		client:      c,
		partSize:    o.PartSize,
		concurrency: o.Concurrency,
		opts:        []func(*s3.Options){s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)},
	}
	cb := &countingBody{StreamBody: body}
	out, err := u.upload(ctx, cb, &s3.CreateMultipartUploadInput{
		Bucket:            aws.String(loc.Bucket),
		Key:               aws.String(objectKey),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
		ContentType:       aws.String("application/octet-stream"),
		Metadata:          meta,
	})
	if err != nil {
		var se *Error
		if errors.As(err, &se) {
			return nil, se
		}
		return nil, s3Error("upload", loc, objectKey, err)
	}
	res := &Uploaded{Size: cb.n, SHA256: body.SHA256(), S3ChecksumSHA256: out.ChecksumSHA256, Parts: max(len(out.Parts), 1)}
	if err := checkUploadChecksum(out, res.SHA256); err != nil {
		if _, derr := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(loc.Bucket), Key: aws.String(objectKey)}); derr != nil {
			err = fmt.Errorf("%w (and deleting the object failed: %v)", err, derr)
		}
		return nil, errorf(ExitIntegrity, "S3 stored s3://%s/%s with checksum %s: %w; the object was deleted, retry", loc.Bucket, objectKey, res.S3ChecksumSHA256, err)
	}
	if _, err := c.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{
		Bucket:  aws.String(loc.Bucket),
		Key:     aws.String(objectKey),
		Tagging: &types.Tagging{TagSet: []types.Tag{{Key: aws.String(TagSHA256), Value: aws.String(res.SHA256)}}},
	}); err != nil {
		res.TagError = firstLine(err.Error())
	}
	return res, nil
}

// VerifiedObject is an object being downloaded by OpenVerified.
type VerifiedObject struct {
	ObjectKey string
	Size      int64
	// Metadata is the object's user metadata (x-amz-meta-*, keys without the prefix).
	Metadata map[string]string
	// S3Checksum is the object's checksum state: the checksum, or "absent".
	S3Checksum string

	info  *ObjectInfo
	loc   S3Location
	body  io.ReadCloser
	n     int64
	whole hash.Hash
	parts *partHasher
	err   error
	done  bool
}

// OpenVerified starts downloading objectKey. Reading the returned object yields its bytes and
// returns io.EOF only after the size, the sha256 tag (when present) and the S3 checksum (full,
// or the composite recomputed when there is no tag) matched what was read; a mismatch is an
// ExitIntegrity *Error, a broken download ExitS3Unreachable. The caller closes it.
func OpenVerified(ctx context.Context, c *s3.Client, loc S3Location, objectKey string) (*VerifiedObject, error) {
	tags := readTags(ctx, c, loc, objectKey)
	out, err := c.GetObject(ctx, &s3.GetObjectInput{
		Bucket:       aws.String(loc.Bucket),
		Key:          aws.String(objectKey),
		ChecksumMode: types.ChecksumModeEnabled,
	}, s3.WithAPIOptions(withoutResponseChecksumValidation))
	if err != nil {
		<-tags
		return nil, notFoundError(ctx, c, loc, objectKey, s3Error("download", loc, objectKey, err))
	}
	info, err := newStreamInfo(loc, objectKey, aws.ToInt64(out.ContentLength), aws.ToString(out.ChecksumSHA256), out.Metadata, tags)
	if err != nil {
		out.Body.Close()
		return nil, err
	}
	v := &VerifiedObject{ObjectKey: objectKey, Size: info.Size, Metadata: out.Metadata, S3Checksum: info.ChecksumState(),
		info: info, loc: loc, body: out.Body, whole: sha256.New()}
	if info.HasChecksum && info.Checksum.Parts > 0 && info.TagSHA256 == "" {
		v.parts = newPartHasher(info.PartSize)
	}
	return v, nil
}

func (v *VerifiedObject) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.done {
		return 0, io.EOF
	}
	n, err := v.body.Read(p)
	v.whole.Write(p[:n])
	if v.parts != nil {
		v.parts.Write(p[:n])
	}
	v.n += int64(n)
	obj := fmt.Sprintf("s3://%s/%s", v.loc.Bucket, v.ObjectKey)
	switch {
	case errors.Is(err, io.EOF):
		if cerr := v.check(obj); cerr != nil {
			v.err = cerr
			return n, cerr
		}
		v.done = true
		return n, io.EOF
	case err != nil:
		v.err = errorf(ExitS3Unreachable, "download of %s broke after %d of %d bytes: %w; check the S3 endpoint %s and retry", obj, v.n, v.Size, err, v.loc.Endpoint)
		return n, v.err
	}
	return n, nil
}

// SHA256 is the hex SHA-256 of the object, valid once Read returned io.EOF.
func (v *VerifiedObject) SHA256() string { return hex.EncodeToString(v.whole.Sum(nil)) }

// Close closes the download.
func (v *VerifiedObject) Close() error { return v.body.Close() }

func (v *VerifiedObject) check(obj string) error {
	if v.n != v.Size {
		return errorf(ExitIntegrity, "%s: read %d bytes but the object is %d bytes; it is truncated, use another snapshot", obj, v.n, v.Size)
	}
	whole := v.whole.Sum(nil)
	if v.info.HasChecksum && (v.info.Checksum.Parts == 0 || v.parts != nil) {
		var got s3Checksum
		if v.parts != nil {
			var err error
			if got, err = v.parts.composite(); err != nil {
				return errorf(ExitIntegrity, "%s: %w", obj, err)
			}
		} else {
			got = s3Checksum{Digest: base64.StdEncoding.EncodeToString(whole)}
		}
		if got != v.info.Checksum {
			return errorf(ExitIntegrity, "%s is corrupt: its content has SHA-256 checksum %s but S3 recorded %s; use another snapshot", obj, got, v.info.Checksum)
		}
	}
	if h := hex.EncodeToString(whole); v.info.TagSHA256 != "" && v.info.TagSHA256 != h {
		return errorf(ExitIntegrity, "%s is corrupt: its content has SHA-256 %s but its %s tag says %s; use another snapshot", obj, h, TagSHA256, v.info.TagSHA256)
	}
	return nil
}
