package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// maxUploadParts is S3's limit on the parts of one multipart upload.
const maxUploadParts = 10000

// uploadResult is what S3 recorded for an uploaded snapshot.
type uploadResult struct {
	// ChecksumSHA256 is the object's x-amz-checksum-sha256: full-object for a single PutObject,
	// composite ("-N") for a multipart upload.
	ChecksumSHA256 string
	// Parts are the completed parts with the SHA-256 we computed and S3 verified; empty for a
	// single PutObject.
	Parts []types.CompletedPart
}

// uploadBody is a stream whose Read returns io.EOF only after its own end checks passed. Size is
// the announced size (0 when unknown); SHA256 the hex SHA-256 of what was read, once at io.EOF.
type uploadBody interface {
	io.Reader
	Size() int64
	SHA256() string
}

// streamUploader uploads a snapshot stream with S3's low-level multipart API. Compared with the
// SDK's manager.Uploader it holds exactly Concurrency+1 part buffers, allocated once (the
// manager reads the first part with io.ReadAll, growing and copying a slice to a part size and
// keeping it next to its pool), and it computes each part's SHA-256 itself, once, while it reads
// the part, and the full-object SHA-256 of a single PutObject comes from the stream's own hash
// instead of a second pass.
type streamUploader struct {
	client      *s3.Client
	opts        []func(*s3.Options)
	partSize    int64
	concurrency int
}

// part is one part read from the stream, in a buffer of the pool, and its SHA-256.
type part struct {
	num int32
	buf []byte
	n   int
	sum [sha256.Size]byte
}

// hashWindow is how much of a part is read before it is hashed: small enough to be hashed while
// still in the CPU's cache, so a part is not read from memory a second time for its SHA-256.
const hashWindow = 256 << 10

// readPart fills buf from body as io.ReadFull does, hashing each window as soon as it is read.
func readPart(body io.Reader, buf []byte) (int, [sha256.Size]byte, error) {
	h := sha256.New()
	n := 0
	var err error
	for n < len(buf) && err == nil {
		var m int
		m, err = io.ReadFull(body, buf[n:min(n+hashWindow, len(buf))])
		h.Write(buf[n : n+m])
		n += m
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || (errors.Is(err, io.EOF) && n > 0) {
		err = io.ErrUnexpectedEOF
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return n, sum, err
}

// upload reads body to the end and stores it as in.Key. A snapshot that fits in one part is sent
// as one PutObject, after the stream's end-of-stream checks passed. Larger ones are sent as a
// multipart upload that is completed only when the stream ended without error and every part
// was stored; on any failure the multipart upload is aborted, so no object becomes visible.
// ctx must not be cancelled by a signal: the abort needs it.
func (u *streamUploader) upload(ctx context.Context, body uploadBody, in *s3.CreateMultipartUploadInput) (*uploadResult, error) {
	var created func() (*s3.CreateMultipartUploadOutput, error)
	if body.Size() > u.partSize {
		// etcd announced more than one part: the upload is created while the first part is
		// read, not after (a round trip off the critical path).
		created = inBackground(func() (*s3.CreateMultipartUploadOutput, error) {
			return u.client.CreateMultipartUpload(ctx, in, u.opts...)
		})
	}
	free := make(chan []byte, u.concurrency+1)
	first := make([]byte, u.partSize)
	n, sum, err := readPart(body, first)
	switch {
	case created != nil && err != nil:
		// Read returns io.EOF only after every announced byte, so a stream announced as larger
		// than one part cannot end within the first: this is a failure.
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("the snapshot stream ended after %d of the %d bytes it announced", n, body.Size())
		}
		return nil, u.abortCreated(ctx, in, created, err)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		// Read returned io.EOF only after the stream's size and etcd hash checks passed.
		return u.putObject(ctx, body, in, first[:n])
	case err != nil:
		return nil, err
	}
	if created == nil {
		// The first part is full: the upload is created while the next one is read.
		created = inBackground(func() (*s3.CreateMultipartUploadOutput, error) {
			return u.client.CreateMultipartUpload(ctx, in, u.opts...)
		})
	}
	uploadID := func() (*string, error) {
		out, err := created()
		if err != nil {
			return nil, err
		}
		return out.UploadId, nil
	}

	var (
		mu        sync.Mutex
		completed []types.CompletedPart
		sendErr   error
		wg        sync.WaitGroup
	)
	failed := func() bool { mu.Lock(); defer mu.Unlock(); return sendErr != nil }
	parts := make(chan part, u.concurrency)
	for range u.concurrency {
		wg.Go(func() {
			for p := range parts {
				if !failed() {
					id, err := uploadID()
					var cp types.CompletedPart
					if err == nil {
						cp, err = u.uploadPart(ctx, in, id, p)
					}
					mu.Lock()
					if err != nil && sendErr == nil {
						sendErr = err
					} else if err == nil {
						completed = append(completed, cp)
					}
					mu.Unlock()
				}
				free <- p.buf
			}
		})
	}

	var readErr error
	buf, buffers := first, 1
	for num := int32(1); !failed(); num++ {
		if num > maxUploadParts {
			readErr = fmt.Errorf("the snapshot needs more than %d parts of %d bytes; raise --part-size", maxUploadParts, u.partSize)
			break
		}
		parts <- part{num: num, buf: buf, n: n, sum: sum}
		if int64(n) < u.partSize {
			break
		}
		select {
		case buf = <-free:
		default:
			if buffers <= u.concurrency {
				buf, buffers = make([]byte, u.partSize), buffers+1
			} else {
				buf = <-free
			}
		}
		n, sum, err = readPart(body, buf)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = nil // Read returned io.EOF only after the end-of-stream checks passed
			if n == 0 {
				break
			}
		}
		if err != nil {
			readErr = err
			break
		}
	}
	close(parts)
	wg.Wait()
	if readErr != nil {
		return nil, u.abortCreated(ctx, in, created, readErr)
	}
	if sendErr != nil {
		return nil, u.abortCreated(ctx, in, created, sendErr)
	}
	id, err := uploadID()
	if err != nil {
		return nil, err
	}
	abort := func(cause error) error { return u.abort(ctx, in, id, cause) }
	slices.SortFunc(completed, func(a, b types.CompletedPart) int { return int(aws.ToInt32(a.PartNumber) - aws.ToInt32(b.PartNumber)) })
	done, err := u.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          in.Bucket,
		Key:             in.Key,
		UploadId:        id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: completed},
	}, u.opts...)
	if err != nil {
		return nil, abort(err)
	}
	return &uploadResult{ChecksumSHA256: aws.ToString(done.ChecksumSHA256), Parts: completed}, nil
}

// abortCreated aborts the multipart upload created may have created, and returns cause.
func (u *streamUploader) abortCreated(ctx context.Context, in *s3.CreateMultipartUploadInput, created func() (*s3.CreateMultipartUploadOutput, error), cause error) error {
	out, err := created()
	if err != nil {
		return cause // nothing was created
	}
	return u.abort(ctx, in, out.UploadId, cause)
}

// abort aborts the multipart upload uploadID and returns cause.
func (u *streamUploader) abort(ctx context.Context, in *s3.CreateMultipartUploadInput, uploadID *string, cause error) error {
	if _, aerr := u.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: in.Bucket, Key: in.Key, UploadId: uploadID}, u.opts...); aerr != nil {
		return fmt.Errorf("%w (and aborting the multipart upload failed: %v)", cause, aerr)
	}
	return cause
}

// inBackground runs f in a goroutine. The returned function waits for it and returns its
// results (every call, the same).
func inBackground[T any](f func() (T, error)) func() (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	return sync.OnceValues(func() (T, error) {
		r := <-ch
		return r.v, r.err
	})
}

// uploadPart sends one part with its SHA-256, which the server verifies.
func (u *streamUploader) uploadPart(ctx context.Context, in *s3.CreateMultipartUploadInput, uploadID *string, p part) (types.CompletedPart, error) {
	data := p.buf[:p.n]
	b64 := base64.StdEncoding.EncodeToString(p.sum[:])
	out, err := u.client.UploadPart(ctx, &s3.UploadPartInput{
		Bucket:         in.Bucket,
		Key:            in.Key,
		UploadId:       uploadID,
		PartNumber:     aws.Int32(p.num),
		Body:           bytes.NewReader(data), // seekable: the SDK can retry
		ContentLength:  aws.Int64(int64(p.n)),
		ChecksumSHA256: aws.String(b64),
	}, u.opts...)
	if err != nil {
		return types.CompletedPart{}, fmt.Errorf("part %d: %w", p.num, err)
	}
	if got := aws.ToString(out.ChecksumSHA256); got != "" && got != b64 {
		return types.CompletedPart{}, errorf(ExitIntegrity, "S3 stored part %d with SHA-256 %s, but it was sent with %s; retry", p.num, got, b64)
	}
	return types.CompletedPart{PartNumber: aws.Int32(p.num), ETag: out.ETag, ChecksumSHA256: aws.String(b64)}, nil
}

// putObject stores a snapshot smaller than one part with a full-object SHA-256, the stream's.
func (u *streamUploader) putObject(ctx context.Context, body uploadBody, in *s3.CreateMultipartUploadInput, data []byte) (*uploadResult, error) {
	raw, err := hex.DecodeString(body.SHA256())
	if err != nil {
		return nil, err
	}
	out, err := u.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:         in.Bucket,
		Key:            in.Key,
		Body:           bytes.NewReader(data),
		ContentLength:  aws.Int64(int64(len(data))),
		ContentType:    in.ContentType,
		Metadata:       in.Metadata,
		ChecksumSHA256: aws.String(base64.StdEncoding.EncodeToString(raw)),
	}, u.opts...)
	if err != nil {
		return nil, err
	}
	return &uploadResult{ChecksumSHA256: aws.ToString(out.ChecksumSHA256)}, nil
}
