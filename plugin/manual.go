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
	"fmt"
	"time"

	"github.com/spf13/pflag"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/engine"
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

// manualRun is one manual restore: the engine's driver with the record in memory.
type manualRun struct {
	o   *Options
	f   *manualFlags
	cl  client.WithWatch
	c   *kdcv1alpha1.KdcCluster
	key string
	// start is when the manual restore began, for the elapsed time of each line.
	start time.Time
	e     *engine.Engine
	plan  *engine.Plan
	w     *engine.Workloads
	run   *engine.Restore
	// undo are the kubectl commands that bring what the restore scaled down back, in order.
	undo []string
	// lastWait is the last waiting status printed.
	lastWait string
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
	m.logf("Manual restore of KdcCluster %s/%s from %q without the manager, started %s", c.Namespace, c.Name, key, m.start.UTC().Format(time.RFC3339))
	if err := m.preflight(ctx); err != nil {
		return err
	}
	release, err := m.holdLease(ctx)
	if err != nil {
		return err
	}
	defer release()
	return m.drive(ctx)
}

// logf prints one line: the wall-clock time, the time since the start and the phase.
func (m *manualRun) logf(format string, args ...any) {
	now := m.o.now()
	phase := "-"
	if r := m.run; r != nil {
		switch {
		case r.Outcome != nil && r.Outcome.Succeeded:
			phase = string(kdcv1alpha1.PhaseSucceeded)
		case r.Outcome != nil:
			phase = string(kdcv1alpha1.PhaseFailed)
		case r.Failed():
			phase = string(manualPhaseRecovering)
		case r.Phase() != "":
			phase = string(r.Phase())
		}
	} else if m.plan != nil {
		phase = string(kdcv1alpha1.PhaseValidating)
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
// recorded, a rule is broken or an input of the Jobs cannot be resolved (engine.Prepare).
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
	if v := engine.CheckKey(c.Name, m.key); v != nil {
		return m.refuse(v)
	}
	cj, err := m.backupCronJob(ctx)
	if err != nil {
		return err
	}
	image, imageFrom := m.f.Image, "--image"
	if image == "" && cj != nil {
		image, imageFrom = cronJobImage(cj), "CronJob "+cj.Namespace+"/"+cj.Name
	}
	endpoint := m.f.JobS3Endpoint
	if endpoint == "" && cj != nil {
		endpoint = cronJobS3Endpoint(cj)
	}
	t := m.f.Timeout
	m.e = &engine.Engine{Client: m.cl, Live: m.cl, Image: image, S3Endpoint: endpoint, Clock: m.o.Clock,
		Timeouts: engine.Timeouts{Validating: t, Drain: t, EtcdStop: t, RestoreJob: t, EtcdStart: t, ControlPlaneStart: t, Recovery: t}}
	if image == "" {
		return fmt.Errorf("no image for the restore Jobs: CronJob %s/%s does not exist (backups disabled?) or names none; pass --image with the manager's image",
			c.Namespace, kdcv1alpha1.BackupCronJobName(c.Name))
	}
	plan, w, err := m.e.Prepare(ctx, c, m.key)
	if v := engine.AsViolation(err); v != nil {
		if v.Reason == kdcv1alpha1.ReasonS3NotAvailable {
			v.Detail += " (or pass --job-s3-endpoint)"
		}
		return m.refuse(v)
	}
	if err != nil {
		return err
	}
	m.plan, m.w = plan, w
	m.logf("Key %q belongs to the cluster; the datastore runs %d etcd replica(s)", m.key, engine.Replicas(w.Etcd.Spec.Replicas))
	m.logf("Jobs run %s (from %s); snapshot in %s at %s", plan.Image, imageFrom, plan.Location.DestinationPath(), plan.Location.Endpoint)
	switch {
	case plan.Mode == engine.ModePrefix:
		m.logf("Shared datastore (%s): the keys under %s/ are restored through the etcd API; etcd stays up", plan.ModeReason, plan.EtcdPrefix)
	case len(plan.Members) > 1:
		m.logf("%d etcd members, each restored from the snapshot on its own PVC and swapped in at one revision", len(plan.Members))
	default:
		m.logf("etcd member %s, data directory %s on PVC %s/%s", plan.Member.Name, plan.Member.DataDir, c.DataStoreNamespace(), kdcv1alpha1.EtcdDataPVCName(c.DataStore()))
	}
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
