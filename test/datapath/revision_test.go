package datapath

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kube-dc.com/etcd-backup/jobspec"
	"kube-dc.com/etcd-backup/snapshot"
	"kube-dc.com/etcd-backup/snapshot/datadir"
	"kube-dc.com/etcd-backup/test/framework"
)

// TestRevisionOnlyGrows restores an old snapshot onto data whose revision is far above it, twice
// in a row, then onto a lost and a corrupt data directory, on etcd v3.5, v3.6 and v3.7: every
// restored revision is above every revision etcd served before, by the bump's margin.
func TestRevisionOnlyGrows(t *testing.T) {
	en := newEnv(t)
	for _, v := range []string{framework.EtcdVersion35, framework.EtcdVersion36, framework.EtcdVersion} {
		t.Run(v, func(t *testing.T) {
			ctx := ctxT(t)
			peerPort, err := framework.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			cluster := "rev-" + strings.NewReplacer("v", "", ".", "-").Replace(v)
			e := framework.StartEtcd(t, framework.EtcdOptions{Version: v, PeerPort: peerPort})
			fill(t, e.Client(t), "/registry/configmaps/", 50, 256)
			// Keys have a one-second resolution: the two backups get times a day apart.
			day := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
			bo := en.backupOptions(t, e, cluster)
			bo.Now = func() time.Time { return day }
			old, err := snapshot.Backup(ctx, bo)
			if err != nil {
				t.Fatal(err)
			}
			_, oldRev := contents(t, e.Client(t))
			if err := e.Stop(); err != nil {
				t.Fatal(err)
			}

			// restore restores the old snapshot and starts etcd on it, which takes one write;
			// it returns the revision etcd served last, and the restore's result.
			restore := func(step string) (int64, *jobspec.Result) {
				t.Helper()
				o := en.restoreOptions(t, old.Key, e.DataDir, peerPort)
				o.TargetVersion = v
				res, err := datadir.Restore(ctx, o)
				if err != nil {
					t.Fatalf("%s: restore failed: %v", step, err)
				}
				r := framework.StartEtcd(t, framework.EtcdOptions{Version: v, DataDir: e.DataDir, PeerPort: peerPort, Certs: e.Certs})
				cli := r.Client(t)
				if _, gotRev := contents(t, cli); gotRev != res.RestoredRevision {
					t.Errorf("%s: etcd serves revision %d, the restore reported %d", step, gotRev, res.RestoredRevision)
				}
				put, err := cli.Put(ctx, "/registry/configmaps/after-"+strings.ReplaceAll(step, " ", "-"), "x")
				if err != nil {
					t.Fatalf("%s: restored etcd does not take writes: %v", step, err)
				}
				if err := r.Stop(); err != nil {
					t.Fatal(err)
				}
				t.Logf("%s: %s; marks %+v", step, res.RestoreRevision().Describe(), res.Marks)
				return put.Header.Revision, res
			}
			checkAbove := func(step string, res *jobspec.Result, seen int64) {
				t.Helper()
				if res.Revision != oldRev {
					t.Errorf("%s: snapshot revision %d, want %d", step, res.Revision, oldRev)
				}
				if want := seen + jobspec.DefaultBumpRevision; res.RestoredRevision != want {
					t.Errorf("%s: restored revision %d, want %d: the highest revision seen before (%d) + the margin", step, res.RestoredRevision, want, seen)
				}
			}

			// The first restore lifts the data far above the snapshot.
			seen1, res := restore("first restore")
			checkAbove("first restore", res, oldRev)
			// Restoring the same old snapshot again must move past what the first one served.
			seen2, res := restore("second restore")
			checkAbove("second restore", res, seen1)
			if diff := cmp.Diff(seen1, res.Marks.Data); diff != "" {
				t.Errorf("second restore: the replaced data's revision (-want +got):\n%s", diff)
			}

			// A backup of the restored etcd records its revision in S3; with the data directory
			// lost, that record is the mark the restore moves past.
			r := framework.StartEtcd(t, framework.EtcdOptions{Version: v, DataDir: e.DataDir, PeerPort: peerPort, Certs: e.Certs})
			bo = en.backupOptions(t, r, cluster)
			bo.Now = func() time.Time { return day.Add(24 * time.Hour) }
			newer, err := snapshot.Backup(ctx, bo)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Stop(); err != nil {
				t.Fatal(err)
			}
			if newer.Revision != seen2 {
				t.Fatalf("newest backup recorded revision %d, want %d", newer.Revision, seen2)
			}
			for _, path := range []string{e.DataDir, datadir.PreviousDataDir(e.DataDir)} {
				if err := os.RemoveAll(path); err != nil {
					t.Fatal(err)
				}
			}
			_, res = restore("lost data")
			checkAbove("lost data", res, seen2)
			if diff := cmp.Diff(newer.ObjectKey, res.Marks.BackupKey); diff != "" {
				t.Errorf("lost data: the backup the mark comes from (-want +got):\n%s", diff)
			}

			// A corrupt database is reported and the other marks still hold.
			db := filepath.Join(e.DataDir, "member", "snap", "db")
			if err := os.WriteFile(db, []byte(strings.Repeat("not a bolt database ", 1000)), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(datadir.PreviousDataDir(e.DataDir)); err != nil {
				t.Fatal(err)
			}
			_, res = restore("corrupt data")
			checkAbove("corrupt data", res, seen2)
			if res.Marks.Data != 0 || res.Marks.DataError == "" {
				t.Errorf("corrupt data: marks %+v, want no data revision and its error", res.Marks)
			}
		})
	}
}
