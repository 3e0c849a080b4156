package datapath

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"kube-dc.com/etcd-backup/snapshot"
	"kube-dc.com/etcd-backup/test/framework"
)

// floorUpload is the S3 side of the backup benchmark's floor: the snapshot's bytes, already in
// memory and already hashed, cut into the backup's parts.
type floorUpload struct {
	parts [][]byte
	sums  []string // base64 SHA-256 of each part
}

func newFloorUpload(data []byte, partSize int) floorUpload {
	var f floorUpload
	for off := 0; off < len(data); off += partSize {
		p := data[off:min(off+partSize, len(data))]
		sum := sha256.Sum256(p)
		f.parts = append(f.parts, p)
		f.sums = append(f.sums, base64.StdEncoding.EncodeToString(sum[:]))
	}
	return f
}

// upload stores the parts as key with the requests the backup makes for the data (create, the
// parts with their SHA-256 checksums, concurrency at a time, complete) and nothing else: no
// stream to wait for, no hashing, no tag and no lifecycle rule.
func (f floorUpload) upload(ctx context.Context, c *s3.Client, key string, concurrency int) error {
	unsigned := s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
	created, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String(bucket), Key: aws.String(key), ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
	}, unsigned)
	if err != nil {
		return err
	}
	var (
		mu        sync.Mutex
		completed []types.CompletedPart
		firstErr  error
		wg        sync.WaitGroup
	)
	next := make(chan int)
	for range concurrency {
		wg.Go(func() {
			for i := range next {
				out, err := c.UploadPart(ctx, &s3.UploadPartInput{
					Bucket: aws.String(bucket), Key: aws.String(key), UploadId: created.UploadId,
					PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(f.parts[i]),
					ContentLength: aws.Int64(int64(len(f.parts[i]))), ChecksumSHA256: aws.String(f.sums[i]),
				}, unsigned)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				} else if err == nil {
					completed = append(completed, types.CompletedPart{PartNumber: aws.Int32(int32(i + 1)), ETag: out.ETag, ChecksumSHA256: aws.String(f.sums[i])})
				}
				mu.Unlock()
			}
		})
	}
	for i := range f.parts {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	slices.SortFunc(completed, func(a, b types.CompletedPart) int { return int(*a.PartNumber - *b.PartNumber) })
	_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(bucket), Key: aws.String(key), UploadId: created.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: completed},
	}, unsigned)
	return err
}

// floorBackup runs `etcdctl snapshot save` to a local file while the same number of bytes is
// uploaded to the same S3 server at the same moment, from memory, by the floor upload, and
// returns the time until both are done. It is the time of a backup whose own process cost no
// more than etcdctl and whose upload needed no data from etcd: a lower bound for any backup that
// streams to this S3 server on this machine, where the server's CPU shares the cores with etcd
// and the backup (docs/benchmarks.md, "The backup's floor").
func floorBackup(b *testing.B, e *framework.EtcdServer, c *s3.Client, f floorUpload, key string) time.Duration {
	b.Helper()
	file := filepath.Join(b.TempDir(), "floor.db")
	cmd := etcdctlCmd(e, "snapshot", "save", file)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatalf("etcdctl: %v", err)
	}
	uploaded := make(chan error, 1)
	go func() { uploaded <- f.upload(context.Background(), c, key, snapshot.DefaultConcurrency) }()
	if err := cmd.Wait(); err != nil {
		b.Fatalf("etcdctl snapshot save: %v: %s", err, out.String())
	}
	if err := <-uploaded; err != nil {
		b.Fatalf("floor upload: %v", err)
	}
	d := time.Since(start)
	os.Remove(file)
	return d
}

// floorRestore runs cmd, `etcdutl snapshot restore` of a local copy of the snapshot, while the
// test process downloads the object key from the same S3 server at the same moment and throws
// the bytes away, and returns the time until both are done. It is the time of a restore whose
// own process costs no more than etcdutl and whose download needs no checks, no file and no
// wait: a lower bound for any restore from this S3 server on this machine.
func floorRestore(b *testing.B, c *s3.Client, key string, cmd *exec.Cmd) time.Duration {
	b.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatalf("etcdutl: %v", err)
	}
	downloaded := make(chan error, 1)
	go func() {
		got, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err == nil {
			_, err = io.Copy(io.Discard, got.Body)
			got.Body.Close()
		}
		downloaded <- err
	}()
	if err := cmd.Wait(); err != nil {
		b.Fatalf("etcdutl snapshot restore: %v: %s", err, out.String())
	}
	if err := <-downloaded; err != nil {
		b.Fatalf("floor download: %v", err)
	}
	return time.Since(start)
}

// median of xs (xs is reordered).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// floorKey names the floor's object apart from the backups'.
const floorKey = "floor/floor.db"
