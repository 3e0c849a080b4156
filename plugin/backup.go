package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/jobspec"
	"kube-dc.com/etcd-backup/snapshot"
)

// backupCmdOptions are the flags of `kubectl kdc backup`.
type backupCmdOptions struct {
	wait    bool
	timeout time.Duration
}

func newBackupCommand(o *Options) *cobra.Command {
	bo := &backupCmdOptions{timeout: 10 * time.Minute}
	cmd := &cobra.Command{
		Use:   "backup CLUSTER",
		Short: "Take a snapshot now (a Job from the cluster's backup CronJob)",
		Long: `Take an etcd snapshot of a KdcCluster now.

This creates a Job from the cluster's backup CronJob C-etcd-backup, exactly like
kubectl create job --from=cronjob/C-etcd-backup: the same container, S3 location and credentials
as the scheduled backups, owned by the CronJob, so the controller records its result in
status.latestBackupKey and the BackupReady condition like a scheduled run.

With --wait it follows the Job until it finishes and prints the new snapshot key on standard
output (progress goes to standard error); a failed backup exits non-zero with the Job's reason
and exit code (docs/jobs.md lists them). Without --wait it prints the Job's name.`,
		Example: `  # Take a snapshot of cluster prod now and wait for its key
  kubectl kdc backup prod -n team-a --wait

  # In a script: back up, then restore exactly that snapshot later
  KEY=$(kubectl kdc backup prod -n team-a --wait --timeout 15m)

  # Start a backup and follow it yourself
  kubectl kdc backup prod -n team-a
  kubectl logs -n team-a -f job/prod-etcd-backup-manual-1767225600`,
		Args: oneClusterArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.runBackup(cmd.Context(), args[0], bo)
		},
	}
	cmd.Flags().BoolVar(&bo.wait, "wait", false, "Wait until the backup Job finishes and print the snapshot key")
	cmd.Flags().DurationVar(&bo.timeout, "timeout", bo.timeout, "With --wait, how long to wait for the Job (0: no limit); the Job keeps running after a timeout")
	return cmd
}

func (o *Options) runBackup(ctx context.Context, name string, bo *backupCmdOptions) error {
	if bo.timeout < 0 {
		return fmt.Errorf("--timeout must not be negative")
	}
	c, err := o.Cluster(ctx, name)
	if err != nil {
		return err
	}
	cl, err := o.Client()
	if err != nil {
		return err
	}
	if phase := kdcv1alpha1.RestorePhaseOf(c.Annotations); phase.Running() {
		return fmt.Errorf("a restore of KdcCluster %s/%s is in progress (phase %s); a backup now would fail or capture a half-restored etcd: wait until it ends (a successful restore starts a fresh backup of the restored state itself)",
			c.Namespace, c.Name, phase)
	}
	cj := &batchv1.CronJob{}
	cjKey := client.ObjectKey{Namespace: c.Namespace, Name: kdcv1alpha1.BackupCronJobName(c.Name)}
	if err := cl.Get(ctx, cjKey, cj); err != nil {
		if apierrors.IsNotFound(err) {
			return cronJobMissingError(c)
		}
		return fmt.Errorf("failed to get CronJob %s: %w", cjKey, err)
	}
	if !cj.DeletionTimestamp.IsZero() {
		return fmt.Errorf("CronJob %s is being deleted: %s", cjKey, backupReadyExplanation(c))
	}
	if ptr.Deref(cj.Spec.Suspend, false) {
		fmt.Fprintf(o.ErrOut, "Note: CronJob %s is suspended; this manual backup runs anyway\n", cjKey)
	}

	job, err := createManualBackupJob(ctx, cl, cj, o.now())
	if err != nil {
		return err
	}
	ref := job.Namespace + "/" + job.Name
	if !bo.wait {
		fmt.Fprintf(o.Out, "job.batch/%s created\n", job.Name)
		fmt.Fprintf(o.ErrOut, "Follow it with:\n  kubectl logs -n %s -f job/%s\n  kubectl wait -n %s --for=condition=complete job/%s\nThe new snapshot then shows in: kubectl kdc backups %s -n %s\n",
			job.Namespace, job.Name, job.Namespace, job.Name, c.Name, c.Namespace)
		return nil
	}
	fmt.Fprintf(o.ErrOut, "job.batch/%s created\n", job.Name)
	limit := "no timeout"
	if bo.timeout > 0 {
		limit = "timeout " + bo.timeout.String()
	}
	fmt.Fprintf(o.ErrOut, "Waiting for backup Job %s to finish (%s)...\n", ref, limit)

	waitCtx, cancel := ctx, context.CancelFunc(func() {})
	if bo.timeout > 0 {
		waitCtx, cancel = context.WithTimeout(ctx, bo.timeout)
	}
	done, err := waitForBackupJob(waitCtx, cl, job)
	cancel()
	if err != nil {
		if errors.Is(err, errWaitTimeout) || waitCtx.Err() != nil {
			return o.backupJobNotFinishedError(ctx, cl, job, bo.timeout, ctx.Err() != nil)
		}
		return err
	}

	pods := &corev1.PodList{}
	if err := cl.List(ctx, pods, client.InNamespace(done.Namespace), client.MatchingLabels{batchv1.ControllerUidLabel: string(done.UID)}); err != nil {
		return fmt.Errorf("backup Job %s finished but its pods cannot be listed for the result: %w", ref, err)
	}
	out := backupJobOutcomeOf(done, pods.Items)
	if !out.succeeded {
		return backupFailedError(c, done, out)
	}
	var res snapshot.BackupResult
	if err := json.Unmarshal([]byte(out.message), &res); err != nil || res.Key == "" {
		return fmt.Errorf("backup Job %s succeeded but wrote no snapshot key to its termination message; check kubectl logs -n %s job/%s",
			ref, done.Namespace, done.Name)
	}
	fmt.Fprintln(o.ErrOut, backupSummary(&res, done))
	if res.TagError != "" {
		fmt.Fprintf(o.ErrOut, "Warning: the sha256 tag was not written (%s); restores still verify the S3 checksum and etcd's hash\n", res.TagError)
	}
	if res.LifecycleError != "" {
		fmt.Fprintf(o.ErrOut, "Warning: the retention lifecycle rule was not applied (%s); the controller falls back\n", res.LifecycleError)
	}
	fmt.Fprintln(o.Out, res.Key)
	return nil
}

// cronJobMissingError explains why a cluster has no backup CronJob from its BackupReady condition.
func cronJobMissingError(c *kdcv1alpha1.KdcCluster) error {
	return fmt.Errorf("KdcCluster %s/%s has no backup CronJob %s: %s", c.Namespace, c.Name,
		kdcv1alpha1.BackupCronJobName(c.Name), backupReadyExplanation(c))
}

// backupReadyExplanation is the BackupReady condition in words.
func backupReadyExplanation(c *kdcv1alpha1.KdcCluster) string {
	cond := meta.FindStatusCondition(c.Status.Conditions, kdcv1alpha1.ConditionBackupReady)
	if cond == nil {
		return "the controller has not reported BackupReady yet; check that the kdc-etcd-backup manager is running"
	}
	stale := ""
	if cond.ObservedGeneration != 0 && cond.ObservedGeneration != c.Generation {
		stale = " (not yet updated for the latest spec change)"
	}
	return fmt.Sprintf("BackupReady=%s, reason %s%s: %s", cond.Status, cond.Reason, stale, cond.Message)
}

// manualBackupJobSuffix is the suffix of a manual backup Job's name: -manual-<unix seconds>.
func manualBackupJobSuffix(now time.Time) string {
	return "-manual-" + strconv.FormatInt(now.Unix(), 10)
}

// manualBackupJobName is <CronJob>-manual-<unix seconds>[-n], cut to 63 characters (the Job
// name is a label value of its pods) by shortening the CronJob's part.
func manualBackupJobName(cronJob string, now time.Time, attempt int) string {
	suffix := manualBackupJobSuffix(now)
	if attempt > 1 {
		suffix += "-" + strconv.Itoa(attempt)
	}
	base := cronJob
	if limit := validation.DNS1123LabelMaxLength - len(suffix); len(base) > limit {
		base = strings.TrimRight(base[:limit], "-.")
	}
	return base + suffix
}

// manualBackupJob is what `kubectl create job --from=cronjob/NAME` creates
// (jobspec.JobFromCronJob, which the restore's fresh backup uses too).
func manualBackupJob(cj *batchv1.CronJob, name string) *batchv1.Job {
	return jobspec.JobFromCronJob(cj, name, nil)
}

// createManualBackupJob creates the manual Job, with a -2, -3, ... suffix when a Job of the same
// second exists.
func createManualBackupJob(ctx context.Context, cl client.Client, cj *batchv1.CronJob, now time.Time) (*batchv1.Job, error) {
	for attempt := 1; ; attempt++ {
		job := manualBackupJob(cj, manualBackupJobName(cj.Name, now, attempt))
		err := cl.Create(ctx, job)
		switch {
		case err == nil:
			return job, nil
		case apierrors.IsAlreadyExists(err) && attempt < 10:
			continue
		case apierrors.IsForbidden(err):
			return nil, fmt.Errorf("you may not create Job %s/%s: %w; a manual backup needs create on jobs in namespace %s", job.Namespace, job.Name, err, job.Namespace)
		}
		return nil, fmt.Errorf("failed to create Job %s/%s from CronJob %s: %w", job.Namespace, job.Name, cj.Name, err)
	}
}

// backupJobDone reports whether the Job reached Complete or Failed, and which.
func backupJobDone(job *batchv1.Job) (finished, succeeded bool) {
	for _, c := range job.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return true, true
		case batchv1.JobFailed:
			return true, false
		}
	}
	return false, false
}

// waitForBackupJob follows the Job with a watch (waitFor) until it is Complete or Failed and
// returns it.
func waitForBackupJob(ctx context.Context, cl client.WithWatch, job *batchv1.Job) (*batchv1.Job, error) {
	key := client.ObjectKeyFromObject(job)
	var done *batchv1.Job
	err := waitFor(ctx, cl, key, &batchv1.Job{}, func() client.ObjectList { return &batchv1.JobList{} }, func(obj client.Object) (bool, error) {
		j, ok := obj.(*batchv1.Job)
		if !ok || j == nil {
			return false, fmt.Errorf("backup Job %s was deleted before it finished", key)
		}
		if finished, _ := backupJobDone(j); finished {
			done = j.DeepCopy()
			return true, nil
		}
		return false, nil
	})
	return done, err
}

// backupJobOutcome is how a finished backup Job ended, from its pods.
type backupJobOutcome struct {
	succeeded bool
	// pod is the pod the result comes from, "" when no container terminated.
	pod string
	// exitCode is the backup container's exit code, -1 without a terminated container.
	exitCode int
	// reason is the container's terminated reason (Error, OOMKilled, ...).
	reason string
	// message is the termination message.
	message string
	// jobReason and jobMessage are the Job's Failed condition.
	jobReason, jobMessage string
}

// backupJobOutcomeOf takes the result from the newest pod whose container terminated (for a
// successful Job, the one that exited 0), like the controller does.
func backupJobOutcomeOf(job *batchv1.Job, pods []corev1.Pod) backupJobOutcome {
	_, ok := backupJobDone(job)
	out := backupJobOutcome{succeeded: ok, exitCode: -1}
	for _, c := range job.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
			out.jobReason, out.jobMessage = c.Reason, c.Message
		}
	}
	container := ""
	if cs := job.Spec.Template.Spec.Containers; len(cs) > 0 {
		container = cs[0].Name
	}
	if p, t := jobspec.ResultContainer(pods, container, ok); t != nil {
		out.pod, out.exitCode, out.reason, out.message = p.Name, int(t.ExitCode), t.Reason, strings.TrimSpace(t.Message)
	}
	return out
}

// backupExitMeanings explain the backup subcommand's exit codes (docs/jobs.md) and what to check.
var backupExitMeanings = map[snapshot.ExitCode]string{
	snapshot.ExitFailed:           "an unexpected failure; check the Job's logs",
	snapshot.ExitSnapshotTooSmall: "the etcd snapshot was too small (the etcd read failed), nothing was uploaded; check etcd's health",
	snapshot.ExitUsage:            "a bad argument or missing S3 credentials in the Job's environment; check the CronJob and the S3 credential Secret's keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
	snapshot.ExitBucketMissing:    "the bucket does not exist; check the ObjectBucketClaim or spec.backup.destinationPath",
	snapshot.ExitAccessDenied:     "S3 denied access; check the S3 credential Secret and its permissions on the bucket",
	snapshot.ExitS3Unreachable:    "the S3 endpoint cannot be reached from the cluster; check the endpoint and the network path to it",
	snapshot.ExitEtcdUnavailable:  "etcd cannot be reached or rejected the client certificate; check the etcd pods and the DS-etcd-certs Secret",
	snapshot.ExitIntegrity:        "the snapshot stream failed its own hash or S3 rejected a checksum; retry",
}

// backupFailedError explains a failed backup Job: the exit code and its meaning, the error
// from the termination message, and where to look.
func backupFailedError(c *kdcv1alpha1.KdcCluster, job *batchv1.Job, out backupJobOutcome) error {
	ref := job.Namespace + "/" + job.Name
	logs := fmt.Sprintf("kubectl logs -n %s job/%s", job.Namespace, job.Name)
	if out.exitCode < 0 {
		why := out.jobReason
		if why == "" {
			why = "no container result"
		}
		return fmt.Errorf("backup Job %s failed (%s) before its container finished: %s; check kubectl describe job -n %s %s and the pod events",
			ref, why, out.jobMessage, job.Namespace, job.Name)
	}
	code := snapshot.ExitCode(out.exitCode)
	var f snapshot.Failure
	detail := out.message
	if err := json.Unmarshal([]byte(out.message), &f); err == nil && f.Error != "" {
		detail = f.Error
	}
	name := code.Reason()
	if out.exitCode > 128 && out.reason != "" && out.reason != "Error" {
		name = out.reason // OOMKilled, ...
	}
	meaning, ok := backupExitMeanings[code]
	switch {
	case ok:
	case out.exitCode > 128:
		meaning = fmt.Sprintf("the container was killed by signal %d; check its memory limit and the pod events", out.exitCode-128)
	default:
		meaning = "an exit code the backup does not document"
	}
	if detail == "" {
		detail = "no termination message"
	}
	return fmt.Errorf("backup Job %s failed with exit code %d (%s): %s; %s (logs: %s; the controller reports it in KdcCluster %s/%s's BackupReady)",
		ref, out.exitCode, name, detail, meaning, logs, c.Namespace, c.Name)
}

// backupSummary is the one line a successful backup is reported with.
func backupSummary(res *snapshot.BackupResult, job *batchv1.Job) string {
	where := res.ObjectKey
	if res.Bucket != "" {
		where = "s3://" + res.Bucket + "/" + res.ObjectKey
	}
	return fmt.Sprintf("Backup %s stored in %s: %s, sha256 %s, etcd revision %d, %.1fs (Job %s/%s)",
		res.Key, where, formatSnapshotSize(res.Size), res.SHA256, res.Revision, res.DurationSeconds, job.Namespace, job.Name)
}

// backupJobNotFinishedError explains a wait that ended before the Job did, with what its pods wait
// for (image pull, scheduling), and that the Job keeps running.
func (o *Options) backupJobNotFinishedError(ctx context.Context, cl client.Client, job *batchv1.Job, timeout time.Duration, interrupted bool) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	why := "did not finish within " + timeout.String()
	if interrupted {
		why = "was still running when the wait was interrupted"
	}
	var waiting []string
	pods := &corev1.PodList{}
	if err := cl.List(ctx, pods, client.InNamespace(job.Namespace), client.MatchingLabels{batchv1.JobNameLabel: job.Name}); err == nil {
		waiting = backupPodsWaiting(pods.Items)
	}
	detail := ""
	if len(waiting) > 0 {
		detail = " (" + strings.Join(waiting, "; ") + ")"
	}
	return fmt.Errorf("backup Job %s/%s %s%s; it keeps running: kubectl get job -n %s %s; kubectl logs -n %s -f job/%s",
		job.Namespace, job.Name, why, detail, job.Namespace, job.Name, job.Namespace, job.Name)
}

// backupPodsWaiting says what unfinished pods wait for: scheduling or a waiting container.
func backupPodsWaiting(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
				out = append(out, fmt.Sprintf("pod %s is not scheduled: %s", p.Name, strings.TrimSpace(c.Reason+" "+c.Message)))
			}
		}
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && w.Reason != "" {
				out = append(out, fmt.Sprintf("pod %s container %s is waiting: %s", p.Name, cs.Name, strings.TrimSpace(w.Reason+" "+w.Message)))
			}
		}
		if len(p.Status.ContainerStatuses) == 0 && p.Status.Phase == corev1.PodPending && len(out) == 0 {
			out = append(out, fmt.Sprintf("pod %s is Pending", p.Name))
		}
	}
	return out
}
