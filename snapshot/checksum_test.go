package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func b64sum(b []byte) string {
	s := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(s[:])
}

func TestParseS3Checksum(t *testing.T) {
	full := b64sum([]byte("x"))
	tests := []struct {
		in      string
		want    s3Checksum
		wantOK  bool
		wantErr bool
	}{
		{"", s3Checksum{}, false, false},
		{full, s3Checksum{Digest: full}, true, false},
		{full + "-3", s3Checksum{Digest: full, Parts: 3}, true, false},
		{full + "-0", s3Checksum{Digest: full}, false, true},
		{full + "-x", s3Checksum{Digest: full}, false, true},
		{"bm90IGEgc2hhMjU2", s3Checksum{Digest: "bm90IGEgc2hhMjU2"}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok, err := parseS3Checksum(tt.in)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("checksum mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]bool{tt.wantOK, tt.wantErr}, []bool{ok, err != nil}); diff != "" {
				t.Errorf("[ok, err] mismatch (-want +got):\n%s (err %v)", diff, err)
			}
		})
	}
}

func TestPartHasherComposite(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 25) // 250 bytes
	composite := func(partSize int) s3Checksum {
		var sums []string
		for off := 0; off < len(data); off += partSize {
			sums = append(sums, b64sum(data[off:min(off+partSize, len(data))]))
		}
		c, err := compositeOf(sums)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name      string
		partSize  int64
		writeSize int
		wantParts int
	}{
		{"writes smaller than parts", 100, 7, 3},
		{"writes larger than parts", 100, 130, 3},
		{"exact multiple", 50, 50, 5},
		{"one part", 1000, 64, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newPartHasher(tt.partSize)
			for off := 0; off < len(data); off += tt.writeSize {
				h.Write(data[off:min(off+tt.writeSize, len(data))])
			}
			got, err := h.composite()
			if err != nil {
				t.Fatal(err)
			}
			want := composite(int(tt.partSize))
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("composite mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantParts, got.Parts); diff != "" {
				t.Errorf("parts mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestS3LocationObjectKey(t *testing.T) {
	tests := []struct {
		prefix, want string
	}{
		{"", "prod/prod-20250101T020000Z.db"},
		{"backups", "backups/prod/prod-20250101T020000Z.db"},
		{"/a/b/", "a/b/prod/prod-20250101T020000Z.db"},
	}
	for _, tt := range tests {
		got := S3Location{Bucket: "b", Prefix: tt.prefix}.ObjectKey("prod/prod-20250101T020000Z.db")
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ObjectKey(prefix %q) mismatch (-want +got):\n%s", tt.prefix, diff)
		}
	}
}
