package datadir

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kube-dc.com/etcd-backup/jobspec"
)

// tree describes a directory layout as dir -> content of its "id" file ("" = absent).
type tree map[string]string

func writeTree(t *testing.T, root string, tr tree) {
	t.Helper()
	for dir, id := range tr {
		if id == "" {
			continue
		}
		p := filepath.Join(root, dir)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "id"), []byte(id), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func readTree(t *testing.T, root string, dirs ...string) tree {
	t.Helper()
	got := tree{}
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(root, d, "id"))
		if err == nil {
			got[d] = string(b)
		} else {
			got[d] = ""
		}
	}
	return got
}

func TestSwapIn(t *testing.T) {
	tests := []struct {
		name     string
		before   tree
		want     tree
		wantPrev bool
	}{
		{"first restore", tree{"staging/data": "new"}, tree{"default.etcd": "new", "default.etcd.previous": ""}, false},
		{"keeps the replaced data", tree{"staging/data": "new", "default.etcd": "old"}, tree{"default.etcd": "new", "default.etcd.previous": "old"}, true},
		{"keeps one generation", tree{"staging/data": "new", "default.etcd": "old", "default.etcd.previous": "older"}, tree{"default.etcd": "new", "default.etcd.previous": "old"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tt.before)
			prev, err := swapIn(filepath.Join(root, "staging/data"), filepath.Join(root, "default.etcd"), filepath.Join(root, "staging"))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, readTree(t, root, "default.etcd", "default.etcd.previous")); diff != "" {
				t.Errorf("layout mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantPrev, prev != ""); diff != "" {
				t.Errorf("previous reported mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRollback(t *testing.T) {
	tests := []struct {
		name     string
		before   tree
		want     tree
		wantCode jobspec.ExitCode
	}{
		{"swaps back", tree{"default.etcd": "new", "default.etcd.previous": "old"}, tree{"default.etcd": "old", "default.etcd.previous": "new"}, jobspec.ExitSucceeded},
		{"no data dir", tree{"default.etcd.previous": "old"}, tree{"default.etcd": "old", "default.etcd.previous": ""}, jobspec.ExitSucceeded},
		{"no previous", tree{"default.etcd": "new"}, tree{"default.etcd": "new", "default.etcd.previous": ""}, jobspec.ExitNoPreviousGeneration},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tt.before)
			_, err := Rollback(context.Background(), RollbackOptions{DataDir: filepath.Join(root, "default.etcd")})
			if diff := cmp.Diff(tt.wantCode, jobspec.CodeOf(err)); diff != "" {
				t.Fatalf("exit code mismatch (-want +got):\n%s (err %v)", diff, err)
			}
			if diff := cmp.Diff(tt.want, readTree(t, root, "default.etcd", "default.etcd.previous")); diff != "" {
				t.Errorf("layout mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
