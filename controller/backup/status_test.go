package backup

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/jobspec"
)

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func backupTestJob(name string, created time.Time, succeeded bool) batchv1.Job {
	cond := batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded",
		Message: "Job has reached the specified backoff limit", LastTransitionTime: metav1.NewTime(created.Add(time.Minute))}
	if succeeded {
		cond = batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(created.Add(time.Minute))}
	}
	return batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team-a", CreationTimestamp: metav1.NewTime(created)},
		Status:     batchv1.JobStatus{Conditions: []batchv1.JobCondition{cond}},
	}
}

func backupTestPod(name string, created time.Time, exitCode int32, msg string) corev1.Pod {
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(created)},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			Name:  "backup",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exitCode, Message: msg}},
		}}},
	}
}

func TestNewestFinishedBackupJob(t *testing.T) {
	t0 := mustTime("2025-01-06T02:00:00Z")
	running := backupTestJob("running", t0.Add(3*time.Hour), true)
	running.Status.Conditions = nil
	jobs := []batchv1.Job{
		backupTestJob("old-ok", t0, true),
		backupTestJob("newer-failed", t0.Add(time.Hour), false),
		running,
	}
	if got := newestFinishedBackupJob(jobs); got == nil || got.Name != "newer-failed" {
		t.Errorf("newestFinishedBackupJob() = %v, want newer-failed", got)
	}
	if got := newestFinishedBackupJob(jobs[2:]); got != nil {
		t.Errorf("newestFinishedBackupJob(running only) = %v, want nil", got.Name)
	}
}

func TestBackupJobResultFromPods(t *testing.T) {
	t0 := mustTime("2025-01-06T02:00:00Z")
	okMsg := `{"key":"prod/prod-20250106T020000Z.db","objectKey":"prod/prod-20250106T020000Z.db","bucket":"b","size":20480,"sha256":"abc","revision":42,"durationSeconds":1.5}`
	cases := map[string]struct {
		job  batchv1.Job
		pods []corev1.Pod
		want backupJobResult
	}{
		"success after a failed retry": {
			job: backupTestJob("j1", t0, true),
			pods: []corev1.Pod{
				backupTestPod("p1", t0, 8, `{"error":"etcd down","reason":"EtcdUnavailable","exitCode":8}`),
				backupTestPod("p2", t0.Add(10*time.Second), 0, okMsg),
			},
			want: backupJobResult{Job: "team-a/j1", Succeeded: true, FinishedAt: t0.Add(time.Minute), ExitCode: 0,
				Termination: &backupTermination{Key: "prod/prod-20250106T020000Z.db", ObjectKey: "prod/prod-20250106T020000Z.db",
					Bucket: "b", Size: 20480, SHA256: "abc", Revision: 42, DurationSeconds: 1.5}},
		},
		"failure: the newest pod decides": {
			job: backupTestJob("j2", t0, false),
			pods: []corev1.Pod{
				backupTestPod("p1", t0, 8, `{"error":"etcd down","reason":"EtcdUnavailable","exitCode":8}`),
				backupTestPod("p2", t0.Add(10*time.Second), 2, `{"error":"snapshot is 10 bytes","reason":"SnapshotTooSmall","exitCode":2}`),
			},
			want: backupJobResult{Job: "team-a/j2", FinishedAt: t0.Add(time.Minute), ExitCode: 2,
				JobReason: "BackoffLimitExceeded", JobMessage: "Job has reached the specified backoff limit",
				Termination: &backupTermination{Error: "snapshot is 10 bytes", Reason: "SnapshotTooSmall", ExitCode: 2}},
		},
		"failure without pods": {
			job: backupTestJob("j3", t0, false),
			want: backupJobResult{Job: "team-a/j3", FinishedAt: t0.Add(time.Minute), ExitCode: -1,
				JobReason: "BackoffLimitExceeded", JobMessage: "Job has reached the specified backoff limit"},
		},
		"message that is not JSON": {
			job:  backupTestJob("j4", t0, false),
			pods: []corev1.Pod{backupTestPod("p1", t0, 1, "panic: boom\n")},
			want: backupJobResult{Job: "team-a/j4", FinishedAt: t0.Add(time.Minute), ExitCode: 1,
				JobReason: "BackoffLimitExceeded", JobMessage: "Job has reached the specified backoff limit", RawMessage: "panic: boom"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := backupJobResultFromPods(&tc.job, tc.pods)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("backupJobResultFromPods() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestComputeBackupReady(t *testing.T) {
	now := mustTime("2025-01-07T12:00:00Z")
	bc := backupContext{Namespace: "team-a", Cluster: "prod", DataStore: "ds1", CredentialSecret: "managed-k8s-backups",
		Location:      backupS3Location{S3Location: jobspec.S3Location{Endpoint: "http://rgw", Bucket: "b"}, EndpointSource: "the manager's --s3-endpoint"},
		EtcdEndpoints: []string{"https://ds1-etcd-0.ds1-etcd.team-a.svc:2379"}}
	last := metav1.NewTime(mustTime("2025-01-07T02:00:30Z"))
	old := metav1.NewTime(mustTime("2025-01-04T02:00:30Z"))
	cases := map[string]struct {
		in   backupReadyInput
		want backupReady
	}{
		"scheduled, nothing ran yet": {
			in: backupReadyInput{Context: bc, Schedule: "0 2 * * *", ScheduledSince: mustTime("2025-01-07T11:00:00Z"), Now: now},
			want: backupReady{Status: metav1.ConditionTrue, Reason: kdcv1alpha1.ReasonBackupScheduled,
				Message:      `CronJob team-a/prod-etcd-backup runs on schedule "0 2 * * *" (UTC); no backup has succeeded yet`,
				RecheckAfter: mustTime("2025-01-09T11:00:00Z").Sub(now) + time.Second},
		},
		"recent success": {
			in: backupReadyInput{Context: bc, Schedule: "0 2 * * *", ScheduledSince: old.Time, LatestBackupKey: "prod/prod-20250107T020000Z.db",
				LatestBackupTime: &last, Newest: &backupJobResult{Succeeded: true}, Now: now},
			want: backupReady{Status: metav1.ConditionTrue, Reason: kdcv1alpha1.ReasonBackupSucceeded,
				Message:      `Latest backup "prod/prod-20250107T020000Z.db" succeeded at 2025-01-07T02:00:30Z; CronJob team-a/prod-etcd-backup runs on schedule "0 2 * * *" (UTC)`,
				RecheckAfter: mustTime("2025-01-09T02:30:00Z").Sub(now) + time.Second},
		},
		"stale success": {
			in: backupReadyInput{Context: bc, Schedule: "0 2 * * *", ScheduledSince: old.Time, LatestBackupKey: "k", LatestBackupTime: &old, Now: now},
			want: backupReady{Status: metav1.ConditionFalse, Reason: kdcv1alpha1.ReasonBackupStale,
				Message: "No backup for more than twice the schedule interval (24h0m0s): the last successful backup at 2025-01-04T02:00:30Z; " +
					"check that CronJob team-a/prod-etcd-backup is not suspended and starts Jobs (kubectl get cronjob,jobs -n team-a -l k8s.kube-dc.com/cluster=prod)"},
		},
		"never succeeded since long ago": {
			in: backupReadyInput{Context: bc, Schedule: "0 2 * * *", ScheduledSince: old.Time, Now: now},
			want: backupReady{Status: metav1.ConditionFalse, Reason: kdcv1alpha1.ReasonBackupStale,
				Message: "No backup for more than twice the schedule interval (24h0m0s): the CronJob was created at 2025-01-04T02:00:30Z and no backup has succeeded since; " +
					"check that CronJob team-a/prod-etcd-backup is not suspended and starts Jobs (kubectl get cronjob,jobs -n team-a -l k8s.kube-dc.com/cluster=prod)"},
		},
		"exit code 2 is snapshot too small, even when also stale": {
			in: backupReadyInput{Context: bc, Schedule: "0 2 * * *", LatestBackupTime: &old, Now: now, Newest: &backupJobResult{
				Job: "team-a/prod-etcd-backup-1", ExitCode: 2,
				Termination: &backupTermination{Error: "snapshot is 0 bytes, less than 16384", Reason: "SnapshotTooSmall", ExitCode: 2}}},
			want: backupReady{Status: metav1.ConditionFalse, Reason: kdcv1alpha1.ReasonSnapshotTooSmall,
				Message: "Backup Job team-a/prod-etcd-backup-1 failed: snapshot too small (exit code 2), nothing was uploaded: snapshot is 0 bytes, less than 16384; " +
					"check that etcd https://ds1-etcd-0.ds1-etcd.team-a.svc:2379 is healthy and serves its data to the client certificate of Secret team-a/ds1-etcd-certs"},
		},
		"access denied names the Secret": {
			in: backupReadyInput{Context: bc, Schedule: "0 2 * * *", Now: now, Newest: &backupJobResult{
				Job: "team-a/j", ExitCode: 6, Termination: &backupTermination{Error: "InvalidAccessKeyId", Reason: "AccessDenied", ExitCode: 6}}},
			want: backupReady{Status: metav1.ConditionFalse, Reason: kdcv1alpha1.ReasonBackupFailed,
				Message: `Backup Job team-a/j failed with exit code 6 (AccessDenied): InvalidAccessKeyId; check the credentials in Secret team-a/managed-k8s-backups and their permissions on bucket "b"`},
		},
		"deadline exceeded without a pod result": {
			in: backupReadyInput{Context: bc, Schedule: "0 2 * * *", Now: now, Newest: &backupJobResult{
				Job: "team-a/j", ExitCode: -1, JobReason: "DeadlineExceeded", JobMessage: "Job was active longer than specified deadline"}},
			want: backupReady{Status: metav1.ConditionFalse, Reason: kdcv1alpha1.ReasonBackupFailed,
				Message: "Backup Job team-a/j failed (DeadlineExceeded) without a container result: Job was active longer than specified deadline; " +
					"check `kubectl describe job -n team-a j` and the pod events"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, computeBackupReady(tc.in)); diff != "" {
				t.Errorf("computeBackupReady() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRecordBackupSuccess(t *testing.T) {
	at := mustTime("2025-01-07T02:00:30Z")
	cases := map[string]struct {
		res  backupJobResult
		loc  backupS3Location
		want kdcv1alpha1.KdcClusterStatus
	}{
		"prefix from the object key": {
			res: backupJobResult{FinishedAt: at, Termination: &backupTermination{
				Key: "prod/prod-20250107T020000Z.db", ObjectKey: "tenants/prod/prod-20250107T020000Z.db", Bucket: "shared"}},
			loc: backupS3Location{S3Location: jobspec.S3Location{Bucket: "shared", Prefix: "tenants"}},
			want: kdcv1alpha1.KdcClusterStatus{LatestBackupKey: "prod/prod-20250107T020000Z.db", LatestBackupTime: &metav1.Time{Time: at},
				BackupBucket: "shared", BackupDestinationPath: "s3://shared/tenants"},
		},
		"no termination message: time and planned location only": {
			res:  backupJobResult{FinishedAt: at},
			loc:  backupS3Location{S3Location: jobspec.S3Location{Bucket: "b"}},
			want: kdcv1alpha1.KdcClusterStatus{LatestBackupTime: &metav1.Time{Time: at}, BackupBucket: "b", BackupDestinationPath: "s3://b"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := &kdcv1alpha1.KdcCluster{}
			recordBackupSuccess(c, tc.res, tc.loc)
			if diff := cmp.Diff(tc.want, c.Status); diff != "" {
				t.Errorf("recordBackupSuccess() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBackupRetentionNote(t *testing.T) {
	tests := []struct {
		name string
		t    backupTermination
		want string
	}{
		{"lifecycle rule applied", backupTermination{Lifecycle: "applied"}, ""},
		{"fallback deleted nothing", backupTermination{Lifecycle: "pruned"}, ""},
		{"fallback deleted", backupTermination{Lifecycle: "pruned", Pruned: 3},
			"; the bucket has no lifecycle rules, so the backup deleted 3 snapshots older than the retention"},
		{"failed", backupTermination{Lifecycle: "failed", LifecycleError: "access denied"},
			"; retention was not applied (failed): access denied; the next backup retries"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, backupRetentionNote(&tc.t)); diff != "" {
				t.Errorf("backupRetentionNote() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
