package datadir

import (
	"context"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	"kube-dc.com/etcd-backup/jobspec"
)

func TestStageOf(t *testing.T) {
	const rec, other, older = 7, 8, 9
	tests := []struct {
		name                      string
		dataDir, staged, previous uint64
		record                    uint64
		want                      stage
	}{
		{"nothing staged", other, 0, older, 0, stageNone},
		{"staged", other, rec, older, rec, stagePending},
		{"staged, no data directory", 0, rec, 0, rec, stagePending},
		{"exchanged, replaced data still staged", rec, other, older, rec, stageExchanged},
		{"swapped", rec, 0, other, rec, stageSwapped},
		{"swapped onto no data directory", rec, 0, 0, rec, stageSwapped},
		{"rolled back", other, 0, rec, rec, stageRolledBack},
		{"gone", other, 0, older, rec, stageLost},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, stageOf(tc.record, tc.dataDir, tc.staged, tc.previous)); diff != "" {
				t.Errorf("stageOf mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// stageFake stages a fake restore of dataDir (an "id" file and a database at revision rev) as
// restore --swap=false does from its staging directory.
func stageFake(t *testing.T, dataDir, id string, rev int64) {
	t.Helper()
	staging, err := os.MkdirTemp(filepath.Dir(dataDir), stagingPrefix)
	if err != nil {
		t.Fatal(err)
	}
	restored := filepath.Join(staging, "data")
	writeTree(t, staging, tree{"data": id})
	if err := os.MkdirAll(filepath.Join(restored, "member", "snap"), 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(restored, "member", "snap", "db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("key"))
		if err != nil {
			return err
		}
		k := make([]byte, 17)
		binary.BigEndian.PutUint64(k, uint64(rev))
		return b.Put(k, nil)
	})
	if cerr := db.Close(); err != nil || cerr != nil {
		t.Fatal(err, cerr)
	}
	res := &jobspec.Result{Command: jobspec.CommandRestore, Key: "c/c-20260301T020000Z.db", Revision: 5, RestoredRevision: rev, DataDir: dataDir}
	if err := commitStaged(staging, restored, jobspec.Member{DataDir: dataDir}, res); err != nil {
		t.Fatal(err)
	}
}

// TestStagedRestoreSteps runs the steps of a member's restore on fake data directories, in the
// orders a controller (and its retries after a crash) may run them.
func TestStagedRestoreSteps(t *testing.T) {
	const rev = 1000000005
	type step struct {
		op        string // stage, swap, swapAt (another revision), rollback, plainRollback, exchangeOnly, clear
		wantCode  jobspec.ExitCode
		wantState string
	}
	tests := []struct {
		name   string
		before tree
		steps  []step
		want   tree
	}{
		{"swap, keeping one generation", tree{"default.etcd": "old", "default.etcd.previous": "older"},
			[]step{{"stage", 0, ""}, {"swap", 0, jobspec.StateSwapped}},
			tree{"default.etcd": "new", "default.etcd.previous": "old", "default.etcd.staged/data": ""}},
		{"a retried swap does nothing more", tree{"default.etcd": "old"},
			[]step{{"stage", 0, ""}, {"swap", 0, jobspec.StateSwapped}, {"swap", 0, jobspec.StateAlreadySwapped}},
			tree{"default.etcd": "new", "default.etcd.previous": "old"}},
		{"nothing staged", tree{"default.etcd": "old", "default.etcd.previous": "older"},
			[]step{{"swap", jobspec.ExitNotStaged, ""}},
			tree{"default.etcd": "old", "default.etcd.previous": "older"}},
		{"staged at another revision", tree{"default.etcd": "old"},
			[]step{{"stage", 0, ""}, {"swapAt", jobspec.ExitNotStaged, ""}},
			tree{"default.etcd": "old", "default.etcd.staged/data": "new"}},
		{"swap onto a lost data directory", tree{},
			[]step{{"stage", 0, ""}, {"swap", 0, jobspec.StateSwapped}},
			tree{"default.etcd": "new", "default.etcd.previous": ""}},
		{"rollback of the swap, twice", tree{"default.etcd": "old", "default.etcd.previous": "older"},
			[]step{{"stage", 0, ""}, {"swap", 0, jobspec.StateSwapped}, {"rollback", 0, jobspec.StateRolledBack}, {"rollback", 0, jobspec.StateAlreadyRolledBack}},
			tree{"default.etcd": "old", "default.etcd.previous": "new"}},
		{"no swap after its rollback", tree{"default.etcd": "old"},
			[]step{{"stage", 0, ""}, {"swap", 0, jobspec.StateSwapped}, {"rollback", 0, jobspec.StateRolledBack}, {"swap", jobspec.ExitNotStaged, ""}},
			tree{"default.etcd": "old", "default.etcd.previous": "new"}},
		{"plain rollback still undoes a rollback", tree{"default.etcd": "old"},
			[]step{{"stage", 0, ""}, {"swap", 0, jobspec.StateSwapped}, {"rollback", 0, jobspec.StateRolledBack}, {"plainRollback", 0, ""}},
			tree{"default.etcd": "new", "default.etcd.previous": "old"}},
		{"rollback of a swap onto a lost data directory", tree{},
			[]step{{"stage", 0, ""}, {"swap", 0, jobspec.StateSwapped}, {"rollback", 0, jobspec.StateRolledBack}},
			tree{"default.etcd": "", "default.etcd.previous": "", "default.etcd.staged/data": "new"}},
		{"rollback of a staged restore never swapped discards it", tree{"default.etcd": "old", "default.etcd.previous": "older"},
			[]step{{"stage", 0, ""}, {"rollback", 0, jobspec.StateDiscarded}, {"swap", jobspec.ExitNotStaged, ""}},
			tree{"default.etcd": "old", "default.etcd.previous": "older", "default.etcd.staged/data": ""}},
		{"rollback with nothing staged changes nothing", tree{"default.etcd": "old", "default.etcd.previous": "older"},
			[]step{{"rollback", 0, jobspec.StateNotSwapped}},
			tree{"default.etcd": "old", "default.etcd.previous": "older"}},
		{"swap interrupted after its exchange, retried", tree{"default.etcd": "old", "default.etcd.previous": "older"},
			[]step{{"stage", 0, ""}, {"exchangeOnly", 0, ""}, {"swap", 0, jobspec.StateSwapped}},
			tree{"default.etcd": "new", "default.etcd.previous": "old", "default.etcd.staged/data": ""}},
		{"swap interrupted after its exchange, rolled back", tree{"default.etcd": "old", "default.etcd.previous": "older"},
			[]step{{"stage", 0, ""}, {"exchangeOnly", 0, ""}, {"rollback", 0, jobspec.StateRolledBack}},
			tree{"default.etcd": "old", "default.etcd.previous": "new", "default.etcd.staged/data": ""}},
		{"a new restore finishes an interrupted swap first", tree{"default.etcd": "old", "default.etcd.previous": "older"},
			[]step{{"stage", 0, ""}, {"exchangeOnly", 0, ""}, {"clear", 0, ""}},
			tree{"default.etcd": "new", "default.etcd.previous": "old", "default.etcd.staged/data": ""}},
		{"a new restore drops an unswapped staged one", tree{"default.etcd": "old"},
			[]step{{"stage", 0, ""}, {"clear", 0, ""}, {"swap", jobspec.ExitNotStaged, ""}},
			tree{"default.etcd": "old", "default.etcd.staged/data": ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tc.before)
			dataDir := filepath.Join(root, "default.etcd")
			ctx := context.Background()
			for i, s := range tc.steps {
				var res *jobspec.Result
				var err error
				switch s.op {
				case "stage":
					stageFake(t, dataDir, "new", rev)
				case "swap":
					res, err = Swap(ctx, SwapOptions{Swap: jobspec.Swap{DataDir: dataDir, RestoredRevision: rev}})
				case "swapAt":
					res, err = Swap(ctx, SwapOptions{Swap: jobspec.Swap{DataDir: dataDir, RestoredRevision: rev + 1}})
				case "rollback":
					res, err = Rollback(ctx, RollbackOptions{DataDir: dataDir, IfSwapped: true})
				case "plainRollback":
					_, err = Rollback(ctx, RollbackOptions{DataDir: dataDir})
				case "exchangeOnly":
					err = exchange(filepath.Join(StagedDir(dataDir), "data"), dataDir)
				case "clear":
					err = clearStaged(dataDir, slog.New(slog.DiscardHandler))
				}
				if diff := cmp.Diff(s.wantCode, jobspec.CodeOf(err)); diff != "" {
					t.Fatalf("step %d (%s): exit code mismatch (-want +got):\n%s (err %v)", i, s.op, diff, err)
				}
				if s.wantState != "" && (res == nil || res.State != s.wantState) {
					t.Fatalf("step %d (%s): result %+v, want state %q", i, s.op, res, s.wantState)
				}
			}
			dirs := make([]string, 0, len(tc.want))
			for d := range tc.want {
				dirs = append(dirs, d)
			}
			if diff := cmp.Diff(tc.want, readTree(t, root, dirs...)); diff != "" {
				t.Errorf("layout mismatch (-want +got):\n%s", diff)
			}
			if stale, _ := filepath.Glob(filepath.Join(root, stagingPrefix+"*")); len(stale) > 0 {
				t.Errorf("staging directories left behind: %v", stale)
			}
		})
	}
}
