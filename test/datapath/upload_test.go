package datapath

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-cmp/cmp"

	"kube-dc.com/etcd-backup/snapshot"
)

// unsizedBody is a stream of unknown size, as a prefix snapshot is: n pseudo-random bytes, or an
// error once failAt bytes were read (failAt >= 0).
type unsizedBody struct {
	r      io.Reader
	h      hash.Hash
	n      int
	failAt int
}

var errBodyBroke = errors.New("the stream broke")

func newUnsizedBody(data []byte, failAt int) *unsizedBody {
	return &unsizedBody{r: bytes.NewReader(data), h: sha256.New(), failAt: failAt}
}

func (b *unsizedBody) Read(p []byte) (int, error) {
	if b.failAt >= 0 {
		if b.n >= b.failAt {
			return 0, errBodyBroke
		}
		p = p[:min(len(p), b.failAt-b.n)]
	}
	n, err := b.r.Read(p)
	b.h.Write(p[:n])
	b.n += n
	return n, err
}

func (b *unsizedBody) SHA256() string { return hex.EncodeToString(b.h.Sum(nil)) }

// TestUploadStreamUnknownSize uploads streams that announce no size, around the part size (one
// PutObject, a multipart upload of one part, several parts), and streams that break before,
// at and after the first full part: what is stored is exactly what was read, and a broken
// stream leaves no object and no multipart upload behind (its upload is created in the
// background once the first part is full).
func TestUploadStreamUnknownSize(t *testing.T) {
	en := newEnv(t)
	c := snapshot.NewS3Client(en.loc, en.cred)
	part := int(snapshot.MinPartSize)
	data := make([]byte, 3*part+17)
	for i := range data {
		data[i] = byte(i*7 + i/251)
	}
	tests := []struct {
		name      string
		size      int
		failAt    int
		wantParts int
	}{
		{"small: one PutObject", 1 << 10, -1, 1},
		{"exactly one part", part, -1, 1},
		{"one byte over a part", part + 1, -1, 2},
		{"several parts", len(data), -1, 4},
		{"breaks within the first part", len(data), part / 2, 0},
		{"breaks right after the first full part", len(data), part, 0},
		{"breaks in the third part", len(data), 2*part + 5, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := fmt.Sprintf("unsized/%d.db", i)
			body := newUnsizedBody(data[:tt.size], tt.failAt)
			res, err := snapshot.UploadStream(context.Background(), c, en.loc, key, body, snapshot.UploadOptions{PartSize: snapshot.MinPartSize, Concurrency: 2})
			if tt.failAt >= 0 {
				if !errors.Is(err, errBodyBroke) {
					t.Fatalf("want the stream's error, got %v", err)
				}
				if slices.Contains(en.objectKeys(t), key) {
					t.Errorf("object %s is visible after its stream broke", key)
				}
				if n := multipartUploads(t, en, key); n != 0 {
					t.Errorf("the multipart upload of %s was not aborted: %d uploads remain", key, n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			out, err := en.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
			if err != nil {
				t.Fatal(err)
			}
			defer out.Body.Close()
			got, err := io.ReadAll(out.Body)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data[:tt.size]) {
				t.Errorf("stored %d bytes that differ from the %d read", len(got), tt.size)
			}
			if diff := cmp.Diff(tt.wantParts, res.Parts); diff != "" {
				t.Errorf("parts (-want +got):\n%s", diff)
			}
		})
	}
}
