package prefix

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"kube-dc.com/etcd-backup/snapshot"
	"kube-dc.com/etcd-backup/snapshot/prefix"
	"kube-dc.com/etcd-backup/test/framework"
)

var versions = []string{framework.EtcdVersion35, framework.EtcdVersion36, framework.EtcdVersion}

// stored reads a stored prefix snapshot back (every check included) as a tenant state.
func stored(t *testing.T, en *env, key string) (prefix.Header, map[string]kv) {
	t.Helper()
	obj, err := snapshot.OpenVerified(context.Background(), snapshot.NewS3Client(en.loc, en.cred), en.loc, en.loc.ObjectKey(key))
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	rd, err := prefix.NewReader(obj)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]kv{}
	var r prefix.Record
	for err = rd.Next(&r); err == nil; err = rd.Next(&r) {
		out[string(r.Key)] = kv{Value: string(r.Value), ModRev: r.ModRevision, HasLease: r.Lease != 0}
	}
	if !errors.Is(err, io.EOF) {
		t.Fatalf("the stored snapshot %s is not valid: %v", key, err)
	}
	return rd.Header(), out
}

// stateAt is a prefix's keys at revision rev, read as root.
func stateAt(t *testing.T, cli *clientv3.Client, p string, rev int64) map[string]kv {
	t.Helper()
	rng, _ := prefix.RangeOf(p)
	resp, err := cli.Get(context.Background(), rng.Start, clientv3.WithRange(rng.End), clientv3.WithRev(rev))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]kv{}
	for _, k := range resp.Kvs {
		out[string(k.Key)] = kv{Value: string(k.Value), ModRev: k.ModRevision, HasLease: k.Lease != 0}
	}
	return out
}

func (en *env) backupOptions(t testing.TB, s *sharedEtcd, cluster, p string, f tlsFiles) prefix.BackupOptions {
	return prefix.BackupOptions{Cluster: cluster, Prefix: p, Etcd: s.etcdOptions(f), Location: en.loc, Credentials: en.cred, RetentionDays: 7, Logger: testLogger(t)}
}

func (en *env) restoreOptions(t testing.TB, s *sharedEtcd, key, attempt string) prefix.RestoreOptions {
	return prefix.RestoreOptions{Cluster: "a", Key: key, Prefix: prefixA, Attempt: attempt, Etcd: s.etcdOptions(s.a),
		Location: en.loc, Credentials: en.cred, WorkDir: t.TempDir(), Limits: prefix.Limits{MaxTxnOps: 16}, Logger: testLogger(t)}
}

// TestPrefixBackupRestore backs up tenant A of a shared etcd with A's own certificate, changes
// A and B, restores A, and checks A equals the snapshot while every key of B kept its value
// and its mod revision; then a re-run changes nothing and --undo brings back what the restore
// replaced.
func TestPrefixBackupRestore(t *testing.T) {
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			ctx := ctxT(t)
			en := newEnv(t)
			s := startSharedEtcd(t, v)
			root, a, b := s.client(t, s.root), s.client(t, s.a), s.client(t, s.b)
			writeTenant(t, a, prefixA, 300, 2000, "A1")
			writeTenant(t, b, prefixB, 200, 2000, "B1")

			res, err := prefix.Backup(ctx, en.backupOptions(t, s, "a", prefixA, s.a))
			if err != nil {
				t.Fatalf("prefix backup failed: %v", err)
			}
			h, snap := stored(t, en, res.Key)
			if diff := cmp.Diff(stateAt(t, root, prefixA, res.Revision), snap); diff != "" {
				t.Errorf("the stored snapshot is not A at revision %d (-want +got):\n%s", res.Revision, diff)
			}
			wantH := prefix.Header{Format: prefix.FormatV1, Prefix: prefixA, Cluster: "a", Revision: res.Revision, Purpose: prefix.PurposeBackup}
			gotH := prefix.Header{Format: h.Format, Prefix: h.Prefix, Cluster: h.Cluster, Revision: h.Revision, Purpose: h.Purpose}
			if diff := cmp.Diff(wantH, gotH); diff != "" {
				t.Errorf("header mismatch (-want +got):\n%s", diff)
			}
			if got, want := res.Keys, int64(len(snap)); got != want || res.Leases != 1 {
				t.Errorf("backup result counts %d keys and %d leases, want %d and 1", got, res.Leases, want)
			}

			change(t, a, prefixA, 300, "A2")
			change(t, b, prefixB, 200, "B2")
			beforeA := state(t, root, prefixA)
			beforeB := state(t, root, prefixB)

			ro := en.restoreOptions(t, s, res.Key, "attempt-1")
			rr, err := prefix.Restore(ctx, ro)
			if err != nil {
				t.Fatalf("prefix restore failed: %v", err)
			}
			if diff := cmp.Diff(values(snap), values(state(t, root, prefixA))); diff != "" {
				t.Errorf("A is not the snapshot after the restore (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(beforeB, state(t, root, prefixB)); diff != "" {
				t.Errorf("B changed during A's restore (-want +got):\n%s", diff)
			}
			if rr.PrefixState != prefix.StateRestored || rr.Put == 0 || rr.Deleted == 0 || rr.Unchanged == 0 || rr.RevisionAfter <= rr.RevisionBefore || rr.LeasesGranted != 1 || rr.PreRestoreReused {
				t.Errorf("unexpected restore result %+v", rr)
			}
			// The fresh lease carries what was left of the backed-up one.
			ev, err := root.Get(ctx, prefixA+"/events/ns/ev-000000")
			if err != nil || len(ev.Kvs) != 1 {
				t.Fatalf("event missing after the restore: %v", err)
			}
			ttl, err := root.TimeToLive(ctx, clientv3.LeaseID(ev.Kvs[0].Lease))
			if err != nil || ttl.TTL <= 0 || ttl.TTL > 3600 {
				t.Errorf("the restored event's lease has TTL %v (%v), want (0, 3600]", ttl, err)
			}

			again, err := prefix.Restore(ctx, ro)
			if err != nil {
				t.Fatalf("re-running the restore failed: %v", err)
			}
			if again.Put != 0 || again.Deleted != 0 || !again.PreRestoreReused || again.Unchanged != int64(len(snap)) {
				t.Errorf("a re-run must find nothing to do: %+v", again)
			}

			undo, err := prefix.Undo(ctx, ro)
			if err != nil {
				t.Fatalf("undo failed: %v", err)
			}
			if diff := cmp.Diff(values(beforeA), values(state(t, root, prefixA))); diff != "" {
				t.Errorf("A is not its pre-restore content after --undo (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(beforeB, state(t, root, prefixB)); diff != "" {
				t.Errorf("B changed during A's undo (-want +got):\n%s", diff)
			}
			t.Logf("restore: %+v; undo: %+v", rr.Stats, undo.Undo)
		})
	}
}

// TestPrefixRestoreFailsHalfway fails the restore after its second transaction: the restore
// converges A back to its pre-restore content.
func TestPrefixRestoreFailsHalfway(t *testing.T) {
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			ctx := ctxT(t)
			en := newEnv(t)
			s := startSharedEtcd(t, v)
			root, a, b := s.client(t, s.root), s.client(t, s.a), s.client(t, s.b)
			writeTenant(t, a, prefixA, 300, 500, "A1")
			writeTenant(t, b, prefixB, 100, 500, "B1")
			res, err := prefix.Backup(ctx, en.backupOptions(t, s, "a", prefixA, s.a))
			if err != nil {
				t.Fatal(err)
			}
			change(t, a, prefixA, 300, "A2")
			beforeA, beforeB := state(t, root, prefixA), state(t, root, prefixB)

			ro := en.restoreOptions(t, s, res.Key, "attempt-fail")
			fault := errors.New("injected fault")
			ro.AfterTxn = func(st prefix.Stats) error {
				if st.Transactions == 2 {
					return fault
				}
				return nil
			}
			rr, err := prefix.Restore(ctx, ro)
			if !errors.Is(err, fault) {
				t.Fatalf("restore error = %v, want the injected fault", err)
			}
			if rr.PrefixState != prefix.StateUndone || rr.Undo == nil {
				t.Errorf("the failed restore reports %q, want %q: %+v", rr.PrefixState, prefix.StateUndone, rr)
			}
			if diff := cmp.Diff(values(beforeA), values(state(t, root, prefixA))); diff != "" {
				t.Errorf("A is not its pre-restore content after the failure (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(beforeB, state(t, root, prefixB)); diff != "" {
				t.Errorf("B changed (-want +got):\n%s", diff)
			}
		})
	}
}

// helperEnv carries the options of a restore the test binary runs as a separate process and
// kills with SIGKILL after a given transaction.
const helperEnv = "KDC_PREFIX_RESTORE_HELPER"

type helperSpec struct {
	Cluster, Key, Prefix, Attempt, WorkDir string
	Etcd                                   prefix.EtcdOptions
	Limits                                 prefix.Limits
	Location                               snapshot.S3Location
	Credentials                            snapshot.Credentials
	KillAfter                              int
}

// TestHelperRestoreProcess is not a test: it is the restore process TestPrefixRestoreKilled
// kills half-way.
func TestHelperRestoreProcess(t *testing.T) {
	raw := os.Getenv(helperEnv)
	if raw == "" {
		t.Skip("runs only as TestPrefixRestoreKilled's child process")
	}
	var spec helperSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatal(err)
	}
	o := prefix.RestoreOptions{Cluster: spec.Cluster, Key: spec.Key, Prefix: spec.Prefix, Attempt: spec.Attempt, WorkDir: spec.WorkDir,
		Etcd: spec.Etcd, Limits: spec.Limits, Location: spec.Location, Credentials: spec.Credentials}
	o.AfterTxn = func(st prefix.Stats) error {
		if st.Transactions == spec.KillAfter {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
		return nil
	}
	_, err := prefix.Restore(context.Background(), o)
	t.Fatalf("the restore was to be killed, but returned: %v", err)
}

// TestPrefixRestoreKilled kills a restore process with SIGKILL after its third transaction;
// a re-run of the same attempt reuses the pre-restore copy and converges A to the snapshot,
// and --undo then brings back the content before the first run.
func TestPrefixRestoreKilled(t *testing.T) {
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			ctx := ctxT(t)
			en := newEnv(t)
			s := startSharedEtcd(t, v)
			root, a, b := s.client(t, s.root), s.client(t, s.a), s.client(t, s.b)
			writeTenant(t, a, prefixA, 300, 500, "A1")
			writeTenant(t, b, prefixB, 100, 500, "B1")
			res, err := prefix.Backup(ctx, en.backupOptions(t, s, "a", prefixA, s.a))
			if err != nil {
				t.Fatal(err)
			}
			_, snap := stored(t, en, res.Key)
			change(t, a, prefixA, 300, "A2")
			beforeA, beforeB := state(t, root, prefixA), state(t, root, prefixB)

			ro := en.restoreOptions(t, s, res.Key, "attempt-killed")
			spec, err := json.Marshal(helperSpec{Cluster: ro.Cluster, Key: ro.Key, Prefix: ro.Prefix, Attempt: ro.Attempt, Etcd: ro.Etcd,
				Location: ro.Location, Credentials: ro.Credentials, WorkDir: ro.WorkDir, Limits: ro.Limits, KillAfter: 3})
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperRestoreProcess$", "-test.v")
			cmd.Env = append(os.Environ(), helperEnv+"="+string(spec))
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("the restore process was not killed (%v):\n%s", err, out)
			}
			half := values(state(t, root, prefixA))
			if cmp.Equal(half, values(beforeA)) || cmp.Equal(half, values(snap)) {
				t.Fatalf("the killed restore left A unchanged or complete; the kill point is not half-way")
			}

			rr, err := prefix.Restore(ctx, ro)
			if err != nil {
				t.Fatalf("the re-run failed: %v", err)
			}
			if !rr.PreRestoreReused {
				t.Errorf("the re-run made a new pre-restore copy of a half-restored prefix")
			}
			if diff := cmp.Diff(values(snap), values(state(t, root, prefixA))); diff != "" {
				t.Errorf("A is not the snapshot after the re-run (-want +got):\n%s", diff)
			}
			if _, err := prefix.Undo(ctx, ro); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(values(beforeA), values(state(t, root, prefixA))); diff != "" {
				t.Errorf("--undo did not bring back A's content before the first run (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(beforeB, state(t, root, prefixB)); diff != "" {
				t.Errorf("B changed (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPrefixRefusals: a snapshot of another prefix is refused before anything is written, a
// prefix never covers a longer one sharing its leading string, and etcd itself refuses a write
// outside the prefix with the tenant's certificate.
func TestPrefixRefusals(t *testing.T) {
	ctx := ctxT(t)
	en := newEnv(t)
	s := startSharedEtcd(t, framework.EtcdVersion35)
	root, a, b := s.client(t, s.root), s.client(t, s.a), s.client(t, s.b)
	writeTenant(t, a, prefixA, 50, 100, "A1")
	writeTenant(t, b, prefixB, 50, 100, "B1")

	// B's snapshot, taken with B's certificate, restored as A (same cluster name "a" so only
	// the prefix differs).
	resB, err := prefix.Backup(ctx, en.backupOptions(t, s, "a", prefixB, s.b))
	if err != nil {
		t.Fatal(err)
	}
	_, snapB := stored(t, en, resB.Key)
	for k := range snapB {
		if rng, _ := prefix.RangeOf(prefixB); !rng.Contains([]byte(k)) {
			t.Errorf("B's snapshot holds %q", k)
		}
	}
	beforeA := state(t, root, prefixA)
	ro := en.restoreOptions(t, s, resB.Key, "attempt-foreign")
	rr, err := prefix.Restore(ctx, ro)
	if snapshot.CodeOf(err) != snapshot.ExitUsage || rr.PrefixState != prefix.StateUnchanged {
		t.Errorf("restoring B's snapshot as A: %v (%v), want a usage refusal with A unchanged", err, rr.PrefixState)
	}
	if diff := cmp.Diff(beforeA, state(t, root, prefixA)); diff != "" {
		t.Errorf("A changed (-want +got):\n%s", diff)
	}

	// A backup of /acme_a holds no /acme_ab key, even with root's certificate.
	resA, err := prefix.Backup(ctx, en.backupOptions(t, s, "a", prefixA, s.root))
	if err != nil {
		t.Fatal(err)
	}
	if _, snapA := stored(t, en, resA.Key); !cmp.Equal(values(snapA), values(beforeA)) {
		t.Errorf("a backup of %s with root's certificate is not exactly A", prefixA)
	}

	// etcd refuses A's user outside A's range, including the prefix that shares its leading string.
	for _, k := range []string{prefixB + "/pods/ns/x", prefixA + "0", "/registry/x"} {
		if _, err := a.Put(ctx, k, "x"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
			t.Errorf("put %q with A's certificate: %v, want permission denied", k, err)
		}
	}
	// And a backup of B with A's certificate fails with AccessDenied.
	if _, err := prefix.Backup(ctx, en.backupOptions(t, s, "b", prefixB, s.a)); snapshot.CodeOf(err) != snapshot.ExitAccessDenied {
		t.Errorf("backing up B with A's certificate: %v, want exit code %d", err, snapshot.ExitAccessDenied)
	}
}

// TestWholeEtcdPathRefusesPrefixSnapshots: verify (and so restore) of a prefix snapshot is a
// clear usage error, never an attempt to treat it as an etcd database.
func TestWholeEtcdPathRefusesPrefixSnapshots(t *testing.T) {
	ctx := ctxT(t)
	en := newEnv(t)
	s := startSharedEtcd(t, framework.EtcdVersion)
	writeTenant(t, s.client(t, s.a), prefixA, 20, 100, "A1")
	res, err := prefix.Backup(ctx, en.backupOptions(t, s, "a", prefixA, s.a))
	if err != nil {
		t.Fatal(err)
	}
	_, err = snapshot.Verify(ctx, snapshot.VerifyOptions{Key: res.Key, Location: en.loc, Credentials: en.cred})
	if snapshot.CodeOf(err) != snapshot.ExitUsage {
		t.Errorf("verify of a prefix snapshot: %v, want exit code %d", err, snapshot.ExitUsage)
	}
	v, err := prefix.Verify(ctx, prefix.VerifyOptions{Key: res.Key, Cluster: "a", Prefix: prefixA, Location: en.loc, Credentials: en.cred})
	if err != nil || v.Keys != res.Keys || v.SHA256 != res.SHA256 {
		t.Errorf("prefix verify: %+v, %v; want %d keys and SHA-256 %s", v, err, res.Keys, res.SHA256)
	}
}
