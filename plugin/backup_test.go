package plugin

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

func TestManualBackupJobName(t *testing.T) {
	now := time.Unix(1767225600, 0)
	long := strings.Repeat("a", 60) + "-etcd-backup"
	for _, tc := range []struct {
		name    string
		cronJob string
		attempt int
		want    string
	}{
		{"short", "prod-etcd-backup", 1, "prod-etcd-backup-manual-1767225600"},
		{"second attempt", "prod-etcd-backup", 2, "prod-etcd-backup-manual-1767225600-2"},
		{"cut to 63", long, 1, strings.Repeat("a", 45) + "-manual-1767225600"},
		{"no dash before the suffix", strings.Repeat("a", 44) + "-b-etcd-backup", 1, strings.Repeat("a", 44) + "-manual-1767225600"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := manualBackupJobName(tc.cronJob, now, tc.attempt)
			if got != tc.want {
				t.Errorf("manualBackupJobName = %q, want %q", got, tc.want)
			}
			if len(got) > 63 {
				t.Errorf("%q is %d characters long", got, len(got))
			}
		})
	}
}

func TestManualBackupJob(t *testing.T) {
	labels := map[string]string{kdcv1alpha1.LabelCluster: "prod", kdcv1alpha1.LabelComponent: kdcv1alpha1.ComponentBackup}
	cj := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "prod-etcd-backup", Namespace: "team-a", UID: "cj-uid", Labels: map[string]string{"only": "on-the-cronjob"}},
		Spec: batchv1.CronJobSpec{JobTemplate: batchv1.JobTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"a": "b"}},
			Spec: batchv1.JobSpec{
				BackoffLimit: ptr.To[int32](2),
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "backup", Image: "img"}}},
				},
			},
		}},
	}
	got := manualBackupJob(cj, "prod-etcd-backup-manual-1")
	want := &batchv1.Job{
		TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "prod-etcd-backup-manual-1", Namespace: "team-a", Labels: labels,
			Annotations: map[string]string{"a": "b", "cronjob.kubernetes.io/instantiate": "manual"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "batch/v1", Kind: "CronJob", Name: "prod-etcd-backup", UID: "cj-uid",
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: cj.Spec.JobTemplate.Spec,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("manualBackupJob (-want +got):\n%s", diff)
	}
	got.Spec.Template.Spec.Containers[0].Image = "changed"
	if cj.Spec.JobTemplate.Spec.Template.Spec.Containers[0].Image != "img" {
		t.Error("manualBackupJob shares the CronJob's template")
	}
}

func TestBackupJobOutcomeOf(t *testing.T) {
	at := func(s int) metav1.Time { return metav1.NewTime(time.Unix(1767225600+int64(s), 0)) }
	job := func(cond batchv1.JobConditionType, reason, msg string) *batchv1.Job {
		j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "j"}}
		j.Spec.Template.Spec.Containers = []corev1.Container{{Name: "backup"}}
		j.Status.Conditions = []batchv1.JobCondition{{Type: cond, Status: corev1.ConditionTrue, Reason: reason, Message: msg}}
		return j
	}
	pod := func(name string, created int, exit int32, msg string) corev1.Pod {
		return corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: at(created)},
			Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
				Name: "backup", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exit, Reason: "Error", Message: msg + "\n"}},
			}}},
		}
	}
	for _, tc := range []struct {
		name string
		job  *batchv1.Job
		pods []corev1.Pod
		want backupJobOutcome
	}{{
		name: "success after a failed try",
		job:  job(batchv1.JobComplete, "", ""),
		pods: []corev1.Pod{pod("p1", 0, 8, `{"exitCode":8}`), pod("p2", 5, 0, `{"key":"k"}`)},
		want: backupJobOutcome{succeeded: true, pod: "p2", exitCode: 0, reason: "Error", message: `{"key":"k"}`},
	}, {
		name: "newest failure",
		job:  job(batchv1.JobFailed, "PodFailurePolicy", "exit 6"),
		pods: []corev1.Pod{pod("p1", 0, 8, "first"), pod("p2", 5, 6, "second")},
		want: backupJobOutcome{pod: "p2", exitCode: 6, reason: "Error", message: "second", jobReason: "PodFailurePolicy", jobMessage: "exit 6"},
	}, {
		name: "no pod",
		job:  job(batchv1.JobFailed, "DeadlineExceeded", "Job was active longer than specified deadline"),
		want: backupJobOutcome{exitCode: -1, jobReason: "DeadlineExceeded", jobMessage: "Job was active longer than specified deadline"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := backupJobOutcomeOf(tc.job, tc.pods)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(backupJobOutcome{})); diff != "" {
				t.Errorf("backupJobOutcomeOf (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBackupFailedError(t *testing.T) {
	c := &kdcv1alpha1.KdcCluster{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "prod"}}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "prod-etcd-backup-manual-1"}}
	for _, tc := range []struct {
		name string
		out  backupJobOutcome
		want string
	}{{
		name: "termination message",
		out:  backupJobOutcome{exitCode: 6, message: `{"error":"failed to upload: access denied (InvalidAccessKeyId)","reason":"AccessDenied","exitCode":6}`},
		want: "backup Job ns/prod-etcd-backup-manual-1 failed with exit code 6 (AccessDenied): failed to upload: access denied (InvalidAccessKeyId); " +
			"S3 denied access; check the S3 credential Secret and its permissions on the bucket " +
			"(logs: kubectl logs -n ns job/prod-etcd-backup-manual-1; the controller reports it in KdcCluster ns/prod's BackupReady)",
	}, {
		name: "killed",
		out:  backupJobOutcome{exitCode: 137, reason: "OOMKilled"},
		want: "backup Job ns/prod-etcd-backup-manual-1 failed with exit code 137 (OOMKilled): no termination message; " +
			"the container was killed by signal 9; check its memory limit and the pod events " +
			"(logs: kubectl logs -n ns job/prod-etcd-backup-manual-1; the controller reports it in KdcCluster ns/prod's BackupReady)",
	}, {
		name: "no container result",
		out:  backupJobOutcome{exitCode: -1, jobReason: "DeadlineExceeded", jobMessage: "Job was active longer than specified deadline"},
		want: "backup Job ns/prod-etcd-backup-manual-1 failed (DeadlineExceeded) before its container finished: Job was active longer than specified deadline; " +
			"check kubectl describe job -n ns prod-etcd-backup-manual-1 and the pod events",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, backupFailedError(c, job, tc.out).Error()); diff != "" {
				t.Errorf("backupFailedError (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCronJobMissingError(t *testing.T) {
	c := &kdcv1alpha1.KdcCluster{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "prod", Generation: 2}}
	if diff := cmp.Diff("KdcCluster ns/prod has no backup CronJob prod-etcd-backup: the controller has not reported BackupReady yet; check that the kdc-etcd-backup manager is running",
		cronJobMissingError(c).Error()); diff != "" {
		t.Errorf("without a condition (-want +got):\n%s", diff)
	}
	c.Status.Conditions = []metav1.Condition{{
		Type: kdcv1alpha1.ConditionBackupReady, Status: metav1.ConditionFalse, Reason: kdcv1alpha1.ReasonS3NotAvailable, ObservedGeneration: 2,
		Message: `ObjectBucketClaim ns/managed-k8s-backups is "Pending", not Bound`,
	}}
	if diff := cmp.Diff(`KdcCluster ns/prod has no backup CronJob prod-etcd-backup: BackupReady=False, reason S3NotAvailable: ObjectBucketClaim ns/managed-k8s-backups is "Pending", not Bound`,
		cronJobMissingError(c).Error()); diff != "" {
		t.Errorf("with a condition (-want +got):\n%s", diff)
	}
}
