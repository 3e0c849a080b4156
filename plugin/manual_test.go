package plugin

import (
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

func TestManualElapsed(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                     "+0.0s",
		1234 * time.Millisecond:               "+1.2s",
		59*time.Second + 940*time.Millisecond: "+59.9s",
		time.Minute + 3500*time.Millisecond:   "+1m03.5s",
		72*time.Minute + 5*time.Second:        "+72m05.0s",
		59*time.Second + 990*time.Millisecond: "+1m00.0s",
	} {
		if got := elapsed(d); got != want {
			t.Errorf("elapsed(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestManualCronJobDefaults(t *testing.T) {
	cj := &batchv1.CronJob{}
	cj.Spec.JobTemplate.Spec.Template.Spec.Containers = []corev1.Container{
		{Name: "sidecar", Image: "other:1"},
		{Name: "backup", Image: "kdc-etcd-backup:v1", Args: []string{"backup", "--s3-endpoint=http://rgw.rook-ceph.svc", "--bucket=b"}},
	}
	if got := cronJobImage(cj); got != "kdc-etcd-backup:v1" {
		t.Errorf("cronJobImage = %q", got)
	}
	if got := cronJobS3Endpoint(cj); got != "http://rgw.rook-ceph.svc" {
		t.Errorf("cronJobS3Endpoint = %q", got)
	}
	if got := cronJobImage(&batchv1.CronJob{}); got != "" {
		t.Errorf("cronJobImage of an empty CronJob = %q", got)
	}
}
