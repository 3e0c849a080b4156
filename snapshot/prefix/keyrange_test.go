package prefix

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestRangeOf(t *testing.T) {
	tests := []struct {
		prefix  string
		want    KeyRange
		wantErr bool
	}{
		{prefix: "/acme_a", want: KeyRange{Prefix: "/acme_a", Start: "/acme_a/", End: "/acme_a0"}},
		{prefix: "/acme_a/", want: KeyRange{Prefix: "/acme_a", Start: "/acme_a/", End: "/acme_a0"}},
		{prefix: "/registry", want: KeyRange{Prefix: "/registry", Start: "/registry/", End: "/registry0"}},
		{prefix: "registry", want: KeyRange{Prefix: "registry", Start: "registry/", End: "registry0"}},
		{prefix: "", wantErr: true},
		{prefix: "/", wantErr: true},
		{prefix: "//", wantErr: true},
		{prefix: "/a\nb", wantErr: true},
		{prefix: "/é", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			got, err := RangeOf(tt.prefix)
			if (err != nil) != tt.wantErr {
				t.Fatalf("RangeOf(%q) error = %v, want error %v", tt.prefix, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("RangeOf(%q) mismatch (-want +got):\n%s", tt.prefix, diff)
			}
			if err == nil && got.End != clientv3.GetPrefixRangeEnd(got.Start) {
				t.Errorf("End %q is not etcd's prefix range end %q", got.End, clientv3.GetPrefixRangeEnd(got.Start))
			}
		})
	}
}

func TestContains(t *testing.T) {
	rng, err := RangeOf("/acme_a")
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"/acme_a/pods/x", "/acme_a/", "/acme_ab/pods/x", "/acme_a", "/acme_a0", "/acme_", "/acme_a.b/x", "/registry/pods/x", ""}
	got := map[string]bool{}
	for _, k := range keys {
		got[k] = rng.Contains([]byte(k))
	}
	want := map[string]bool{"/acme_a/pods/x": true, "/acme_a/": true, "/acme_ab/pods/x": false, "/acme_a": false, "/acme_a0": false, "/acme_": false, "/acme_a.b/x": false, "/registry/pods/x": false, "": false}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Contains mismatch (-want +got):\n%s", diff)
	}
}
