package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
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

// encodeInto passes msg through the wire format into m, as gRPC does with snapshotCodec: in
// two buffers, as if it arrived in two HTTP/2 frames.
func encodeInto(t *testing.T, m *snapshotMessage, msg *pb.SnapshotResponse) error {
	t.Helper()
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	half := len(b) / 2
	data := mem.BufferSlice{mem.SliceBuffer(b[:half]), mem.SliceBuffer(b[half:])}
	return snapshotCodec{}.Unmarshal(data, m)
}

func TestSnapshotMessageDecode(t *testing.T) {
	var m snapshotMessage
	hdr := &pb.ResponseHeader{ClusterId: 1, MemberId: 2, Revision: 3, RaftTerm: 4}
	for _, msg := range []*pb.SnapshotResponse{
		{Header: hdr, RemainingBytes: 1 << 40, Blob: bytes.Repeat([]byte{7}, 32<<10), Version: "3.6.0"},
		{Header: hdr, RemainingBytes: 5, Blob: []byte{1, 2, 3}, Version: "3.6.0"},
		{Blob: make([]byte, 32)},
	} {
		if err := encodeInto(t, &m, msg); err != nil {
			t.Fatal(err)
		}
		got := []any{m.RemainingBytes, m.Blob, m.Version}
		if diff := cmp.Diff([]any{msg.RemainingBytes, msg.Blob, msg.Version}, got); diff != "" {
			t.Errorf("decoded message mismatch (-want +got):\n%s", diff)
		}
	}
	m.release()
	if err := (snapshotCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{0x1a, 0x05, 1})}, &m); err == nil {
		t.Error("a blob longer than the message decoded without an error")
	}
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
			recv := func(m *snapshotMessage) error {
				if i == len(tt.msgs) {
					return io.EOF
				}
				i++
				return encodeInto(t, m, tt.msgs[i-1])
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
		info     ObjectInfo
		data     []byte
		wantCode ExitCode
	}{
		{"full checksum", ObjectInfo{Size: int64(len(obj)), Checksum: s3Checksum{Digest: b64sum(obj)}, HasChecksum: true, TagSHA256: hex.EncodeToString(whole[:])}, obj, ExitSucceeded},
		{"composite checksum", ObjectInfo{Size: int64(len(obj)), Checksum: comp, HasChecksum: true, PartSize: partSize}, obj, ExitSucceeded},
		{"no S3 checksum", ObjectInfo{Size: int64(len(obj))}, obj, ExitSucceeded},
		{"flipped byte", ObjectInfo{Size: int64(len(obj))}, flipped, ExitIntegrity},
		{"flipped byte, fresh S3 checksum", ObjectInfo{Size: int64(len(flipped)), Checksum: s3Checksum{Digest: b64sum(flipped)}, HasChecksum: true}, flipped, ExitIntegrity},
		{"checksum mismatch", ObjectInfo{Size: int64(len(obj)), Checksum: s3Checksum{Digest: b64sum(db)}, HasChecksum: true}, obj, ExitIntegrity},
		{"composite mismatch", ObjectInfo{Size: int64(len(obj)), Checksum: s3Checksum{Digest: comp.Digest, Parts: 3}, HasChecksum: true, PartSize: 2000}, obj, ExitIntegrity},
		{"composite and tag: the tag is checked", ObjectInfo{Size: int64(len(obj)), Checksum: comp, HasChecksum: true, PartSize: partSize, TagSHA256: hex.EncodeToString(whole[:])}, obj, ExitSucceeded},
		{"composite and tag, flipped byte", ObjectInfo{Size: int64(len(obj)), Checksum: comp, HasChecksum: true, PartSize: partSize, TagSHA256: hex.EncodeToString(whole[:])}, flipped, ExitIntegrity},
		{"tag mismatch", ObjectInfo{Size: int64(len(obj)), TagSHA256: hex.EncodeToString(sum[:])}, obj, ExitIntegrity},
		{"short read", ObjectInfo{Size: int64(len(obj))}, obj[:len(obj)-10], ExitIntegrity},
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

// TestVerifierCopy runs download's copy, whose part hashes run in a second goroutine over a ring
// of buffers, over more data than the ring holds, and checks it agrees with the serial Write.
func TestVerifierCopy(t *testing.T) {
	db := make([]byte, 6*copyChunk+512*7)
	for i := range db {
		db[i] = byte(i * 7)
	}
	sum := sha256.Sum256(db)
	obj := append(append([]byte{}, db...), sum[:]...)
	whole := sha256.Sum256(obj)
	partSize := int64(1536 << 10)
	ph := newPartHasher(partSize)
	ph.Write(obj)
	comp, _ := ph.composite()
	// No tag, so the composite's part hashes run (in the second goroutine).
	info := ObjectInfo{Size: int64(len(obj)), Checksum: comp, HasChecksum: true, PartSize: partSize}

	var out bytes.Buffer
	v := newVerifier(&info)
	n, werr, err := v.copy(&out, bytes.NewReader(obj))
	got, cerr := v.check("s3://b/k")
	if diff := cmp.Diff([]any{int64(len(obj)), nil, nil, nil, hex.EncodeToString(whole[:]), true}, []any{n, werr, err, cerr, got, bytes.Equal(out.Bytes(), obj)}); diff != "" {
		t.Errorf("copy [n werr err check sha256 same-bytes] mismatch (-want +got):\n%s", diff)
	}

	flipped := append([]byte{}, obj...)
	flipped[5*copyChunk+3] ^= 1
	v = newVerifier(&info)
	if _, _, err := v.copy(io.Discard, bytes.NewReader(flipped)); err != nil {
		t.Fatal(err)
	}
	if _, err := v.check("s3://b/k"); CodeOf(err) != ExitIntegrity {
		t.Errorf("a flipped byte passed the checks: %v", err)
	}

	full := errors.New("no space left on device")
	v = newVerifier(&info)
	if _, werr, err := v.copy(&failingWriter{after: 2 * copyChunk, err: full}, bytes.NewReader(obj)); werr != full || err != full {
		t.Errorf("copy into a full disk returned (%v, %v); want the writer's error twice", werr, err)
	}
}

type failingWriter struct {
	after int
	err   error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after -= len(p); w.after < 0 {
		return 0, w.err
	}
	return len(p), nil
}
