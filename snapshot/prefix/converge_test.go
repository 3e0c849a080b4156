package prefix

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

// records is an iterator over "key=value" or "key=value@lease" strings, mod revisions 1, 2, ...
func records(kvs ...string) next {
	i := 0
	return func(r *Record) error {
		if i == len(kvs) {
			return io.EOF
		}
		k, v, _ := strings.Cut(kvs[i], "=")
		v, l, _ := strings.Cut(v, "@")
		var lease int64
		if l != "" {
			fmt.Sscan(l, &lease)
		}
		i++
		*r = Record{Key: []byte(k), Value: []byte(v), Lease: lease, ModRevision: int64(i)}
		return nil
	}
}

func TestDiff(t *testing.T) {
	tests := []struct {
		name          string
		want, have    []string
		ops           []string
		unchangedKeys int
	}{
		{name: "both empty"},
		{name: "restore into empty", want: []string{"/p/a=1", "/p/b=2"}, ops: []string{"put /p/a=1 rev0", "put /p/b=2 rev0"}},
		{name: "delete everything", have: []string{"/p/a=1", "/p/b=2"}, ops: []string{"del /p/a rev1", "del /p/b rev2"}},
		{name: "equal", want: []string{"/p/a=1", "/p/b=2"}, have: []string{"/p/a=1", "/p/b=2"}, unchangedKeys: 2},
		{
			name:          "interleaved",
			want:          []string{"/p/a=1", "/p/c=3", "/p/d=new", "/p/f=6"},
			have:          []string{"/p/b=2", "/p/c=3", "/p/d=old", "/p/e=5"},
			ops:           []string{"put /p/a=1 rev0", "del /p/b rev1", "put /p/d=new rev3", "del /p/e rev4", "put /p/f=6 rev0"},
			unchangedKeys: 1,
		},
		{name: "a lease to add", want: []string{"/p/ev=1@7"}, have: []string{"/p/ev=1"}, ops: []string{"put /p/ev=1@7 rev1"}},
		{name: "a lease to drop", want: []string{"/p/ev=1"}, have: []string{"/p/ev=1@9"}, ops: []string{"put /p/ev=1 rev1"}},
		{name: "a live lease is kept", want: []string{"/p/ev=1@7"}, have: []string{"/p/ev=1@9"}, unchangedKeys: 1},
		{name: "empty value differs from absent", want: []string{"/p/a="}, ops: []string{"put /p/a= rev0"}},
		{name: "byte order, not string length", want: []string{"/p/a/b=1", "/p/a0=2"}, have: []string{"/p/a-=0"}, ops: []string{"del /p/a- rev1", "put /p/a/b=1 rev0", "put /p/a0=2 rev0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ops []string
			unchanged := 0
			err := diff(records(tt.want...), records(tt.have...), func(o op) error {
				s := fmt.Sprintf("put %s=%s", o.key, o.value)
				if o.del {
					s = "del " + string(o.key)
				}
				if o.lease != 0 {
					s += fmt.Sprintf("@%d", o.lease)
				}
				ops = append(ops, fmt.Sprintf("%s rev%d", s, o.modRev))
				return nil
			}, func() { unchanged++ })
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.ops, ops); diff != "" {
				t.Errorf("ops mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.unchangedKeys, unchanged); diff != "" {
				t.Errorf("unchanged mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// txnRequest is the request etcd receives for a batch (as the converger builds it).
func txnRequest(ops []op) *pb.TxnRequest {
	req := &pb.TxnRequest{}
	for _, o := range ops {
		req.Compare = append(req.Compare, &pb.Compare{Key: o.key, Target: pb.Compare_MOD, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_ModRevision{ModRevision: o.modRev}})
		if o.del {
			req.Success = append(req.Success, &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: o.key}}})
		} else {
			req.Success = append(req.Success, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: o.key, Value: o.value, Lease: 1<<63 - 1}}})
		}
	}
	return req
}

func TestBatcher(t *testing.T) {
	key := func(i int) []byte {
		return []byte(fmt.Sprintf("/acme_production_dev_cp/pods/namespace-%06d/pod-%06d", i, i))
	}
	tests := []struct {
		name    string
		limits  Limits
		values  []int // value sizes; -1 is a delete
		batches []int // ops per batch
	}{
		{name: "small keys: the op limit", limits: Limits{MaxTxnOps: 128, MaxRequestBytes: DefaultMaxRequestBytes}, values: repeat(300, 100), batches: []int{128, 128, 44}},
		{name: "deletes: the op limit", limits: Limits{MaxTxnOps: 128, MaxRequestBytes: DefaultMaxRequestBytes}, values: repeat(129, -1), batches: []int{128, 1}},
		{name: "large values: the byte limit", limits: Limits{MaxTxnOps: 128, MaxRequestBytes: DefaultMaxRequestBytes}, values: repeat(10, 400<<10), batches: []int{3, 3, 3, 1}},
		{name: "a value over the limit goes alone", limits: Limits{MaxTxnOps: 128, MaxRequestBytes: DefaultMaxRequestBytes}, values: []int{10, 2 << 20, 10}, batches: []int{1, 1, 1}},
		{name: "a lower op limit", limits: Limits{MaxTxnOps: 5, MaxRequestBytes: DefaultMaxRequestBytes}, values: repeat(12, 1), batches: []int{5, 5, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &batcher{limits: tt.limits}
			var got []int
			check := func() {
				got = append(got, len(b.ops))
				size := proto.Size(txnRequest(b.ops))
				if len(b.ops) > 1 && size > tt.limits.MaxRequestBytes-requestMargin {
					t.Errorf("a batch of %d ops is %d bytes, over the limit", len(b.ops), size)
				}
				if size > b.bytes && len(b.ops) > 0 {
					t.Errorf("a batch is %d bytes but was counted as %d", size, b.bytes)
				}
				b.reset()
			}
			for i, n := range tt.values {
				o := op{key: key(i), modRev: 1 << 40, del: n < 0}
				if n >= 0 {
					o.value, o.lease = make([]byte, n), 1
				}
				if !b.add(o) {
					check()
					if !b.add(o) {
						t.Fatal("an empty batch refused an op")
					}
				}
			}
			check()
			if diff := cmp.Diff(tt.batches, got); diff != "" {
				t.Errorf("batches mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func repeat(n, v int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = v
	}
	return out
}
