package datapath

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/wait"

	"kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/snapshot"
	"kube-dc.com/etcd-backup/snapshot/datadir"
	"kube-dc.com/etcd-backup/test/framework"
)

// oldDataDir creates a data directory and a previous generation with recognisable content, so
// a failed restore can be shown to leave both exactly as they were.
func oldDataDir(t *testing.T, parent string) (dataDir string, digest func() string) {
	t.Helper()
	dataDir = filepath.Join(parent, "default.etcd")
	for _, d := range []string{dataDir, dataDir + ".previous"} {
		if err := os.MkdirAll(filepath.Join(d, "member", "snap"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "member", "snap", "db"), []byte("old data of "+d), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dataDir, func() string {
		return dirDigest(t, dataDir) + "/" + dirDigest(t, dataDir+".previous")
	}
}

// TestCorruptObjects stores damaged copies of a good snapshot and checks that verify and
// restore reject each with the integrity exit code, leaving the data directory untouched.
func TestCorruptObjects(t *testing.T) {
	ctx := ctxT(t)
	en := newEnv(t)
	e := framework.StartEtcd(t, framework.EtcdOptions{})
	fill(t, e.Client(t), "/registry/leases/", 200, 1024)
	res, err := snapshot.Backup(ctx, en.backupOptions(t, e, "prod"))
	if err != nil {
		t.Fatalf("backup failed: %v", err)
	}
	get, err := en.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(res.ObjectKey)})
	if err != nil {
		t.Fatal(err)
	}
	good, _ := io.ReadAll(get.Body)
	get.Body.Close()
	head, err := en.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(res.ObjectKey)})
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte, at int) []byte {
		c := bytes.Clone(b)
		c[at] ^= 0x01
		return c
	}
	goodTag := "sha256=" + res.SHA256
	tests := []struct {
		name     string
		data     []byte
		tag      string
		checksum bool // upload with a fresh, matching S3 SHA-256 of the damaged data
	}{
		{"flipped byte in the database", flip(good, len(good)/2), goodTag, false},
		{"flipped byte in etcd's hash", flip(good, len(good)-3), goodTag, false},
		{"flipped byte with a fresh S3 checksum and no tag", flip(good, 4096*3+17), "", true},
		{"truncated mid-page", good[:len(good)-100], goodTag, false},
		{"truncated at a page boundary", append(bytes.Clone(good[:len(good)-32-4096]), good[len(good)-32:]...), goodTag, false},
		{"sha256 tag mismatch", good, "sha256=" + strings.Repeat("0", 64), false},
		{"not a snapshot", bytes.Repeat([]byte("x"), 4096+32), "", true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := v1alpha1.SnapshotKey("prod", time.Date(2020, 1, 1, 0, 0, i, 0, time.UTC))
			in := &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(tt.data), Metadata: head.Metadata}
			if tt.tag != "" {
				in.Tagging = aws.String(tt.tag)
			}
			if tt.checksum {
				in.ChecksumAlgorithm = types.ChecksumAlgorithmSha256
			}
			if _, err := en.s3.PutObject(ctx, in); err != nil {
				t.Fatal(err)
			}
			_, err := snapshot.Verify(ctx, snapshot.VerifyOptions{Key: key, Location: en.loc, Credentials: en.cred})
			if diff := cmp.Diff(snapshot.ExitIntegrity, snapshot.CodeOf(err)); diff != "" {
				t.Errorf("verify exit code mismatch (-want +got):\n%s (err %v)", diff, err)
			}
			parent := t.TempDir()
			dataDir, digest := oldDataDir(t, parent)
			before := digest()
			_, err = datadir.Restore(ctx, en.restoreOptions(t, key, dataDir, 2380))
			if diff := cmp.Diff(snapshot.ExitIntegrity, snapshot.CodeOf(err)); diff != "" {
				t.Errorf("restore exit code mismatch (-want +got):\n%s (err %v)", diff, err)
			}
			if err != nil && !strings.Contains(err.Error(), key) {
				t.Errorf("error %q does not name the object %s", err, key)
			}
			if diff := cmp.Diff(before, digest()); diff != "" {
				t.Errorf("data directory changed by a failed restore (-want +got):\n%s", diff)
			}
			if stale, _ := filepath.Glob(filepath.Join(parent, ".kdc-restore-*")); len(stale) > 0 {
				t.Errorf("staging directories left behind: %v", stale)
			}
		})
	}
}

// TestFailureClasses checks each failure class gets its exit code and a message naming the
// object, and that a failed restore leaves the data directory untouched.
func TestFailureClasses(t *testing.T) {
	ctx := ctxT(t)
	en := newEnv(t)
	e := framework.StartEtcd(t, framework.EtcdOptions{})
	fill(t, e.Client(t), "/registry/events/", 50, 256)
	good, err := snapshot.Backup(ctx, en.backupOptions(t, e, "prod"))
	if err != nil {
		t.Fatalf("backup failed: %v", err)
	}
	deadPort, _ := framework.FreePort()
	missing := v1alpha1.SnapshotKey("prod", time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC))
	wrongSecret := en.cred
	wrongSecret.SecretAccessKey = "not-the-secret"
	wrongKeyID := en.cred
	wrongKeyID.AccessKeyID = "nobody"

	type read struct {
		key  string
		loc  snapshot.S3Location
		cred snapshot.Credentials
	}
	tests := []struct {
		name     string
		r        read
		wantCode snapshot.ExitCode
	}{
		{"missing key", read{missing, en.loc, en.cred}, snapshot.ExitObjectMissing},
		{"missing bucket", read{good.Key, snapshot.S3Location{Endpoint: en.loc.Endpoint, Bucket: "no-such-bucket"}, en.cred}, snapshot.ExitBucketMissing},
		{"wrong secret", read{good.Key, en.loc, wrongSecret}, snapshot.ExitAccessDenied},
		{"unknown access key", read{good.Key, en.loc, wrongKeyID}, snapshot.ExitAccessDenied},
		{"unreachable endpoint", read{good.Key, snapshot.S3Location{Endpoint: "http://127.0.0.1:" + itoa(deadPort), Bucket: bucket}, en.cred}, snapshot.ExitS3Unreachable},
		{"malformed key", read{"prod/../prod-20200101T000000Z.db", en.loc, en.cred}, snapshot.ExitUsage},
		{"foreign key", read{"dev/dev-20200101T000000Z.db", en.loc, en.cred}, snapshot.ExitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := snapshot.Verify(ctx, snapshot.VerifyOptions{Key: tt.r.key, Cluster: "prod", Location: tt.r.loc, Credentials: tt.r.cred})
			if diff := cmp.Diff(tt.wantCode, snapshot.CodeOf(err)); diff != "" {
				t.Errorf("verify exit code mismatch (-want +got):\n%s (err %v)", diff, err)
			}
			parent := t.TempDir()
			dataDir, digest := oldDataDir(t, parent)
			before := digest()
			o := en.restoreOptions(t, tt.r.key, dataDir, 2380)
			o.Cluster, o.Location, o.Credentials = "prod", tt.r.loc, tt.r.cred
			_, err = datadir.Restore(ctx, o)
			if diff := cmp.Diff(tt.wantCode, snapshot.CodeOf(err)); diff != "" {
				t.Errorf("restore exit code mismatch (-want +got):\n%s (err %v)", diff, err)
			}
			if err != nil && tt.wantCode != snapshot.ExitUsage && !strings.Contains(err.Error(), tt.r.key) && !strings.Contains(err.Error(), tt.r.loc.Bucket) {
				t.Errorf("error %q names neither the object nor the bucket", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			if diff := cmp.Diff(before, digest()); diff != "" {
				t.Errorf("data directory changed by a failed restore (-want +got):\n%s", diff)
			}
		})
	}

	backups := []struct {
		name     string
		mod      func(*snapshot.BackupOptions)
		wantCode snapshot.ExitCode
	}{
		{"snapshot too small", func(o *snapshot.BackupOptions) { o.MinSize = 1 << 30 }, snapshot.ExitSnapshotTooSmall},
		{"etcd unreachable", func(o *snapshot.BackupOptions) {
			o.Endpoints = []string{"https://127.0.0.1:" + itoa(deadPort)}
			o.DialTimeout = 2 * time.Second
		}, snapshot.ExitEtcdUnavailable},
		{"wrong etcd CA", func(o *snapshot.BackupOptions) { o.CACert = o.Cert; o.DialTimeout = 2 * time.Second }, snapshot.ExitEtcdUnavailable},
		{"missing TLS files", func(o *snapshot.BackupOptions) { o.Key = "/nonexistent/tls.key" }, snapshot.ExitEtcdUnavailable},
		{"missing bucket", func(o *snapshot.BackupOptions) { o.Location.Bucket = "no-such-bucket" }, snapshot.ExitBucketMissing},
		{"wrong secret", func(o *snapshot.BackupOptions) { o.Credentials = wrongSecret }, snapshot.ExitAccessDenied},
		{"unreachable S3", func(o *snapshot.BackupOptions) { o.Location.Endpoint = "http://127.0.0.1:" + itoa(deadPort) }, snapshot.ExitS3Unreachable},
		{"bad part size", func(o *snapshot.BackupOptions) { o.PartSize = 1 << 20 }, snapshot.ExitUsage},
	}
	for _, tt := range backups {
		t.Run("backup "+tt.name, func(t *testing.T) {
			o := en.backupOptions(t, e, "fail")
			tt.mod(&o)
			_, err := snapshot.Backup(ctx, o)
			if diff := cmp.Diff(tt.wantCode, snapshot.CodeOf(err)); diff != "" {
				t.Errorf("backup exit code mismatch (-want +got):\n%s (err %v)", diff, err)
			}
			for _, k := range en.objectKeys(t) {
				if strings.HasPrefix(k, "fail/") {
					t.Errorf("object %s is visible after a failed backup", k)
				}
			}
		})
	}
}

// TestInterruptedUploads kills MinIO in the middle of a multipart upload, and separately
// cancels a backup in the middle of one (as SIGTERM does): the backup fails and no object, not
// even a partial one, is visible afterwards; a cancelled upload is aborted. A gate proxy in front
// of MinIO holds the upload after its first part, so the interruption hits mid-upload every time.
func TestInterruptedUploads(t *testing.T) {
	en := newEnv(t)
	e := framework.StartEtcd(t, framework.EtcdOptions{})
	fill(t, e.Client(t), "/registry/secrets/", 300, 100<<10) // ~30 MB

	run := func(t *testing.T, ctx context.Context, cluster string, interrupt func()) error {
		proxy := newGateProxy(t, strings.TrimPrefix(en.minio.Endpoint, "http://"), 7<<20)
		o := en.backupOptions(t, e, cluster)
		o.Location.Endpoint = "http://" + proxy.Addr
		o.PartSize, o.Concurrency = snapshot.MinPartSize, 1
		at := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
		o.Now = func() time.Time { return at }
		done := make(chan error, 1)
		go func() {
			_, err := snapshot.Backup(ctx, o)
			done <- err
		}()
		select {
		case <-proxy.Reached():
		case err := <-done:
			t.Fatalf("backup ended before it sent 7 MiB: %v", err)
		}
		if n := multipartUploads(t, en, v1alpha1.SnapshotKey(cluster, at)); n != 1 {
			t.Fatalf("want one multipart upload in progress, got %d", n)
		}
		interrupt()
		proxy.Release()
		return <-done
	}

	t.Run("kill MinIO", func(t *testing.T) {
		err := run(t, ctxT(t), "killed", func() {
			if err := en.minio.Kill(); err != nil {
				t.Fatal(err)
			}
		})
		if err == nil {
			t.Fatal("backup succeeded although MinIO was killed")
		}
		t.Logf("backup failed as expected: %v", err)
		if diff := cmp.Diff(snapshot.ExitS3Unreachable, snapshot.CodeOf(err)); diff != "" {
			t.Errorf("exit code mismatch (-want +got):\n%s", diff)
		}
		if err := en.minio.Restart(); err != nil {
			t.Fatal(err)
		}
		for _, k := range en.objectKeys(t) {
			if strings.HasPrefix(k, "killed/") {
				t.Errorf("object %s is visible after MinIO was killed mid-upload", k)
			}
		}
	})

	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctxT(t))
		err := run(t, ctx, "cancelled", cancel)
		if err == nil {
			t.Fatal("backup succeeded although it was cancelled")
		}
		t.Logf("backup failed as expected: %v", err)
		for _, k := range en.objectKeys(t) {
			if strings.HasPrefix(k, "cancelled/") {
				t.Errorf("object %s is visible after a cancelled backup", k)
			}
		}
		key := v1alpha1.SnapshotKey("cancelled", time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC))
		if n := multipartUploads(t, en, key); n != 0 {
			t.Errorf("the cancelled multipart upload of %s was not aborted: %d uploads remain", key, n)
		}
	})
}

// TestInterruptedFirstPart interrupts a backup while it reads the first part from etcd: the
// multipart upload, created in parallel because etcd announced more than one part, is aborted
// and nothing becomes visible.
func TestInterruptedFirstPart(t *testing.T) {
	en := newEnv(t)
	e := framework.StartEtcd(t, framework.EtcdOptions{})
	fill(t, e.Client(t), "/registry/secrets/", 150, 100<<10) // ~15 MB: several parts
	// etcd's bytes stop after 2 MiB, within the first 5 MiB part.
	etcdProxy := newServerGateProxy(t, strings.TrimPrefix(e.ClientURL, "https://"), 2<<20)
	ctx, cancel := context.WithCancel(ctxT(t))
	o := en.backupOptions(t, e, "first-part")
	o.Endpoints = []string{"https://" + etcdProxy.Addr}
	o.PartSize = snapshot.MinPartSize
	at := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	o.Now = func() time.Time { return at }
	key := v1alpha1.SnapshotKey("first-part", at)
	done := make(chan error, 1)
	go func() {
		_, err := snapshot.Backup(ctx, o)
		done <- err
	}()
	select {
	case <-etcdProxy.Reached():
	case err := <-done:
		t.Fatalf("backup ended before etcd sent 2 MiB: %v", err)
	}
	if err := wait.PollUntilContextTimeout(ctxT(t), 10*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return multipartUploads(t, en, key) == 1, nil
	}); err != nil {
		t.Fatalf("the multipart upload was not created while the first part was read: %v", err)
	}
	cancel()
	etcdProxy.Release()
	err := <-done
	if err == nil {
		t.Fatal("backup succeeded although it was cancelled")
	}
	t.Logf("backup failed as expected: %v", err)
	for _, k := range en.objectKeys(t) {
		if strings.HasPrefix(k, "first-part/") {
			t.Errorf("object %s is visible after a cancelled backup", k)
		}
	}
	if n := multipartUploads(t, en, key); n != 0 {
		t.Errorf("the multipart upload of %s was not aborted: %d uploads remain", key, n)
	}
}

// multipartUploads counts the multipart uploads in progress for key (MinIO lists them only for
// an exact object key).
func multipartUploads(t *testing.T, en *env, key string) int {
	t.Helper()
	out, err := en.s3.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket), Prefix: aws.String(key)})
	if err != nil {
		t.Fatalf("failed to list multipart uploads: %v", err)
	}
	return len(out.Uploads)
}

// TestDiskFull restores onto a data volume too small for the snapshot (a tmpfs): the restore
// exits with the disk-full code and the data directory is untouched.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	ctx := ctxT(t)
	en := newEnv(t)
	e := framework.StartEtcd(t, framework.EtcdOptions{})
	fill(t, e.Client(t), "/registry/secrets/", 60, 100<<10) // ~6 MB
	res, err := snapshot.Backup(ctx, en.backupOptions(t, e, "prod"))
	if err != nil {
		t.Fatalf("backup failed: %v", err)
	}
	vol := filepath.Join(t.TempDir(), "vol")
	if err := os.Mkdir(vol, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", vol).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (%v: %s)", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", vol).CombinedOutput(); err != nil {
			t.Errorf("failed to unmount %s: %v: %s", vol, err, out)
		}
	})
	dataDir, digest := oldDataDir(t, vol)
	before := digest()
	_, err = datadir.Restore(ctx, en.restoreOptions(t, res.Key, dataDir, 2380))
	if diff := cmp.Diff(snapshot.ExitDiskFull, snapshot.CodeOf(err)); diff != "" {
		t.Errorf("exit code mismatch (-want +got):\n%s (err %v)", diff, err)
	}
	// The message says how much space the restore needs (the 6-7 MiB snapshot twice, etcd's WAL)
	// and how much the volume has.
	if msg := fmt.Sprint(err); !regexp.MustCompile(`needs about 1[23][0-9] MiB free next to the data directory.*: the snapshot's [67] MiB twice \(the download and etcdutl's copy\) and 122 MiB of etcd's preallocated WAL segments; [0-8] MiB is free$`).MatchString(msg) {
		t.Errorf("the disk-full message does not say how much space the restore needs and has: %s", msg)
	}
	if diff := cmp.Diff(before, digest()); diff != "" {
		t.Errorf("data directory changed by a failed restore (-want +got):\n%s", diff)
	}
	if stale, _ := filepath.Glob(filepath.Join(vol, ".kdc-restore-*")); len(stale) > 0 {
		t.Errorf("staging directories left behind: %v", stale)
	}
}

// TestLifecycleMerge checks the retention rule is added next to the bucket's other rules,
// left alone when already right, and updated in place.
func TestLifecycleMerge(t *testing.T) {
	ctx := ctxT(t)
	en := newEnv(t)
	foreign := types.LifecycleRule{
		ID:         aws.String("logs"),
		Status:     types.ExpirationStatusEnabled,
		Filter:     &types.LifecycleRuleFilter{Prefix: aws.String("logs/")},
		Expiration: &types.LifecycleExpiration{Days: aws.Int32(3)},
	}
	if _, err := en.s3.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{
		Bucket: aws.String(bucket), LifecycleConfiguration: &types.BucketLifecycleConfiguration{Rules: []types.LifecycleRule{foreign}},
	}); err != nil {
		t.Fatal(err)
	}
	rules := func() map[string]string {
		out, err := en.s3.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: aws.String(bucket)})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, r := range out.Rules {
			m[aws.ToString(r.ID)] = aws.ToString(r.Filter.Prefix) + " " + itoa(int(aws.ToInt32(r.Expiration.Days)))
		}
		return m
	}
	steps := []struct {
		cluster   string
		days      int32
		want      string
		wantRules map[string]string
	}{
		{"prod", 7, snapshot.LifecycleApplied, map[string]string{"logs": "logs/ 3", "kdc-etcd-backup-prod": "tenants/prod/ 7"}},
		{"prod", 7, snapshot.LifecycleUnchanged, map[string]string{"logs": "logs/ 3", "kdc-etcd-backup-prod": "tenants/prod/ 7"}},
		{"dev", 14, snapshot.LifecycleApplied, map[string]string{"logs": "logs/ 3", "kdc-etcd-backup-prod": "tenants/prod/ 7", "kdc-etcd-backup-dev": "tenants/dev/ 14"}},
		{"prod", 30, snapshot.LifecycleApplied, map[string]string{"logs": "logs/ 3", "kdc-etcd-backup-prod": "tenants/prod/ 30", "kdc-etcd-backup-dev": "tenants/dev/ 14"}},
	}
	loc := en.loc
	loc.Prefix = "tenants"
	c := snapshot.NewS3Client(loc, en.cred)
	for i, s := range steps {
		got, err := snapshot.ApplyLifecycle(ctx, c, loc, s.cluster, s.days)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Errorf("step %d outcome mismatch (-want +got):\n%s", i, diff)
		}
		if diff := cmp.Diff(s.wantRules, rules()); diff != "" {
			t.Errorf("step %d rules mismatch (-want +got):\n%s", i, diff)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
