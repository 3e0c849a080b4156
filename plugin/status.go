package plugin

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/spf13/cobra"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/schedule"
)

// Health is the backup health of one cluster, as `kubectl kdc status` shows it.
type Health string

const (
	// HealthOK: BackupReady is True and the last backup is recent.
	HealthOK Health = "OK"
	// HealthDisabled: backups are disabled by spec.backup.enabled=false.
	HealthDisabled Health = "Disabled"
	// HealthFailing: BackupReady is False for a reason other than Disabled or BackupStale.
	HealthFailing Health = "Failing"
	// HealthStale: the last backup is older than twice the schedule interval, reported by the
	// controller (BackupStale) or computed here (the controller may not be running to report it).
	HealthStale Health = "Stale"
	// HealthUnknown: the cluster has no BackupReady verdict; the manager has not seen it.
	HealthUnknown Health = "Unknown"
)

// needsAttention reports whether h is shown in the summary below the table.
func (h Health) needsAttention() bool {
	return h == HealthFailing || h == HealthStale || h == HealthUnknown
}

// ClusterStatus is one row of `kubectl kdc status` (and one item of its -o json|yaml).
type ClusterStatus struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Health    Health `json:"health"`
	// BackupReason is the BackupReady reason, "" when there is none.
	BackupReason string `json:"backupReason,omitempty"`
	Message      string `json:"message,omitempty"`
	Schedule     string `json:"schedule"`
	// ScheduleOffset is how far the CronJob's schedule is moved from spec.backup.schedule to
	// spread the fleet's backups ("" when the CronJob is not readable).
	ScheduleOffset string `json:"scheduleOffset,omitempty"`
	// BackupJob is Waiting while a backup Job waits for its turn, Running while one runs.
	BackupJob string `json:"backupJob,omitempty"`
	// Mode is how the backups run: whole-etcd (dedicated datastore) or prefix (shared one).
	Mode           string     `json:"mode,omitempty"`
	LastBackupKey  string     `json:"lastBackupKey,omitempty"`
	LastBackupTime *time.Time `json:"lastBackupTime,omitempty"`
	// Restore is the running restore phase, else the outcome of the last restore
	// (RestoreReady reason), else "".
	Restore string `json:"restore,omitempty"`
}

// assessCluster computes the backup health of c at now. A BackupReady=True condition is not
// trusted blindly: the controller reports BackupStale only while it runs, so a last backup older
// than its stale deadline (schedule.StaleDeadline) is Stale here too.
func assessCluster(c *kdcv1alpha1.KdcCluster, run backupRun, now time.Time) ClusterStatus {
	st := ClusterStatus{
		Namespace:      c.Namespace,
		Name:           c.Name,
		Schedule:       cmp.Or(run.Schedule, c.BackupSchedule()),
		ScheduleOffset: run.Offset,
		BackupJob:      run.Job,
		Mode:           run.Mode,
		LastBackupKey:  c.Status.LatestBackupKey,
	}
	if t := c.Status.LatestBackupTime; t != nil {
		tt := t.UTC()
		st.LastBackupTime = &tt
	}
	if phase := kdcv1alpha1.RestorePhaseOf(c.Annotations); phase != "" {
		st.Restore = string(phase)
	} else if rc := meta.FindStatusCondition(c.Status.Conditions, kdcv1alpha1.ConditionRestoreReady); rc != nil {
		st.Restore = rc.Reason
	}

	cond := meta.FindStatusCondition(c.Status.Conditions, kdcv1alpha1.ConditionBackupReady)
	switch {
	case cond == nil:
		st.Health = HealthUnknown
		st.Message = "no BackupReady condition yet; check that the kdc-etcd-backup manager is running"
		return st
	case cond.Reason == kdcv1alpha1.ReasonDisabled:
		st.Health, st.BackupReason, st.Message = HealthDisabled, cond.Reason, cond.Message
		return st
	case cond.Reason == kdcv1alpha1.ReasonBackupStale:
		st.Health, st.BackupReason, st.Message = HealthStale, cond.Reason, cond.Message
		return st
	case cond.Status == "False":
		st.Health, st.BackupReason, st.Message = HealthFailing, cond.Reason, cond.Message
		return st
	case cond.Status != "True":
		st.Health, st.BackupReason, st.Message = HealthUnknown, cond.Reason, cond.Message
		return st
	}
	st.Health, st.BackupReason = HealthOK, cond.Reason

	ref, what := c.CreationTimestamp.Time, "no backup has succeeded since the cluster was created"
	if st.LastBackupTime != nil {
		ref, what = *st.LastBackupTime, "the last backup succeeded"
	}
	deadline, interval, err := schedule.StaleDeadline(st.Schedule, ref)
	if err != nil || ref.IsZero() || !now.After(deadline) {
		return st
	}
	st.Health = HealthStale
	st.Message = fmt.Sprintf("%s %s ago, more than twice the schedule interval (%s) and not reported by the controller; check that the kdc-etcd-backup manager is running",
		what, duration.HumanDuration(now.Sub(ref)), interval)
	return st
}

// sortStatuses puts the clusters that need attention first, then orders by namespace and name.
func sortStatuses(rows []ClusterStatus) {
	slices.SortStableFunc(rows, func(a, b ClusterStatus) int {
		if a.Health.needsAttention() != b.Health.needsAttention() {
			if a.Health.needsAttention() {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
}

// statusOptions are the flags of `kubectl kdc status`.
type statusOptions struct {
	allNamespaces bool
	output        string
}

func newStatusCommand(o *Options) *cobra.Command {
	so := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status [CLUSTER...]",
		Short: "Show the backup health of every cluster; failing and stale backups first",
		Long: `Show the backup health of KdcClusters: the BackupReady reason, the age of the last backup, the
schedule and the restore phase. Clusters whose backups fail, are stale or were never assessed are
listed first and explained below the table.

A backup is Stale when the last success is older than twice the schedule interval. status checks
this itself, so a stale backup shows even when the manager is not running to report it.`,
		Example: `  # Every cluster in every namespace
  kubectl kdc status -A

  # Two clusters of the current namespace, as JSON
  kubectl kdc status tenant-a tenant-b -o json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validateOutput(so.output); err != nil {
				return err
			}
			rows, err := o.clusterStatuses(cmd.Context(), so.allNamespaces, args)
			if err != nil {
				return err
			}
			if so.output != "" {
				return printStructured(o.Out, so.output, rows)
			}
			return printStatusTable(o.Out, rows, so.allNamespaces, o.now())
		},
	}
	cmd.Flags().BoolVarP(&so.allNamespaces, "all-namespaces", "A", false, "list the clusters of every namespace")
	cmd.Flags().StringVarP(&so.output, "output", "o", "", "output format: json or yaml (default: a table)")
	return cmd
}

// clusterStatuses lists the clusters (all namespaces, or the current one, optionally only the
// named ones) and assesses each.
func (o *Options) clusterStatuses(ctx context.Context, all bool, names []string) ([]ClusterStatus, error) {
	if all && len(names) > 0 {
		return nil, fmt.Errorf("cluster names cannot be combined with --all-namespaces; name clusters of one namespace with -n")
	}
	c, err := o.Client()
	if err != nil {
		return nil, err
	}
	var opts []client.ListOption
	ns := ""
	if !all {
		if ns, err = o.Namespace(); err != nil {
			return nil, err
		}
		opts = append(opts, client.InNamespace(ns))
	}
	list := &kdcv1alpha1.KdcClusterList{}
	if err := c.List(ctx, list, opts...); err != nil {
		return nil, fmt.Errorf("failed to list KdcClusters: %w", err)
	}
	runs := o.backupRuns(ctx, c, opts)
	now := o.now()
	rows := make([]ClusterStatus, 0, len(list.Items))
	found := map[string]bool{}
	for i := range list.Items {
		kc := &list.Items[i]
		if len(names) > 0 && !slices.Contains(names, kc.Name) {
			continue
		}
		found[kc.Name] = true
		rows = append(rows, assessCluster(kc, runs[client.ObjectKeyFromObject(kc)], now))
	}
	for _, n := range names {
		if !found[n] {
			return nil, fmt.Errorf("KdcCluster %q not found in namespace %q; list them with: kubectl get kdc-cl -A", n, ns)
		}
	}
	sortStatuses(rows)
	return rows, nil
}

// backupRun is what a cluster's CronJob and Jobs tell: the schedule it runs on and whether a
// backup Job waits for its turn or runs.
type backupRun struct{ Schedule, Offset, Job, Mode string }

// backupRuns reads the backup CronJobs and Jobs in scope. They only add to what the KdcClusters
// say, so a user who may not list them still gets the table (with the spec's schedules).
func (o *Options) backupRuns(ctx context.Context, c client.Client, opts []client.ListOption) map[client.ObjectKey]backupRun {
	runs := map[client.ObjectKey]backupRun{}
	sel := append(slices.Clone(opts), client.MatchingLabels{kdcv1alpha1.LabelComponent: kdcv1alpha1.ComponentBackup})
	key := func(o metav1.Object) client.ObjectKey {
		return client.ObjectKey{Namespace: o.GetNamespace(), Name: o.GetLabels()[kdcv1alpha1.LabelCluster]}
	}
	cjs := &batchv1.CronJobList{}
	if err := c.List(ctx, cjs, sel...); err == nil {
		for i := range cjs.Items {
			cj := &cjs.Items[i]
			r := runs[key(cj)]
			r.Schedule, r.Offset = cj.Spec.Schedule, cj.Annotations[kdcv1alpha1.AnnotationBackupScheduleOffset]
			r.Mode = cj.Annotations[kdcv1alpha1.AnnotationBackupMode]
			runs[key(cj)] = r
		}
	}
	jobs := &batchv1.JobList{}
	if err := c.List(ctx, jobs, sel...); err == nil {
		for i := range jobs.Items {
			j := &jobs.Items[i]
			if finished(j) {
				continue
			}
			r := runs[key(j)]
			if j.Spec.Suspend != nil && *j.Spec.Suspend {
				r.Job = cmp.Or(r.Job, "Waiting")
			} else {
				r.Job = "Running"
			}
			runs[key(j)] = r
		}
	}
	return runs
}

// finished reports whether the Job completed or failed.
func finished(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// printStatusTable prints rows as a kubectl-style table, then one line per cluster that needs
// attention with the reason and what to check.
func printStatusTable(out io.Writer, rows []ClusterStatus, withNamespace bool, now time.Time) error {
	if len(rows) == 0 {
		_, err := fmt.Fprintln(out, "No KdcClusters found.")
		return err
	}
	w := printers.GetNewTabWriter(out)
	if withNamespace {
		fmt.Fprint(w, "NAMESPACE\t")
	}
	fmt.Fprintln(w, "NAME\tHEALTH\tBACKUP\tLAST BACKUP\tSCHEDULE\tMODE\tBACKUP JOB\tRESTORE")
	var attention []ClusterStatus
	for _, r := range rows {
		if withNamespace {
			fmt.Fprintf(w, "%s\t", r.Namespace)
		}
		last := "<none>"
		if r.LastBackupTime != nil {
			last = duration.HumanDuration(now.Sub(*r.LastBackupTime))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Health, orNone(r.BackupReason), last, r.Schedule, orNone(r.Mode), orNone(r.BackupJob), orNone(r.Restore))
		if r.Health.needsAttention() {
			attention = append(attention, r)
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if len(attention) == 0 {
		return nil
	}
	fmt.Fprintf(out, "\n%d of %d clusters need attention:\n", len(attention), len(rows))
	for _, r := range attention {
		reason := ""
		if r.BackupReason != "" {
			reason = " (" + r.BackupReason + ")"
		}
		fmt.Fprintf(out, "  %s/%s: %s%s: %s\n", r.Namespace, r.Name, r.Health, reason, r.Message)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
