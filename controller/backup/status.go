package backup

import (
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/jobspec"
	"kube-dc.com/etcd-backup/schedule"
)

// backupTermination is the one-line JSON a backup container writes to its termination message
// (docs/jobs.md).
type backupTermination = jobspec.Result

// Exit codes of the backup subcommand the status logic tells apart (docs/jobs.md).
const (
	backupExitSnapshotTooSmall = int(jobspec.ExitSnapshotTooSmall)
	backupExitUsage            = int(jobspec.ExitUsage)
	backupExitBucketMissing    = int(jobspec.ExitBucketMissing)
	backupExitAccessDenied     = int(jobspec.ExitAccessDenied)
	backupExitS3Unreachable    = int(jobspec.ExitS3Unreachable)
	backupExitEtcdUnavailable  = int(jobspec.ExitEtcdUnavailable)
	backupExitIntegrity        = int(jobspec.ExitIntegrity)
)

// backupJobResult is what one finished backup Job tells: how it ended and, from its newest pod's
// container state, the exit code and termination message.
type backupJobResult struct {
	// Job is namespace/name, for messages.
	Job       string
	Succeeded bool
	// FinishedAt is the time of the Job's Complete or Failed condition.
	FinishedAt time.Time
	// JobReason and JobMessage are the Job's Failed condition (DeadlineExceeded, ...).
	JobReason, JobMessage string
	// ExitCode is the backup container's exit code, -1 when no terminated pod was found.
	ExitCode int
	// Termination is the parsed termination message, nil when absent or not JSON.
	Termination *backupTermination
	// RawMessage is the termination message when it is not the JSON of the contract.
	RawMessage string
}

// backupJobFinished reports whether a Job reached a terminal condition, whether it succeeded and
// when.
func backupJobFinished(job *batchv1.Job) (finished, succeeded bool, at time.Time) {
	for _, c := range job.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			at = c.LastTransitionTime.Time
			if job.Status.CompletionTime != nil {
				at = job.Status.CompletionTime.Time
			}
			return true, true, at
		case batchv1.JobFailed:
			return true, false, c.LastTransitionTime.Time
		}
	}
	return false, false, time.Time{}
}

// newestFinishedBackupJob is the most recently created Job that finished, or nil. Only the newest
// run decides BackupReady: a later success heals an earlier failure and vice versa.
func newestFinishedBackupJob(jobs []batchv1.Job) *batchv1.Job {
	var newest *batchv1.Job
	for i := range jobs {
		j := &jobs[i]
		if done, _, _ := backupJobFinished(j); !done {
			continue
		}
		if newest == nil || j.CreationTimestamp.After(newest.CreationTimestamp.Time) ||
			(j.CreationTimestamp.Equal(&newest.CreationTimestamp) && j.Name > newest.Name) {
			newest = j
		}
	}
	return newest
}

// backupJobResultFromPods combines a finished Job with its pods: the newest pod whose backup
// container terminated gives the exit code and the termination message.
func backupJobResultFromPods(job *batchv1.Job, pods []corev1.Pod) backupJobResult {
	_, ok, at := backupJobFinished(job)
	r := backupJobResult{Job: job.Namespace + "/" + job.Name, Succeeded: ok, FinishedAt: at, ExitCode: -1}
	for _, c := range job.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
			r.JobReason, r.JobMessage = c.Reason, c.Message
		}
	}
	if _, t := jobspec.ResultContainer(pods, backupContainerName, ok); t != nil {
		r.ExitCode = int(t.ExitCode)
		if msg := strings.TrimSpace(t.Message); msg != "" {
			if term, err := jobspec.ParseResult(msg); err == nil {
				r.Termination = &term
			} else {
				r.RawMessage = msg
			}
		}
	}
	return r
}

// backupContext names the objects a message points the operator at.
type backupContext struct {
	Namespace, Cluster, DataStore, CredentialSecret string
	Location                                        backupS3Location
	EtcdEndpoints                                   []string
}

// backupFailureCondition is the BackupReady reason and message of a failed Job.
func backupFailureCondition(r backupJobResult, bc backupContext) (reason, message string) {
	detail := r.RawMessage
	if r.Termination != nil && r.Termination.Error != "" {
		detail = r.Termination.Error
	}
	if detail != "" {
		detail = ": " + detail
	}
	certs := bc.Namespace + "/" + kdcv1alpha1.EtcdCertsSecretName(bc.DataStore)
	etcd := strings.Join(bc.EtcdEndpoints, ",")
	switch r.ExitCode {
	case -1:
		why := r.JobReason
		if why == "" {
			why = "no pod result"
		}
		return kdcv1alpha1.ReasonBackupFailed, fmt.Sprintf(
			"Backup Job %s failed (%s) without a container result: %s; check `kubectl describe job -n %s %s` and the pod events",
			r.Job, why, r.JobMessage, bc.Namespace, backupJobName(r.Job))
	case backupExitSnapshotTooSmall:
		return kdcv1alpha1.ReasonSnapshotTooSmall, fmt.Sprintf(
			"Backup Job %s failed: snapshot too small (exit code 2), nothing was uploaded%s; check that etcd %s is healthy and serves its data to the client certificate of Secret %s",
			r.Job, detail, etcd, certs)
	}
	var hint string
	switch r.ExitCode {
	case backupExitUsage:
		hint = fmt.Sprintf("check the CronJob's arguments and that Secret %s/%s has the keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", bc.Namespace, bc.CredentialSecret)
	case backupExitBucketMissing:
		hint = fmt.Sprintf("check that bucket %q exists at %s (%s)", bc.Location.Bucket, bc.Location.Endpoint, bc.Location.EndpointSource)
	case backupExitAccessDenied:
		hint = fmt.Sprintf("check the credentials in Secret %s/%s and their permissions on bucket %q", bc.Namespace, bc.CredentialSecret, bc.Location.Bucket)
	case backupExitS3Unreachable:
		hint = fmt.Sprintf("check that %s (%s) is reachable from namespace %s", bc.Location.Endpoint, bc.Location.EndpointSource, bc.Namespace)
	case backupExitEtcdUnavailable:
		hint = fmt.Sprintf("check that etcd %s is up and Secret %s holds a valid client certificate", etcd, certs)
	case backupExitIntegrity:
		hint = fmt.Sprintf("the snapshot stream from etcd %s failed its own hash; check etcd's health, the next run retries", etcd)
	default:
		hint = fmt.Sprintf("check `kubectl logs -n %s job/%s`", bc.Namespace, backupJobName(r.Job))
	}
	name := ""
	if r.Termination != nil && r.Termination.Reason != "" {
		name = " (" + r.Termination.Reason + ")"
	}
	return kdcv1alpha1.ReasonBackupFailed, fmt.Sprintf("Backup Job %s failed with exit code %d%s%s; %s", r.Job, r.ExitCode, name, detail, hint)
}

func backupJobName(nsName string) string {
	_, n, _ := strings.Cut(nsName, "/")
	return n
}

// backupReadyInput is what BackupReady is computed from once the CronJob exists.
type backupReadyInput struct {
	Context  backupContext
	Schedule string
	// ScheduledSince is the CronJob's creation: the staleness reference before any success.
	ScheduledSince time.Time
	// LatestBackupKey and LatestBackupTime are the status after recording the newest success.
	LatestBackupKey  string
	LatestBackupTime *metav1.Time
	// Newest is the newest finished Job, nil when none.
	Newest *backupJobResult
	Now    time.Time
}

// backupReady is a computed BackupReady condition and when to look again for staleness.
type backupReady struct {
	Status          metav1.ConditionStatus
	Reason, Message string
	// RecheckAfter is > 0 when the condition turns stale by itself after this long.
	RecheckAfter time.Duration
}

// computeBackupReady decides BackupReady for a scheduled cluster: the newest finished Job's
// failure wins; else True (BackupSucceeded with a success, Scheduled without) unless stale.
func computeBackupReady(in backupReadyInput) backupReady {
	if in.Newest != nil && !in.Newest.Succeeded {
		reason, msg := backupFailureCondition(*in.Newest, in.Context)
		return backupReady{Status: metav1.ConditionFalse, Reason: reason, Message: msg}
	}
	cronJob := in.Context.Namespace + "/" + kdcv1alpha1.BackupCronJobName(in.Context.Cluster)
	ref := in.ScheduledSince
	ready := backupReady{
		Status: metav1.ConditionTrue, Reason: kdcv1alpha1.ReasonBackupScheduled,
		Message: fmt.Sprintf("CronJob %s runs on schedule %q (UTC); no backup has succeeded yet", cronJob, in.Schedule),
	}
	if in.LatestBackupTime != nil {
		ref = in.LatestBackupTime.Time
		ready.Reason = kdcv1alpha1.ReasonBackupSucceeded
		ready.Message = fmt.Sprintf("Latest backup %q succeeded at %s; CronJob %s runs on schedule %q (UTC)",
			in.LatestBackupKey, ref.UTC().Format(time.RFC3339), cronJob, in.Schedule)
	}
	if ref.IsZero() {
		return ready
	}
	deadline, interval, err := schedule.StaleDeadline(in.Schedule, ref)
	if err != nil {
		// The CronJob API validates the schedule; a schedule it accepts that cron/v3 does not is
		// reported rather than guessed at.
		return backupReady{Status: metav1.ConditionFalse, Reason: kdcv1alpha1.ReasonBackupStale,
			Message: fmt.Sprintf("Cannot tell whether backups are recent: %v; check spec.backup.schedule", err)}
	}
	if in.Now.Before(deadline) {
		ready.RecheckAfter = deadline.Sub(in.Now) + time.Second
		return ready
	}
	since := "the last successful backup at " + ref.UTC().Format(time.RFC3339)
	if in.LatestBackupTime == nil {
		since = "the CronJob was created at " + ref.UTC().Format(time.RFC3339) + " and no backup has succeeded since"
	}
	return backupReady{Status: metav1.ConditionFalse, Reason: kdcv1alpha1.ReasonBackupStale, Message: fmt.Sprintf(
		"No backup for more than twice the schedule interval (%s): %s; check that CronJob %s is not suspended and starts Jobs (kubectl get cronjob,jobs -n %s -l %s=%s)",
		interval, since, cronJob, in.Context.Namespace, kdcv1alpha1.LabelCluster, in.Context.Cluster)}
}
