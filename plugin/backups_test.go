package plugin

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"kube-dc.com/etcd-backup/snapshot"
)

func TestFormatSnapshotSize(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0B"},
		{1023, "1023B"},
		{1024, "1.0KiB"},
		{1536, "1.5KiB"},
		{10 << 10, "10KiB"},
		{1024*1024 - 1, "1.0MiB"},
		{20*1024*1024 + 32, "20MiB"},
		{5 << 30, "5.0GiB"},
		{3 << 60, "3.0EiB"},
	} {
		if got := formatSnapshotSize(tc.n); got != tc.want {
			t.Errorf("formatSnapshotSize(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestSnapshotKeyOf(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	type result struct {
		Key  string
		Time time.Time
		OK   bool
	}
	for _, tc := range []struct {
		name, prefix, objectKey string
		want                    result
	}{
		{"snapshot", "", "prod/prod-20260102T030405Z.db", result{"prod/prod-20260102T030405Z.db", ts, true}},
		{"snapshot under a prefix", "tenants/a", "tenants/a/prod/prod-20260102T030405Z.db", result{"prod/prod-20260102T030405Z.db", ts, true}},
		{"another prefix", "tenants/a", "tenants/b/prod/prod-20260102T030405Z.db", result{}},
		{"not a .db", "", "prod/prod-20260102T030405Z.db.tmp", result{}},
		{"notes", "", "prod/README.txt", result{}},
		{"no timestamp", "", "prod/prod-latest.db", result{}},
		{"timestamp not UTC", "", "prod/prod-20260102T030405+0100.db", result{}},
		{"file of another cluster", "", "prod/staging-20260102T030405Z.db", result{}},
		{"another cluster", "", "prod-2/prod-2-20260102T030405Z.db", result{}},
		{"nested", "", "prod/old/prod-20260102T030405Z.db", result{}},
		{"directory marker", "", "prod/", result{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got result
			got.Key, got.Time, got.OK = snapshotKeyOf(snapshot.S3Location{Prefix: tc.prefix}, "prod", tc.objectKey)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("snapshotKeyOf(%q) (-want +got):\n%s", tc.objectKey, diff)
			}
		})
	}
}

func TestSortSnapshots(t *testing.T) {
	at := func(h int) time.Time { return time.Date(2026, 1, 1, h, 0, 0, 0, time.UTC) }
	items := []Snapshot{
		{Key: "c/c-20260101T010000Z.db", Time: at(1)},
		{Key: "c/c-20260101T030000Z.db", Time: at(3)},
		{Key: "c/c-20260101T020000Z.db", Time: at(2)},
	}
	sortSnapshots(items)
	var got []string
	for _, s := range items {
		got = append(got, s.Key)
	}
	want := []string{"c/c-20260101T030000Z.db", "c/c-20260101T020000Z.db", "c/c-20260101T010000Z.db"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sortSnapshots (-want +got):\n%s", diff)
	}
}

func TestChecksumState(t *testing.T) {
	for _, tc := range []struct {
		s3, tag bool
		want    string
	}{
		{true, true, "sha256"},
		{true, false, "no-tag"},
		{false, true, "tag-only"},
		{false, false, "missing"},
	} {
		if got := checksumState(tc.s3, tc.tag); got != tc.want {
			t.Errorf("checksumState(%v, %v) = %q, want %q", tc.s3, tc.tag, got, tc.want)
		}
	}
}

func TestCronJobS3Endpoint(t *testing.T) {
	cronJob := func(args ...string) *batchv1.CronJob {
		cj := &batchv1.CronJob{}
		cj.Spec.JobTemplate.Spec.Template.Spec.Containers = []corev1.Container{{Name: "backup", Command: []string{"/kdc-etcd-backup"}, Args: args}}
		return cj
	}
	for _, tc := range []struct {
		name string
		cj   *batchv1.CronJob
		want string
	}{
		{"equals form", cronJob("backup", "--cluster=prod", "--s3-endpoint=http://rgw.rook-ceph.svc:80", "--bucket=b"), "http://rgw.rook-ceph.svc:80"},
		{"separate value", cronJob("backup", "--s3-endpoint", "https://s3.example.com"), "https://s3.example.com"},
		{"none", cronJob("backup", "--cluster=prod"), ""},
		{"flag without value", cronJob("backup", "--s3-endpoint"), ""},
		{"no containers", &batchv1.CronJob{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := cronJobS3Endpoint(tc.cj); got != tc.want {
				t.Errorf("cronJobS3Endpoint = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPortForwardHint(t *testing.T) {
	for _, tc := range []struct {
		endpoint, want string
	}{
		{"http://rook-ceph-rgw-store.rook-ceph.svc:80",
			"run `kubectl port-forward -n rook-ceph svc/rook-ceph-rgw-store 8080:80` and pass --s3-endpoint=http://127.0.0.1:8080"},
		{"http://rook-ceph-rgw-store.rook-ceph.svc.cluster.local",
			"run `kubectl port-forward -n rook-ceph svc/rook-ceph-rgw-store 8080:80` and pass --s3-endpoint=http://127.0.0.1:8080"},
		{"http://minio.storage:9000",
			"run `kubectl port-forward -n storage svc/minio 8080:9000` and pass --s3-endpoint=http://127.0.0.1:8080"},
		{"https://s3.internal.example.com",
			"run `kubectl port-forward -n <s3-namespace> svc/<s3-service> 8080:443` and pass --s3-endpoint=https://127.0.0.1:8080"},
		{"http://10.0.0.12:7480",
			"run `kubectl port-forward -n <s3-namespace> svc/<s3-service> 8080:7480` and pass --s3-endpoint=http://127.0.0.1:8080"},
	} {
		if diff := cmp.Diff(tc.want, portForwardHint(tc.endpoint)); diff != "" {
			t.Errorf("portForwardHint(%q) (-want +got):\n%s", tc.endpoint, diff)
		}
	}
}

func TestPrintSnapshotTable(t *testing.T) {
	now := time.Date(2026, 1, 3, 2, 0, 0, 0, time.UTC)
	items := []Snapshot{
		{Key: "prod/prod-20260103T013000Z.db", Time: time.Date(2026, 1, 3, 1, 30, 0, 0, time.UTC), ObjectKey: "p/prod/prod-20260103T013000Z.db",
			Size: 20<<20 + 32, Revision: 123456, EtcdVersion: "3.6.16", Checksum: "sha256", Mode: "prefix"},
		{Key: "prod/prod-20260101T020000Z.db", Time: time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC), ObjectKey: "p/prod/prod-20260101T020000Z.db",
			Size: 24608, Checksum: "missing"},
	}
	for _, tc := range []struct {
		name            string
		wide, noHeaders bool
		want            string
	}{{
		name: "default",
		want: "" +
			"KEY                             TIME                   AGE   SIZE    REVISION   CHECKSUM\n" +
			"prod/prod-20260103T013000Z.db   2026-01-03T01:30:00Z   30m   20MiB   123456     sha256\n" +
			"prod/prod-20260101T020000Z.db   2026-01-01T02:00:00Z   2d    24KiB   <none>     missing\n",
	}, {
		name: "wide", wide: true, noHeaders: true,
		want: "" +
			"prod/prod-20260103T013000Z.db   2026-01-03T01:30:00Z   30m   20MiB   123456   sha256    prefix      3.6.16   s3://b/p/prod/prod-20260103T013000Z.db\n" +
			"prod/prod-20260101T020000Z.db   2026-01-01T02:00:00Z   2d    24KiB   <none>   missing   <unknown>   <none>   s3://b/p/prod/prod-20260101T020000Z.db\n",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := printSnapshotTable(&buf, items, now, tc.wide, tc.noHeaders, "b"); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, buf.String()); diff != "" {
				t.Errorf("table (-want +got):\n%s", diff)
			}
		})
	}
}
