package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// messages splits db into the messages etcd's Maintenance.Snapshot sends: blobs with the
// remaining byte count, then the hash in a message of its own.
func messages(db []byte, chunk int, hash []byte) []*pb.SnapshotResponse {
	var out []*pb.SnapshotResponse
	for off := 0; off < len(db); off += chunk {
		end := min(off+chunk, len(db))
		out = append(out, &pb.SnapshotResponse{RemainingBytes: uint64(len(db) - end), Blob: db[off:end], Version: "3.6.0"})
	}
	return append(out, &pb.SnapshotResponse{Blob: hash})
}

func TestSnapshotStream(t *testing.T) {
	db := bytes.Repeat([]byte{0xab, 0xcd}, 4096)
	sum := sha256.Sum256(db)
	good := messages(db, 1000, sum[:])
	wrongHash := messages(db, 1000, make([]byte, 32))
	truncated := append(append([]*pb.SnapshotResponse{}, good[:3]...), good[len(good)-1])
	noHash := good[:len(good)-1]
	extra := messages(db, 1000, append(sum[:], 1))
	wholeSum := sha256.Sum256(append(append([]byte{}, db...), sum[:]...))

	tests := []struct {
		name     string
		msgs     []*pb.SnapshotResponse
		wantCode ExitCode
	}{
		{"intact", good, ExitSucceeded},
		{"wrong etcd hash", wrongHash, ExitIntegrity},
		{"truncated", truncated, ExitIntegrity},
		{"no hash", noHash, ExitIntegrity},
		{"extra bytes", extra, ExitIntegrity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := 0
			recv := func() (*pb.SnapshotResponse, error) {
				if i == len(tt.msgs) {
					return nil, io.EOF
				}
				i++
				return tt.msgs[i-1], nil
			}
			s, version, err := newSnapshotStream("https://127.0.0.1:2379", recv)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(s)
			if diff := cmp.Diff(tt.wantCode, CodeOf(err)); diff != "" {
				t.Fatalf("exit code mismatch (-want +got):\n%s (err %v)", diff, err)
			}
			if err != nil {
				return
			}
			want := struct {
				Version string
				Size    int64
				SHA256  string
				Bytes   int
			}{"3.6.0", int64(len(db) + 32), hex.EncodeToString(wholeSum[:]), len(db) + 32}
			gotInfo := want
			gotInfo.Version, gotInfo.Size, gotInfo.SHA256, gotInfo.Bytes = version, s.Size(), s.SHA256(), len(got)
			if diff := cmp.Diff(want, gotInfo); diff != "" {
				t.Errorf("stream mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestVerifier(t *testing.T) {
	db := bytes.Repeat([]byte{1, 2, 3, 4}, 1024) // 4096 bytes
	sum := sha256.Sum256(db)
	obj := append(append([]byte{}, db...), sum[:]...)
	whole := sha256.Sum256(obj)
	flipped := append([]byte{}, obj...)
	flipped[100] ^= 0x01
	partSize := int64(1500)
	ph := newPartHasher(partSize)
	ph.Write(obj)
	comp, _ := ph.composite()

	tests := []struct {
		name     string
		info     objectInfo
		data     []byte
		wantCode ExitCode
	}{
		{"full checksum", objectInfo{Size: int64(len(obj)), Checksum: s3Checksum{Digest: b64sum(obj)}, HasChecksum: true, TagSHA256: hex.EncodeToString(whole[:])}, obj, ExitSucceeded},
		{"composite checksum", objectInfo{Size: int64(len(obj)), Checksum: comp, HasChecksum: true, PartSize: partSize}, obj, ExitSucceeded},
		{"no S3 checksum", objectInfo{Size: int64(len(obj))}, obj, ExitSucceeded},
		{"flipped byte", objectInfo{Size: int64(len(obj))}, flipped, ExitIntegrity},
		{"flipped byte, fresh S3 checksum", objectInfo{Size: int64(len(flipped)), Checksum: s3Checksum{Digest: b64sum(flipped)}, HasChecksum: true}, flipped, ExitIntegrity},
		{"checksum mismatch", objectInfo{Size: int64(len(obj)), Checksum: s3Checksum{Digest: b64sum(db)}, HasChecksum: true}, obj, ExitIntegrity},
		{"composite mismatch", objectInfo{Size: int64(len(obj)), Checksum: s3Checksum{Digest: comp.Digest, Parts: 3}, HasChecksum: true, PartSize: 2000}, obj, ExitIntegrity},
		{"tag mismatch", objectInfo{Size: int64(len(obj)), TagSHA256: hex.EncodeToString(sum[:])}, obj, ExitIntegrity},
		{"short read", objectInfo{Size: int64(len(obj))}, obj[:len(obj)-10], ExitIntegrity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier(&tt.info)
			for off := 0; off < len(tt.data); off += 333 {
				v.Write(tt.data[off:min(off+333, len(tt.data))])
			}
			got, err := v.check("s3://b/k")
			if diff := cmp.Diff(tt.wantCode, CodeOf(err)); diff != "" {
				t.Fatalf("exit code mismatch (-want +got):\n%s (err %v)", diff, err)
			}
			if err == nil {
				if diff := cmp.Diff(hex.EncodeToString(whole[:]), got); diff != "" {
					t.Errorf("sha256 mismatch (-want +got):\n%s", diff)
				}
			}
		})
	}
}
