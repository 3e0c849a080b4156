package prefix

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func TestRecordIsMvccKeyValue(t *testing.T) {
	tests := []*mvccpb.KeyValue{
		{Key: []byte("/a/b"), CreateRevision: 5, ModRevision: 9, Version: 3, Value: []byte("v"), Lease: 0x694d77aa9e1ac20f},
		{Key: []byte("/a/empty")},
		{Key: []byte("/a/big"), Value: bytes.Repeat([]byte{0, 1, 2}, 100000), ModRevision: 1 << 40},
	}
	for _, kv := range tests {
		r := Record{Key: kv.Key, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version, Value: kv.Value, Lease: kv.Lease}
		ours := appendRecord(nil, &r)
		if got, want := framedSize(&r), len(protowire.AppendBytes(nil, ours)); got != want {
			t.Errorf("framedSize of %q = %d, its framed encoding has %d bytes", kv.Key, got, want)
		}
		theirs, err := proto.MarshalOptions{Deterministic: true}.Marshal(kv)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ours, theirs) {
			t.Errorf("record of %q differs from mvccpb.KeyValue's encoding", kv.Key)
		}
		var back Record
		if err := parseRecord(theirs, &back); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(r, back); diff != "" {
			t.Errorf("parse mismatch (-want +got):\n%s", diff)
		}
	}
}

// encode writes a whole snapshot of recs.
func encode(t *testing.T, h Header, recs []Record, leases []Lease) []byte {
	t.Helper()
	e, out, err := newEncoder(h)
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		if out, err = e.encode(out, &recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	tail, err := e.finish(leases)
	if err != nil {
		t.Fatal(err)
	}
	return append(out, tail...)
}

func readAll(b []byte) (Header, []Record, Trailer, error) {
	rd, err := NewReader(bytes.NewReader(b))
	if err != nil {
		return Header{}, nil, Trailer{}, err
	}
	var recs []Record
	var r Record
	for err = rd.Next(&r); err == nil; err = rd.Next(&r) {
		recs = append(recs, Record{Key: bytes.Clone(r.Key), Value: bytes.Clone(r.Value), CreateRevision: r.CreateRevision, ModRevision: r.ModRevision, Version: r.Version, Lease: r.Lease})
	}
	if !errors.Is(err, io.EOF) {
		return rd.Header(), recs, rd.Trailer(), err
	}
	return rd.Header(), recs, rd.Trailer(), nil
}

func TestRoundTrip(t *testing.T) {
	h := Header{Format: FormatV1, Prefix: "/acme_a", Cluster: "a", Revision: 42, EtcdVersion: "3.5.35", CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Purpose: PurposeBackup}
	recs := []Record{
		{Key: []byte("/acme_a/events/e1"), Value: []byte("x"), ModRevision: 10, CreateRevision: 10, Version: 1, Lease: 7},
		{Key: []byte("/acme_a/pods/p1"), Value: bytes.Repeat([]byte("y"), 3<<20), ModRevision: 11, CreateRevision: 3, Version: 4},
		{Key: []byte("/acme_a/pods/p2"), ModRevision: 12, CreateRevision: 12, Version: 1},
	}
	leases := []Lease{{ID: 7, GrantedTTL: 3600, TTL: 3000, Keys: 1}}
	b := encode(t, h, recs, leases)
	gotH, gotRecs, gotTr, err := readAll(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(h, gotH); diff != "" {
		t.Errorf("header mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(recs, gotRecs, cmp.Comparer(bytes.Equal)); diff != "" {
		t.Errorf("records mismatch (-want +got):\n%s", diff)
	}
	wantTr := Trailer{Keys: 3, KeyBytes: int64(len(recs[0].Key) + len(recs[1].Key) + len(recs[2].Key)), ValueBytes: 1 + 3<<20, Leases: leases}
	if diff := cmp.Diff(wantTr, gotTr); diff != "" {
		t.Errorf("trailer mismatch (-want +got):\n%s", diff)
	}
}

func TestEncoderRefuses(t *testing.T) {
	tests := []struct {
		name string
		keys []string
	}{
		{"outside the prefix", []string{"/acme_ab/pods/x"}},
		{"the prefix without its slash", []string{"/acme_a"}},
		{"out of order", []string{"/acme_a/b", "/acme_a/a"}},
		{"duplicate", []string{"/acme_a/b", "/acme_a/b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, out, err := newEncoder(Header{Format: FormatV1, Prefix: "/acme_a"})
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range tt.keys {
				out, err = e.encode(out, &Record{Key: []byte(k)})
			}
			if err == nil {
				t.Errorf("the encoder accepted %q", tt.keys)
			}
		})
	}
}

func TestReaderDetectsDamage(t *testing.T) {
	h := Header{Format: FormatV1, Prefix: "/acme_a", Cluster: "a", Purpose: PurposeBackup}
	recs := []Record{{Key: []byte("/acme_a/a"), Value: []byte("1"), Lease: 5}, {Key: []byte("/acme_a/b"), Value: []byte("2")}}
	good := encode(t, h, recs, []Lease{{ID: 5, TTL: 10}})
	foreign := encode(t, Header{Format: FormatV1, Prefix: "/acme_ab"}, []Record{{Key: []byte("/acme_ab/a")}}, nil)
	// A record of another prefix spliced into a snapshot whose header says /acme_a.
	spliced := bytes.Replace(good, []byte("/acme_a/b"), []byte("/acme_ab/"), 1)
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 1; return b }
	noLease := encode(t, h, recs, nil)
	tests := map[string][]byte{
		"truncated":             good[:len(good)-1],
		"truncated in a record": good[:len(Magic)+60],
		"a flipped value bit":   flip(bytes.Index(good, []byte("/acme_a/b")) + 10),
		"a flipped hash bit":    flip(len(good) - 1),
		"trailing bytes":        append(bytes.Clone(good), 0),
		"spliced foreign key":   spliced,
		"undescribed lease":     noLease,
		"not a snapshot":        []byte("SQLite format 3\x00"),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			if _, _, _, err := readAll(b); !errors.Is(err, ErrCorrupt) {
				t.Errorf("read error = %v, want ErrCorrupt", err)
			}
		})
	}
	if _, _, _, err := readAll(foreign); err != nil {
		t.Errorf("a valid snapshot of another prefix must read (the restore refuses it by its header): %v", err)
	}
}
