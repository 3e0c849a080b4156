package datapath

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-cmp/cmp"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/snapshot"
	"kube-dc.com/etcd-backup/test/framework"
)

// noLifecycleS3 is an HTTP proxy on 127.0.0.1 in front of the real MinIO that answers every
// bucket lifecycle request with 501 NotImplemented, as S3 backends without lifecycle rules do;
// everything else reaches MinIO unchanged (the Host header too, so signatures still verify).
func noLifecycleS3(t *testing.T, target string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.URL.Query()["lifecycle"]; ok {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusNotImplemented)
			_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code><Message>A header you provided implies functionality that is not implemented</Message></Error>`))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestRetentionFallback: on a backend without lifecycle rules the backup itself deletes the
// cluster's snapshots older than retentionDays, and nothing else.
func TestRetentionFallback(t *testing.T) {
	ctx := ctxT(t)
	en := newEnv(t)
	peerPort, err := framework.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	e := framework.StartEtcd(t, framework.EtcdOptions{Version: framework.EtcdVersion, PeerPort: peerPort})
	fill(t, e.Client(t), "/registry/configmaps/", 100, 1024)

	now := time.Now().UTC().Truncate(time.Second)
	old := func(days int) string {
		return kdcv1alpha1.SnapshotKey("prod", now.Add(-time.Duration(days)*24*time.Hour))
	}
	kept := []string{old(2), old(6), "prod/notes.txt", kdcv1alpha1.SnapshotKey("dev", now.Add(-30*24*time.Hour))}
	expired := []string{old(8), old(30)}
	for _, k := range append(append([]string{}, kept...), expired...) {
		if _, err := en.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(k), Body: bytes.NewReader([]byte("x"))}); err != nil {
			t.Fatal(err)
		}
	}

	opts := en.backupOptions(t, e, "prod")
	opts.Location.Endpoint = noLifecycleS3(t, en.minio.Endpoint)
	opts.RetentionDays = 7
	opts.Now = func() time.Time { return now }
	res, err := snapshot.Backup(ctx, opts)
	if err != nil {
		t.Fatalf("backup failed: %v", err)
	}
	if diff := cmp.Diff([]any{snapshot.LifecyclePruned, 2, ""}, []any{res.Lifecycle, res.Pruned, res.LifecycleError}); diff != "" {
		t.Errorf("lifecycle, pruned, lifecycleError mismatch (-want +got):\n%s", diff)
	}
	want := append(append([]string{}, kept...), res.Key)
	if diff := cmp.Diff(slices.Sorted(slices.Values(want)), slices.Sorted(slices.Values(en.objectKeys(t)))); diff != "" {
		t.Errorf("objects left in the bucket (-want +got):\n%s", diff)
	}

	// The next backup finds nothing more to delete.
	opts.Now = func() time.Time { return now.Add(time.Hour) }
	res, err = snapshot.Backup(ctx, opts)
	if err != nil {
		t.Fatalf("second backup failed: %v", err)
	}
	if diff := cmp.Diff([]any{snapshot.LifecyclePruned, 0}, []any{res.Lifecycle, res.Pruned}); diff != "" {
		t.Errorf("second backup: lifecycle, pruned mismatch (-want +got):\n%s", diff)
	}
}
