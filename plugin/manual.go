package plugin

// `kubectl kdc restore CLUSTER --from KEY --manual`: the controller's restore, run step by step
// from the operator's machine while the manager is down (docs/plugin.md).
//
// It refuses while the manager runs (its leader-election Lease is held and fresh) or a restore
// is recorded on the cluster, applies the controller's rules and runs the controller's own Jobs
// (controller/manual_export.go), in the controller's order:
//
//	Validating            the rules; the verify Job proves the snapshot (nothing changed yet)
//	(record)              C-cp's and DS-etcd's replica counts, printed with the undo commands
//	DrainingControlPlane  C-cp to 0, until its pods are gone
//	StoppingEtcd          DS-etcd to 0, until pod DS-etcd-0 is gone
//	RestoringSnapshot     the restore Job C-etcd-restore
//	StartingEtcd          DS-etcd back, until ready (else the rollback Job, and back on the old data)
//	StartingControlPlane  C-cp back with fresh pods, until ready
//	Succeeded             a fresh backup Job from C-etcd-backup; RestoreReady and latestRestore*
//
// Any failure after the drain began brings etcd and the control plane back to the recorded
// counts before the error is returned, like the controller's recovery. Every wait is driven by
// watches and bounded by --timeout. The KdcCluster's metadata is never written (its webhooks are
// down with the manager and fail closed); its status is, on a best-effort basis.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/controller"
)

// Defaults of the manual restore's flags: where the manager's leader-election Lease is.
const (
	defaultManagerNamespace = "kdc-etcd-backup-system"
	defaultLeaderElectionID = "kdc-etcd-backup-manager"
	defaultManualTimeout    = 10 * time.Minute
)

// manualPhaseRecovering labels the lines of bringing the cluster back after a failure (the
// controller's recovery, which has no phase of its own).
const manualPhaseRecovering kdcv1alpha1.RestorePhase = "Recovering"

// manualFlags are the flags of `restore --manual`.
type manualFlags struct {
	// Image is the image of the Jobs; default: the backup CronJob's.
	Image string
	// JobS3Endpoint is the manager's S3_ENDPOINT: the Jobs' endpoint when neither the KdcCluster
	// nor the ObjectBucketClaim names one; default: the backup CronJob's --s3-endpoint.
	JobS3Endpoint string
	// Timeout bounds each step's wait: restore's --timeout when given, else
	// defaultManualTimeout (set by the restore command).
	Timeout time.Duration
	// ManagerNamespace and LeaderElectionID locate the manager's leader-election Lease.
	ManagerNamespace string
	LeaderElectionID string
}

// AddFlags adds the manual restore's flags to fs.
func (f *manualFlags) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.Image, "image", "", "with --manual: image of the verify, restore and rollback Jobs (the manager's image); default: the image of the cluster's backup CronJob C-etcd-backup")
	fs.StringVar(&f.JobS3Endpoint, "job-s3-endpoint", "", "with --manual: S3 endpoint of the Jobs when neither spec.backup.s3Endpoint nor the ObjectBucketClaim names one (the manager's S3_ENDPOINT); default: the backup CronJob's")
	fs.StringVar(&f.ManagerNamespace, "manager-namespace", defaultManagerNamespace, "with --manual: namespace of the manager's leader-election Lease")
	fs.StringVar(&f.LeaderElectionID, "leader-election-id", defaultLeaderElectionID, "with --manual: name of the manager's leader-election Lease")
}

// stepError is a failed step: the restore failure reason (docs/restore.md) and what happened.
type stepError struct {
	reason string
	detail string
}

func (e *stepError) Error() string { return e.reason + ": " + e.detail }

// manualRun is one manual restore.
type manualRun struct {
	o     *Options
	f     *manualFlags
	cl    client.WithWatch
	c     *kdcv1alpha1.KdcCluster
	key   string
	start time.Time
	// attempt is the restore-attempt value of the Jobs and the restarted-at value of C-cp.
	attempt string
	in      controller.RestoreJobInputs
	deploy  *appsv1.Deployment
	sts     *appsv1.StatefulSet
	// cpReplicas and etcdReplicas are the counts recorded before the drain.
	cpReplicas, etcdReplicas int32
	phase                    kdcv1alpha1.RestorePhase

	// What was changed, for the recovery and the failure message.
	cpTouched, etcdTouched bool
	restoreJob             *batchv1.Job
	restoreJobDone         bool
	swapped                bool
	rolledBack             bool
	rollbackFailure        string
}

// manualRestore restores key into c without the manager (see the top of this file).
func (o *Options) manualRestore(ctx context.Context, c *kdcv1alpha1.KdcCluster, key string, f *manualFlags) error {
	cl, err := o.Client()
	if err != nil {
		return err
	}
	if f.Timeout <= 0 {
		f.Timeout = defaultManualTimeout
	}
	m := &manualRun{o: o, f: f, cl: cl, c: c, key: key, start: o.now()}
	m.attempt = m.start.UTC().Format(time.RFC3339Nano)
	m.logf("Manual restore of KdcCluster %s/%s from %q without the manager, started %s", c.Namespace, c.Name, key, m.start.UTC().Format(time.RFC3339))
	if err := m.preflight(ctx); err != nil {
		return err
	}
	release, err := m.holdLease(ctx)
	if err != nil {
		return err
	}
	defer release()
	m.phase = kdcv1alpha1.PhaseValidating
	if err := m.verify(ctx); err != nil {
		return m.recover(ctx, err)
	}
	m.record()
	m.setStatus(ctx, metav1.ConditionUnknown, kdcv1alpha1.ReasonRestoreRunning,
		fmt.Sprintf("Restore from %q in progress (manual: kubectl kdc restore --manual)", key), false)
	for _, step := range []func(context.Context) error{m.drain, m.stopEtcd, m.restoreSnapshot, m.startEtcd, m.startControlPlane} {
		if err := step(ctx); err != nil {
			return m.recover(ctx, err)
		}
	}
	return m.finish(ctx)
}

// logf prints one step: the wall-clock time, the time since the start and the phase.
func (m *manualRun) logf(format string, args ...any) {
	now := m.o.now()
	phase := string(m.phase)
	if phase == "" {
		phase = "-"
	}
	fmt.Fprintf(m.o.Out, "%s %8s  %-21s %s\n", now.UTC().Format("15:04:05"), elapsed(now.Sub(m.start)), phase, fmt.Sprintf(format, args...))
}

// elapsed formats a duration since the start: +4.2s, +1m03.5s.
func elapsed(d time.Duration) string {
	d = d.Round(100 * time.Millisecond)
	if d < time.Minute {
		return fmt.Sprintf("+%.1fs", d.Seconds())
	}
	return fmt.Sprintf("+%dm%04.1fs", int(d/time.Minute), (d % time.Minute).Seconds())
}

// warnf prints a warning that does not stop the restore.
func (m *manualRun) warnf(format string, args ...any) {
	fmt.Fprintf(m.o.ErrOut, "Warning: "+format+"\n", args...)
}

// preflight refuses, before anything is created or changed, when the manager runs, a restore is
// recorded, a rule is broken or an input of the Jobs cannot be resolved.
func (m *manualRun) preflight(ctx context.Context) error {
	c := m.c
	if kdcv1alpha1.RestoreRunning(c.Annotations) {
		return fmt.Errorf("%s: a restore from %q is recorded on KdcCluster %s/%s in phase %s; the manager runs it when it is up. Wait until it ends (kubectl get kdc-cl -n %s %s)",
			kdcv1alpha1.ReasonRestoreInProgress, c.Annotations[kdcv1alpha1.AnnotationRestoreFrom], c.Namespace, c.Name,
			kdcv1alpha1.RestorePhaseOf(c.Annotations), c.Namespace, c.Name)
	}
	if err := m.checkManagerDown(ctx); err != nil {
		return err
	}
	if pending := c.Annotations[kdcv1alpha1.AnnotationRestoreFrom]; pending != "" {
		m.warnf("KdcCluster %s/%s carries %s=%q: the manager will run that restore when it starts again, after this one", c.Namespace, c.Name, kdcv1alpha1.AnnotationRestoreFrom, pending)
	}
	if err := controller.CheckRestoreKey(c, m.key); err != nil {
		return m.refuse(err)
	}
	ds, err := controller.CheckRestoreDataStore(ctx, m.cl, c)
	if err != nil {
		return m.refuse(err)
	}
	if m.deploy, m.sts, err = controller.RestoreWorkloads(ctx, m.cl, c); err != nil {
		return m.refuse(err)
	}
	cj, err := m.backupCronJob(ctx)
	if err != nil {
		return err
	}
	opts := controller.Options{Image: m.f.Image, S3Endpoint: m.f.JobS3Endpoint}
	imageFrom := "--image"
	if opts.Image == "" && cj != nil {
		opts.Image, imageFrom = cronJobImage(cj), "CronJob "+cj.Namespace+"/"+cj.Name
	}
	if opts.Image == "" {
		return fmt.Errorf("no image for the restore Jobs: CronJob %s/%s does not exist (backups disabled?) or names none; pass --image with the manager's image",
			c.Namespace, kdcv1alpha1.BackupCronJobName(c.Name))
	}
	if opts.S3Endpoint == "" && cj != nil {
		opts.S3Endpoint = cronJobArg(cj, "--s3-endpoint")
	}
	if m.in, err = controller.ResolveRestoreJobInputs(ctx, m.cl, c, m.key, m.attempt, opts, m.sts); err != nil {
		if controller.RestoreReasonOf(err) == kdcv1alpha1.ReasonS3NotAvailable {
			err = fmt.Errorf("%w (or pass --job-s3-endpoint)", err)
		}
		return m.refuse(err)
	}
	m.phase = kdcv1alpha1.PhaseValidating
	name, dataDir := m.in.EtcdMember()
	m.logf("Key %q belongs to the cluster; KdcClusterDatastore %s/%s runs %d etcd replica", m.key, ds.Namespace, ds.Name, ds.Spec.Etcd.Replicas)
	m.logf("Jobs run %s (from %s); snapshot in %s at %s", m.in.Image(), imageFrom, m.in.Destination(), m.in.Endpoint())
	m.logf("etcd member %s, data directory %s on PVC %s/%s", name, dataDir, c.DataStoreNamespace(), kdcv1alpha1.EtcdDataPVCName(c.DataStore()))
	return nil
}

// refuse wraps a broken rule found before anything was changed.
func (m *manualRun) refuse(err error) error {
	return fmt.Errorf("restore from %q refused, nothing was changed: %w", m.key, err)
}

// checkManagerDown refuses while the manager's leader-election Lease is held and fresh.
func (m *manualRun) checkManagerDown(ctx context.Context) error {
	lease := &coordinationv1.Lease{}
	key := client.ObjectKey{Namespace: m.f.ManagerNamespace, Name: m.f.LeaderElectionID}
	err := m.cl.Get(ctx, key, lease)
	if apierrors.IsNotFound(err) {
		m.logf("Manager: no leader-election Lease %s/%s; not running", key.Namespace, key.Name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot read the manager's leader-election Lease %s/%s to make sure it is down: %w (set --manager-namespace and --leader-election-id to where the manager runs)",
			key.Namespace, key.Name, err)
	}
	holder := ""
	if lease.Spec.HolderIdentity != nil {
		holder = *lease.Spec.HolderIdentity
	}
	now := m.o.now()
	var expires time.Time
	if lease.Spec.RenewTime != nil {
		d := int32(0)
		if lease.Spec.LeaseDurationSeconds != nil {
			d = *lease.Spec.LeaseDurationSeconds
		}
		expires = lease.Spec.RenewTime.Add(time.Duration(d) * time.Second)
	}
	if holder != "" && expires.After(now) {
		return fmt.Errorf("the manager is running: its leader-election Lease %s/%s is held by %q until %s (renewed %s ago). "+
			"Use the annotation instead: kubectl annotate kdccluster -n %s %s %s=%s (or stop the manager first, then retry --manual)",
			key.Namespace, key.Name, holder, expires.UTC().Format(time.RFC3339), now.Sub(lease.Spec.RenewTime.Time).Round(time.Second),
			m.c.Namespace, m.c.Name, kdcv1alpha1.AnnotationRestoreFrom, m.key)
	}
	switch {
	case holder == "":
		m.logf("Manager: Lease %s/%s is held by nobody; not running", key.Namespace, key.Name)
	default:
		m.logf("Manager: Lease %s/%s of %q expired %s ago; not running", key.Namespace, key.Name, holder, now.Sub(expires).Round(time.Second))
	}
	return nil
}

// backupCronJob returns C-etcd-backup, or nil when it does not exist.
func (m *manualRun) backupCronJob(ctx context.Context) (*batchv1.CronJob, error) {
	cj := &batchv1.CronJob{}
	err := m.cl.Get(ctx, client.ObjectKey{Namespace: m.c.Namespace, Name: kdcv1alpha1.BackupCronJobName(m.c.Name)}, cj)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to get CronJob %s/%s: %w", m.c.Namespace, kdcv1alpha1.BackupCronJobName(m.c.Name), err)
	}
	return cj, nil
}

// cronJobImage is the image of the backup container of the CronJob (the manager's image).
func cronJobImage(cj *batchv1.CronJob) string {
	cs := cj.Spec.JobTemplate.Spec.Template.Spec.Containers
	for _, ctr := range cs {
		if ctr.Name == "backup" {
			return ctr.Image
		}
	}
	if len(cs) > 0 {
		return cs[0].Image
	}
	return ""
}

// cronJobArg is the value of --flag=value in the CronJob's first container's arguments.
func cronJobArg(cj *batchv1.CronJob, flag string) string {
	for _, ctr := range cj.Spec.JobTemplate.Spec.Template.Spec.Containers {
		for _, a := range ctr.Args {
			if v, ok := strings.CutPrefix(a, flag+"="); ok {
				return v
			}
		}
	}
	return ""
}

// verify runs the verify Job: nothing disruptive happens before the snapshot is proven present
// and intact.
func (m *manualRun) verify(ctx context.Context) error {
	_, outcome, err := m.runJob(ctx, controller.BuildVerifyJob(m.c, m.in), kdcv1alpha1.ReasonSnapshotUnavailable)
	if err != nil {
		var se *stepError
		if errors.As(err, &se) && outcome == controller.JobFailed {
			se.detail += "; pick another snapshot"
		}
		return err
	}
	m.logf("Snapshot %q verified (checksum, size, etcd hash)", m.key)
	return nil
}

// record prints the replica counts the restore brings back, and how to do it by hand.
func (m *manualRun) record() {
	m.cpReplicas, m.etcdReplicas = controller.Replicas(m.deploy.Spec.Replicas), controller.Replicas(m.sts.Spec.Replicas)
	m.logf("Recorded: Deployment %s/%s has %d replicas, StatefulSet %s/%s %d. To bring them back by hand:",
		m.deploy.Namespace, m.deploy.Name, m.cpReplicas, m.sts.Namespace, m.sts.Name, m.etcdReplicas)
	for _, cmd := range m.undoCommands() {
		fmt.Fprintf(m.o.Out, "%41s%s\n", "", cmd)
	}
}

// undoCommands are the kubectl commands that bring etcd, then the control plane, back.
func (m *manualRun) undoCommands() []string {
	return []string{
		fmt.Sprintf("kubectl scale -n %s statefulset/%s --replicas=%d", m.sts.Namespace, m.sts.Name, m.etcdReplicas),
		fmt.Sprintf("kubectl scale -n %s deployment/%s --replicas=%d", m.deploy.Namespace, m.deploy.Name, m.cpReplicas),
	}
}

// drain is DrainingControlPlane: C-cp to 0, until none of its pods exists.
func (m *manualRun) drain(ctx context.Context) error {
	m.phase = kdcv1alpha1.PhaseDrainingControlPlane
	m.cpTouched = true
	if err := m.scaleDeployment(ctx, 0, ""); err != nil {
		return &stepError{kdcv1alpha1.ReasonDrainFailed, err.Error()}
	}
	if err := m.waitDrained(ctx, kdcv1alpha1.ReasonDrainFailed); err != nil {
		return err
	}
	m.logf("Control plane drained: no pod of Deployment %s/%s left", m.deploy.Namespace, m.deploy.Name)
	return nil
}

// stopEtcd is StoppingEtcd: DS-etcd to 0, until pod DS-etcd-0 is gone.
func (m *manualRun) stopEtcd(ctx context.Context) error {
	m.phase = kdcv1alpha1.PhaseStoppingEtcd
	m.etcdTouched = true
	if err := m.scaleStatefulSet(ctx, 0); err != nil {
		return &stepError{kdcv1alpha1.ReasonEtcdStopFailed, err.Error()}
	}
	if err := m.waitEtcdStopped(ctx, kdcv1alpha1.ReasonEtcdStopFailed); err != nil {
		return err
	}
	m.logf("etcd stopped: pod %s/%s is gone", m.sts.Namespace, kdcv1alpha1.EtcdPodName(m.c.DataStore()))
	return nil
}

// restoreSnapshot is RestoringSnapshot: the restore Job.
func (m *manualRun) restoreSnapshot(ctx context.Context) error {
	m.phase = kdcv1alpha1.PhaseRestoringSnapshot
	job, outcome, err := m.runJob(ctx, controller.BuildRestoreJob(m.c, m.in), kdcv1alpha1.ReasonRestoreJobFailed)
	m.restoreJob, m.restoreJobDone = job, outcome != controller.JobPending
	if err != nil {
		return err
	}
	m.swapped = true
	m.logf("Snapshot restored into %s (the previous data is kept beside it)", kdcv1alpha1.EtcdDataPVCName(m.c.DataStore()))
	if _, job, pods, err := m.jobOutcome(ctx, job); err != nil {
		m.warnf("cannot read the restore Job's result: %v", err)
	} else if rev, ok := controller.RestoreJobRevision(job, pods); ok {
		m.logf("Restored %s", rev.Describe())
	}
	return nil
}

// startEtcd is StartingEtcd: DS-etcd back to the recorded count, until ready.
func (m *manualRun) startEtcd(ctx context.Context) error {
	m.phase = kdcv1alpha1.PhaseStartingEtcd
	if err := m.scaleStatefulSet(ctx, m.etcdReplicas); err != nil {
		return &stepError{kdcv1alpha1.ReasonEtcdStartFailed, err.Error()}
	}
	if err := m.waitStatefulSetReady(ctx, kdcv1alpha1.ReasonEtcdStartFailed, "on the restored data"); err != nil {
		return err
	}
	m.logf("etcd ready on the restored data")
	return nil
}

// startControlPlane is StartingControlPlane: C-cp back to the recorded count with fresh pods.
func (m *manualRun) startControlPlane(ctx context.Context) error {
	m.phase = kdcv1alpha1.PhaseStartingControlPlane
	if err := m.scaleDeployment(ctx, m.cpReplicas, m.attempt); err != nil {
		return &stepError{kdcv1alpha1.ReasonControlPlaneStartFailed, err.Error()}
	}
	if err := m.waitDeploymentReady(ctx, kdcv1alpha1.ReasonControlPlaneStartFailed); err != nil {
		return err
	}
	m.logf("Control plane ready with fresh pods")
	return nil
}

// finish ends a successful restore like the controller: a fresh backup, the restore and verify
// Jobs deleted, RestoreReady=True and latestRestoreKey/Time.
func (m *manualRun) finish(ctx context.Context) error {
	m.phase = kdcv1alpha1.PhaseSucceeded
	c := m.c
	if cj, err := m.backupCronJob(ctx); err != nil {
		m.warnf("no fresh backup: %v", err)
	} else if cj == nil {
		m.logf("No backup CronJob %s/%s: no fresh backup", c.Namespace, kdcv1alpha1.BackupCronJobName(c.Name))
	} else {
		job := controller.BuildFreshBackupJob(c, cj, m.attempt)
		if err := m.cl.Create(ctx, job); err != nil && !apierrors.IsAlreadyExists(err) {
			m.warnf("failed to start the fresh backup Job %s/%s: %v; start one with: kubectl create job -n %s --from=cronjob/%s",
				job.Namespace, job.Name, err, cj.Namespace, cj.Name)
		} else {
			m.logf("Started backup Job %s/%s from the restored state", job.Namespace, job.Name)
		}
	}
	for _, j := range []client.ObjectKey{
		{Namespace: c.DataStoreNamespace(), Name: kdcv1alpha1.RestoreJobName(c.Name)},
		{Namespace: c.Namespace, Name: kdcv1alpha1.VerifyJobName(c.Name)},
	} {
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: j.Namespace, Name: j.Name}}
		if err := m.cl.Delete(ctx, job, client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
			m.warnf("failed to delete Job %s/%s: %v", j.Namespace, j.Name, err)
		}
	}
	msg := controller.RestoreSucceededMessage(m.key)
	m.setStatus(ctx, metav1.ConditionTrue, kdcv1alpha1.ReasonRestoreSucceeded, msg, true)
	m.logf("%s in %s", msg, m.o.now().Sub(m.start).Round(100*time.Millisecond))
	return nil
}

// setStatus writes RestoreReady (and, on success, latestRestoreKey/Time) like the controller,
// with an optimistic lock so BackupReady is never overwritten; a failure is only a warning: the
// cluster itself is what the restore is about.
func (m *manualRun) setStatus(ctx context.Context, status metav1.ConditionStatus, reason, msg string, latest bool) {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		c := &kdcv1alpha1.KdcCluster{}
		if err := m.cl.Get(ctx, client.ObjectKeyFromObject(m.c), c); err != nil {
			return err
		}
		orig := c.DeepCopy()
		controller.SetRestoreReady(c, status, reason, msg)
		if latest {
			c.Status.LatestRestoreKey = m.key
			c.Status.LatestRestoreTime = &metav1.Time{Time: m.o.now().UTC()}
		}
		return m.cl.Status().Patch(ctx, c, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
	})
	if err != nil {
		m.warnf("could not record RestoreReady=%s on KdcCluster %s/%s: %v", status, m.c.Namespace, m.c.Name, err)
	}
}

// recover brings the cluster back after a failed step, like the controller's recovery, and
// returns the failure: stop an unfinished restore Job; roll back when the snapshot was swapped in
// and etcd did not prove healthy on it; etcd and the control plane back to the recorded counts.
// It runs even when ctx was cancelled (Ctrl-C), each wait bounded by --timeout.
func (m *manualRun) recover(ctx context.Context, failure error) error {
	var se *stepError
	if !errors.As(failure, &se) {
		se = &stepError{reason: kdcv1alpha1.ReasonRestoreFailed, detail: failure.Error()}
	}
	failedIn := m.phase
	if ctx.Err() != nil {
		// Ctrl-C (or the caller's deadline): the operator cancelled the restore.
		se = &stepError{reason: kdcv1alpha1.ReasonRestoreCancelled, detail: fmt.Sprintf("interrupted in %s (%v)", failedIn, context.Cause(ctx))}
	}
	rctx := context.WithoutCancel(ctx)
	m.phase = manualPhaseRecovering
	switch {
	case !m.cpTouched:
	case se.reason == kdcv1alpha1.ReasonRestoreCancelled:
		m.logf("Interrupted in %s; bringing etcd and the control plane back", failedIn)
	default:
		m.logf("%s failed (%s): %s; bringing etcd and the control plane back", failedIn, se.reason, strings.TrimPrefix(se.detail, se.reason+": "))
	}
	var notReady []string
	keepOff := false

	// 1. No restore Job may run any more (also one whose creation was interrupted after the
	// API server took it).
	if m.restoreJob == nil && failedIn == kdcv1alpha1.PhaseRestoringSnapshot {
		j := &batchv1.Job{}
		key := client.ObjectKey{Namespace: m.c.DataStoreNamespace(), Name: kdcv1alpha1.RestoreJobName(m.c.Name)}
		if err := m.cl.Get(rctx, key, j); err == nil && j.Annotations[kdcv1alpha1.AnnotationRestoreAttempt] == m.attempt {
			m.restoreJob = j
		}
	}
	if m.restoreJob != nil && !m.restoreJobDone {
		switch out, _, _, err := m.jobOutcome(rctx, m.restoreJob); {
		case err == nil && out == controller.JobSucceeded:
			m.swapped = true
		case err == nil && out == controller.JobFailed:
		default:
			m.logf("Stopping the unfinished restore Job %s/%s", m.restoreJob.Namespace, m.restoreJob.Name)
			if err := m.deleteJobAndWait(rctx, m.restoreJob, metav1.DeletePropagationForeground); err != nil {
				notReady = append(notReady, "the restore Job did not stop: "+err.Error())
				keepOff = true
			}
		}
	}
	// 2. Roll back to the previous data.
	rollback := m.swapped && se.reason != kdcv1alpha1.ReasonControlPlaneStartFailed
	if rollback && !keepOff {
		m.rollback(rctx)
	}
	waitReady := se.reason != kdcv1alpha1.ReasonControlPlaneStartFailed
	// 3. etcd back up.
	if m.etcdTouched && !keepOff {
		if err := m.scaleStatefulSet(rctx, m.etcdReplicas); err != nil {
			notReady = append(notReady, err.Error())
		} else if waitReady {
			if err := m.waitStatefulSetReady(rctx, kdcv1alpha1.ReasonEtcdStartFailed, ""); err != nil {
				notReady = append(notReady, "etcd is not ready: "+err.Error())
			} else {
				m.logf("etcd ready")
			}
		}
	}
	// 4. Control plane back up, with fresh pods.
	if m.cpTouched && !keepOff {
		if err := m.scaleDeployment(rctx, m.cpReplicas, m.attempt); err != nil {
			notReady = append(notReady, err.Error())
		} else if waitReady && len(notReady) == 0 {
			if err := m.waitDeploymentReady(rctx, kdcv1alpha1.ReasonControlPlaneStartFailed); err != nil {
				notReady = append(notReady, "the control plane is not ready: "+err.Error())
			} else {
				m.logf("Control plane ready")
			}
		}
	}
	// 5. Report.
	msg := controller.RestoreFailureMessage(m.key, se.reason, se.detail, controller.RestoreOutcome{
		Disrupted: m.cpTouched, Swapped: m.swapped, RolledBack: m.rolledBack, RollbackFailure: m.rollbackFailure, NotReady: notReady,
	})
	if m.restoreJob != nil || m.cpTouched || failedIn == kdcv1alpha1.PhaseValidating {
		m.setStatus(rctx, metav1.ConditionFalse, kdcv1alpha1.ReasonRestoreFailed, msg, false)
	}
	m.phase = kdcv1alpha1.PhaseFailed
	m.logf("%s", msg)
	if len(notReady) > 0 || keepOff {
		return fmt.Errorf("%s\nbring the cluster back by hand once the cause is fixed:\n  %s", msg, strings.Join(m.undoCommands(), "\n  "))
	}
	return errors.New(msg)
}

// rollback stops etcd and runs the rollback Job, which swaps the previous data back.
func (m *manualRun) rollback(ctx context.Context) {
	fail := func(why string) {
		m.rollbackFailure = why
		m.logf("Rollback failed: %s; etcd comes back on the restored data", why)
	}
	m.logf("Rolling back: stopping etcd to swap the previous data back")
	if err := m.scaleStatefulSet(ctx, 0); err != nil {
		fail(err.Error())
		return
	}
	if err := m.waitEtcdStopped(ctx, kdcv1alpha1.ReasonEtcdStartFailed); err != nil {
		fail("etcd did not stop")
		return
	}
	if _, _, err := m.runJob(ctx, controller.BuildRollbackJob(m.c, m.in), kdcv1alpha1.ReasonEtcdStartFailed); err != nil {
		var se *stepError
		if errors.As(err, &se) {
			fail(se.detail)
		} else {
			fail(err.Error())
		}
		return
	}
	m.rolledBack = true
	m.logf("Rolled back: the previous data is in place again")
}
