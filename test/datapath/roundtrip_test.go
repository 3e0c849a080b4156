package datapath

import (
	"errors"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/google/go-cmp/cmp"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"kube-dc.com/etcd-backup/jobspec"
	"kube-dc.com/etcd-backup/snapshot"
	"kube-dc.com/etcd-backup/snapshot/datadir"
	"kube-dc.com/etcd-backup/test/framework"
)

// TestBackupRestoreRollback writes data to etcd v3.7, backs it up, mutates etcd, restores the
// backup into etcd's data directory, starts etcd on it and reads the snapshot's data back with
// the revision bumped, then rolls back and reads the mutated data again.
func TestBackupRestoreRollback(t *testing.T) {
	ctx := ctxT(t)
	en := newEnv(t)
	peerPort, err := framework.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	e := framework.StartEtcd(t, framework.EtcdOptions{Version: framework.EtcdVersion, PeerPort: peerPort})
	cli := e.Client(t)
	fill(t, cli, "/registry/pods/", 300, 1024)
	want, rev := contents(t, cli)

	res, err := snapshot.Backup(ctx, en.backupOptions(t, e, "prod"))
	if err != nil {
		t.Fatalf("backup failed: %v", err)
	}
	if !regexp.MustCompile(`^prod/prod-\d{8}T\d{6}Z\.db$`).MatchString(res.Key) {
		t.Errorf("key %q is not prod/prod-<ts>.db", res.Key)
	}
	gotRes := struct {
		ObjectKey, Bucket, Lifecycle, EtcdVersion string
		Revision                                  int64
		Parts                                     int
	}{res.ObjectKey, res.Bucket, res.Lifecycle, res.EtcdVersion, res.Revision, res.Parts}
	wantRes := gotRes
	wantRes.ObjectKey, wantRes.Bucket, wantRes.Lifecycle, wantRes.EtcdVersion, wantRes.Revision, wantRes.Parts = res.Key, bucket, snapshot.LifecycleApplied, strings.TrimPrefix(framework.EtcdVersion, "v"), rev, 1
	if diff := cmp.Diff(wantRes, gotRes); diff != "" {
		t.Errorf("backup result mismatch (-want +got):\n%s", diff)
	}

	head, err := en.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(res.ObjectKey), ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		t.Fatal(err)
	}
	wantMeta := map[string]string{
		snapshot.MetaEtcdRevision:       strconv.FormatInt(rev, 10),
		snapshot.MetaEtcdVersion:        wantRes.EtcdVersion,
		snapshot.MetaEtcdStorageVersion: res.StorageVersion,
		snapshot.MetaEtcdDBSize:         strconv.FormatInt(res.Size-32, 10),
		snapshot.MetaPartSize:           strconv.FormatInt(snapshot.DefaultPartSize, 10),
		snapshot.MetaCluster:            "prod",
		snapshot.MetaCreatedBy:          "kdc-etcd-backup",
	}
	if diff := cmp.Diff(wantMeta, head.Metadata); diff != "" {
		t.Errorf("object metadata mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(res.Size, aws.ToInt64(head.ContentLength)); diff != "" {
		t.Errorf("object size mismatch (-want +got):\n%s", diff)
	}
	if aws.ToString(head.ChecksumSHA256) == "" {
		t.Errorf("object has no SHA-256 checksum")
	}
	tags, err := en.s3.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: aws.String(bucket), Key: aws.String(res.ObjectKey)})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(res.SHA256, aws.ToString(tags.TagSet[0].Value)); diff != "" || len(tags.TagSet) != 1 {
		t.Errorf("sha256 tag mismatch (-want +got):\n%s", diff)
	}

	ver, err := snapshot.Verify(ctx, snapshot.VerifyOptions{Key: res.Key, Cluster: "prod", Location: en.loc, Credentials: en.cred})
	if err != nil {
		t.Fatalf("verify failed: %v", err)
	}
	if diff := cmp.Diff(res.SHA256, ver.SHA256); diff != "" {
		t.Errorf("verify sha256 mismatch (-want +got):\n%s", diff)
	}

	// Mutate after the backup.
	if _, err := cli.Put(ctx, "/registry/pods/after-backup", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, "/registry/pods/000001"); err != nil {
		t.Fatal(err)
	}
	mutated, mutatedRev := contents(t, cli)
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}

	rres, err := datadir.Restore(ctx, en.restoreOptions(t, res.Key, e.DataDir, peerPort))
	if err != nil {
		t.Fatalf("restore failed: %v", err)
	}
	// The replaced data is above the snapshot: the restore moves past it, not past the snapshot.
	gotR := []any{rres.Revision, rres.RevisionBefore, rres.BumpRevision, rres.RestoredRevision, rres.Marks.Data, rres.Marks.Backup, rres.SHA256, rres.PreviousDataDir}
	wantR := []any{rev, mutatedRev, mutatedRev - rev + jobspec.DefaultBumpRevision, mutatedRev + jobspec.DefaultBumpRevision, mutatedRev, rev, res.SHA256, e.DataDir + ".previous"}
	if diff := cmp.Diff(wantR, gotR); diff != "" {
		t.Errorf("restore result [revision revisionBefore bumpRevision restoredRevision marks.data marks.backup sha256 previousDataDir] mismatch (-want +got):\n%s", diff)
	}
	if stale, _ := filepath.Glob(filepath.Join(filepath.Dir(e.DataDir), ".kdc-restore-*")); len(stale) > 0 {
		t.Errorf("staging directories left behind: %v", stale)
	}

	restored := framework.StartEtcd(t, framework.EtcdOptions{Version: framework.EtcdVersion, DataDir: e.DataDir, PeerPort: peerPort, Certs: e.Certs})
	rcli := restored.Client(t)
	got, gotRev := contents(t, rcli)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("restored keys mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(mutatedRev+jobspec.DefaultBumpRevision, gotRev); diff != "" {
		t.Errorf("restored revision mismatch (-want +got):\n%s", diff)
	}
	if _, err := rcli.Get(ctx, "/registry/pods/000001", clientv3.WithRev(rev)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("reading the snapshot's revision %d: got %v, want %v (mark-compacted)", rev, err, rpctypes.ErrCompacted)
	}
	if _, err := rcli.Put(ctx, "/registry/pods/after-restore", "y"); err != nil {
		t.Errorf("restored etcd does not take writes: %v", err)
	}
	if err := restored.Stop(); err != nil {
		t.Fatal(err)
	}

	if _, err := datadir.Rollback(ctx, datadir.RollbackOptions{DataDir: e.DataDir}); err != nil {
		t.Fatalf("rollback failed: %v", err)
	}
	back := framework.StartEtcd(t, framework.EtcdOptions{Version: framework.EtcdVersion, DataDir: e.DataDir, PeerPort: peerPort, Certs: e.Certs})
	gotBack, _ := contents(t, back.Client(t))
	if diff := cmp.Diff(mutated, gotBack); diff != "" {
		t.Errorf("rolled-back keys mismatch (-want +got):\n%s", diff)
	}
}

// TestCompatibility backs up etcd v3.5, v3.6 and v3.7, restores each snapshot with this
// binary's etcdutl library and starts each etcd version on the result.
func TestCompatibility(t *testing.T) {
	en := newEnv(t)
	versions := []string{framework.EtcdVersion35, framework.EtcdVersion36, framework.EtcdVersion}
	for _, src := range versions {
		t.Run("from "+src, func(t *testing.T) {
			ctx := ctxT(t)
			e := framework.StartEtcd(t, framework.EtcdOptions{Version: src})
			cli := e.Client(t)
			fill(t, cli, "/registry/configmaps/", 100, 512)
			if _, err := cli.Delete(ctx, "/registry/configmaps/000007"); err != nil {
				t.Fatal(err)
			}
			want, rev := contents(t, cli)
			cluster := "compat-" + strings.NewReplacer("v", "", ".", "-").Replace(src)
			res, err := snapshot.Backup(ctx, en.backupOptions(t, e, cluster))
			if err != nil {
				t.Fatalf("backup of etcd %s failed: %v", src, err)
			}
			if diff := cmp.Diff(strings.TrimPrefix(src, "v"), res.EtcdVersion); diff != "" {
				t.Errorf("etcdVersion mismatch (-want +got):\n%s", diff)
			}
			for _, dst := range versions {
				t.Run("to "+dst, func(t *testing.T) {
					peerPort, err := framework.FreePort()
					if err != nil {
						t.Fatal(err)
					}
					dataDir := filepath.Join(t.TempDir(), "default.etcd")
					o := en.restoreOptions(t, res.Key, dataDir, peerPort)
					o.TargetVersion = dst
					if _, err := datadir.Restore(ctx, o); err != nil {
						t.Fatalf("restore failed: %v", err)
					}
					r := framework.StartEtcd(t, framework.EtcdOptions{Version: dst, DataDir: dataDir, PeerPort: peerPort, Certs: e.Certs})
					got, gotRev := contents(t, r.Client(t))
					if diff := cmp.Diff(want, got); diff != "" {
						t.Errorf("keys mismatch (-want +got):\n%s", diff)
					}
					if diff := cmp.Diff(rev+jobspec.DefaultBumpRevision, gotRev); diff != "" {
						t.Errorf("revision mismatch (-want +got):\n%s", diff)
					}
				})
			}
		})
	}
}

// TestMultipartBackup backs up a database larger than several parts and checks the composite
// checksum, verify and restore.
func TestMultipartBackup(t *testing.T) {
	ctx := ctxT(t)
	en := newEnv(t)
	e := framework.StartEtcd(t, framework.EtcdOptions{Version: framework.EtcdVersion35})
	cli := e.Client(t)
	fill(t, cli, "/registry/secrets/", 130, 100<<10) // ~13 MB
	want, _ := contents(t, cli)
	o := en.backupOptions(t, e, "big")
	o.PartSize = snapshot.MinPartSize
	res, err := snapshot.Backup(ctx, o)
	if err != nil {
		t.Fatalf("backup failed: %v", err)
	}
	wantParts := int((res.Size + o.PartSize - 1) / o.PartSize)
	if wantParts < 3 || res.Parts != wantParts || !strings.HasSuffix(res.S3ChecksumSHA256, "-"+strconv.Itoa(wantParts)) {
		t.Errorf("got %d parts with checksum %q for %d bytes; want %d parts and a composite checksum", res.Parts, res.S3ChecksumSHA256, res.Size, wantParts)
	}
	if _, err := snapshot.Verify(ctx, snapshot.VerifyOptions{Key: res.Key, Location: en.loc, Credentials: en.cred}); err != nil {
		t.Fatalf("verify failed: %v", err)
	}
	peerPort, _ := framework.FreePort()
	dataDir := filepath.Join(t.TempDir(), "default.etcd")
	if _, err := datadir.Restore(ctx, en.restoreOptions(t, res.Key, dataDir, peerPort)); err != nil {
		t.Fatalf("restore failed: %v", err)
	}
	r := framework.StartEtcd(t, framework.EtcdOptions{Version: framework.EtcdVersion35, DataDir: dataDir, PeerPort: peerPort, Certs: e.Certs})
	got, _ := contents(t, r.Client(t))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("keys mismatch (-want +got):\n%s", diff)
	}
}
