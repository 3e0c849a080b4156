package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/engine"
)

// restoreOptions are the flags of `kubectl kdc restore`.
type restoreOptions struct {
	from    string
	latest  bool
	wait    bool
	manual  bool
	timeout time.Duration
	s3      s3Flags
	manualF manualFlags
}

func newRestoreCommand(o *Options) *cobra.Command {
	ro := &restoreOptions{}
	cmd := &cobra.Command{
		Use:   "restore CLUSTER (--from KEY | --latest) [--wait]",
		Short: "Restore a cluster's etcd from a snapshot, and follow the restore live",
		Long: `Restore the etcd of a KdcCluster from one of its snapshots.

The restore is requested the same way as with kubectl: the kube-dc.com/restore-from annotation is
set to the snapshot key, so the admission webhook decides and its rejection is shown as is (wrong
key, a key of another cluster, an etcd with more than one replica, a restore already running).
The controller then runs the restore. With --wait the phases are followed live with the time
each took, until the restore Succeeded (exit 0) or Failed (exit 1).

--latest picks the newest snapshot listed in S3 (see kubectl kdc backups). --wait without --from
or --latest follows the restore already running on the cluster.

--manual performs the restore steps from this machine instead of the controller, for when the
manager is unavailable; it refuses while the manager holds its leader lease.`,
		Example: `  # Restore a snapshot and follow the phases
  kubectl kdc restore tenant-a -n team-a --from tenant-a/tenant-a-20261124T020000Z.db --wait

  # Restore the newest snapshot
  kubectl kdc restore tenant-a -n team-a --latest --wait

  # Follow a restore that is already running
  kubectl kdc restore tenant-a -n team-a --wait

  # The manager is down: run the restore steps from here
  kubectl kdc restore tenant-a -n team-a --from tenant-a/tenant-a-20261124T020000Z.db --manual`,
		Args: oneClusterArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			// --timeout bounds the whole follow, or with --manual each step (its own default).
			ro.manualF.Timeout = defaultManualTimeout
			if cmd.Flags().Changed("timeout") {
				ro.manualF.Timeout = ro.timeout
			}
			return o.runRestore(cmd.Context(), args[0], ro)
		},
	}
	f := cmd.Flags()
	f.StringVar(&ro.from, "from", "", "the snapshot key to restore, CLUSTER/CLUSTER-<YYYYMMDDTHHMMSSZ>.db (see kubectl kdc backups)")
	f.BoolVar(&ro.latest, "latest", false, "restore the newest snapshot in S3")
	f.BoolVar(&ro.wait, "wait", false, "follow the restore until it Succeeded or Failed (exit 1 on failure)")
	f.DurationVar(&ro.timeout, "timeout", 30*time.Minute, "how long --wait follows the restore before giving up (the restore itself goes on)"+
		fmt.Sprintf("; with --manual: how long each step may wait, %s unless given", defaultManualTimeout))
	f.BoolVar(&ro.manual, "manual", false, "run the restore steps from this machine because the manager is unavailable (refused while it runs)")
	ro.s3.AddFlags(f)
	ro.manualF.AddFlags(f)
	_ = cmd.RegisterFlagCompletionFunc("from", o.completeSnapshotKeys(&ro.s3))
	return cmd
}

func (o *Options) runRestore(ctx context.Context, name string, ro *restoreOptions) error {
	if ro.from != "" && ro.latest {
		return errors.New("--from and --latest cannot be combined; give one snapshot")
	}
	if ro.from == "" && !ro.latest && (!ro.wait || ro.manual) {
		return errors.New("name the snapshot with --from KEY or --latest (list them with: kubectl kdc backups CLUSTER), or follow a running restore with --wait")
	}
	kc, err := o.Cluster(ctx, name)
	if err != nil {
		return err
	}
	key := ro.from
	if ro.latest {
		snaps, err := o.listSnapshots(ctx, kc, &ro.s3)
		if err != nil {
			// S3 may be out of reach from this machine; the controller's record of the last
			// successful backup is the next best answer (the verify Job still proves it).
			if kc.Status.LatestBackupKey == "" {
				return err
			}
			fmt.Fprintf(o.ErrOut, "Warning: cannot list the snapshots in S3 (%v)\nWarning: using status.latestBackupKey instead, the last backup the controller recorded\n", err)
			snaps = []Snapshot{{Key: kc.Status.LatestBackupKey, Checksum: checksumSHA256}}
			if t := kc.Status.LatestBackupTime; t != nil {
				snaps[0].Time = t.Time
			}
		}
		newest, skipped := newestRestorable(snaps)
		for _, s := range skipped {
			fmt.Fprintf(o.ErrOut, "Skipping %s: its checksum state is %q%s\n", s.Key, s.Checksum, problemNote(s.Problem))
		}
		if newest == nil {
			return fmt.Errorf("KdcCluster %s/%s has no restorable snapshot in S3 (%d found, none with a checksum a restore can verify); see kubectl kdc backups %s -n %s, or take one with: kubectl kdc backup %s -n %s --wait",
				kc.Namespace, kc.Name, len(snaps), kc.Name, kc.Namespace, kc.Name, kc.Namespace)
		}
		key = newest.Key
		fmt.Fprintf(o.Out, "Newest snapshot of %s: %s (%s)\n", kc.Name, key, newest.Time.UTC().Format(time.RFC3339))
	}
	if ro.manual {
		return o.manualRestore(ctx, kc, key, &ro.manualF)
	}

	c, err := o.Client()
	if err != nil {
		return err
	}
	running := kdcv1alpha1.RestorePhaseOf(kc.Annotations)
	switch {
	case key == "" && kc.Annotations[kdcv1alpha1.AnnotationRestoreFrom] == "" && !running.Running():
		return fmt.Errorf("no restore is running on KdcCluster %s/%s; start one with --from KEY or --latest", kc.Namespace, kc.Name)
	case key == "":
		key = kc.Annotations[kdcv1alpha1.AnnotationRestoreFrom]
		fmt.Fprintf(o.Out, "Following the restore of %s from %q (%s)\n", kc.Name, key, orNone(string(running)))
	case running.Running() && kc.Annotations[kdcv1alpha1.AnnotationRestoreFrom] == key:
		fmt.Fprintf(o.Out, "A restore of %s from %q is already running (%s)\n", kc.Name, key, running)
	default:
		if kc, err = requestRestore(ctx, c, kc, key); err != nil {
			return err
		}
		fmt.Fprintf(o.Out, "kdccluster.k8s.kube-dc.com/%s: restore from %q requested%s\n", kc.Name, key, requestedByNote(kc.Annotations))
	}
	if !ro.wait {
		fmt.Fprintf(o.Out, "Follow it with: kubectl kdc restore %s -n %s --wait   (or: kubectl get kdc-cl %s -n %s -w)\n", kc.Name, kc.Namespace, kc.Name, kc.Namespace)
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, ro.timeout)
	defer cancel()
	err = o.followRestore(wctx, c, client.ObjectKeyFromObject(kc), key)
	if errors.Is(err, errWaitTimeout) {
		return fmt.Errorf("the restore of %s/%s did not finish within --timeout %s; it goes on: check kubectl describe kdc-cl %s -n %s and the manager's logs",
			kc.Namespace, kc.Name, ro.timeout, kc.Name, kc.Namespace)
	}
	return err
}

// newestRestorable is the newest of snaps (newest first) whose checksum a restore can verify:
// not "invalid" (it fails the restore's checks) and not "missing" (not written by a backup); the
// newer ones it passed over are returned too.
func newestRestorable(snaps []Snapshot) (*Snapshot, []Snapshot) {
	for i := range snaps {
		if c := snaps[i].Checksum; c != checksumInvalid && c != checksumMissing {
			return &snaps[i], snaps[:i]
		}
	}
	return nil, snaps
}

func problemNote(p string) string {
	if p == "" {
		return ""
	}
	return " (" + p + ")"
}

// requestRestore sets restore-from to key with a merge patch; the webhook admits or rejects it
// (its error is returned as is) and stamps an accepted request.
func requestRestore(ctx context.Context, c client.Client, kc *kdcv1alpha1.KdcCluster, key string) (*kdcv1alpha1.KdcCluster, error) {
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{kdcv1alpha1.AnnotationRestoreFrom: key}},
	})
	if err != nil {
		return nil, err
	}
	out := kc.DeepCopy()
	if err := c.Patch(ctx, out, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return nil, err
	}
	return out, nil
}

func requestedByNote(ann map[string]string) string {
	by := ann[kdcv1alpha1.AnnotationRestoreRequestedBy]
	if by == "" {
		return ""
	}
	return " by " + by
}

// restoreProgress turns the states of a KdcCluster under restore into progress lines: one per
// phase as it starts, with the time since the restore was requested and how long the previous
// phase took, and the outcome at the end.
type restoreProgress struct {
	key       string
	start     time.Time
	phase     kdcv1alpha1.RestorePhase
	since     time.Time
	failure   string
	revision  string
	paused    string
	members   string
	planned   bool
	durations []phaseDuration
}

type phaseDuration struct {
	Phase    kdcv1alpha1.RestorePhase
	Duration time.Duration
}

// observe takes the cluster's state at now; it returns the lines to print, whether the restore
// ended, and the error when it failed.
func (p *restoreProgress) observe(c *kdcv1alpha1.KdcCluster, now time.Time) (lines []string, done bool, err error) {
	if c == nil {
		return nil, true, fmt.Errorf("the KdcCluster was deleted while restoring from %q", p.key)
	}
	ann := c.Annotations
	phase := kdcv1alpha1.RestorePhaseOf(ann)
	if f := ann[kdcv1alpha1.AnnotationRestoreFailure]; f != "" && f != p.failure {
		p.failure = f
		lines = append(lines, fmt.Sprintf("[%s] %s failed: %s; the controller brings the cluster back", p.stamp(now), orNone(string(p.phase)), f))
	}
	if phase != "" && phase != p.phase {
		lines = append(lines, p.enter(phase, now))
	}
	if !p.planned && phase == kdcv1alpha1.PhaseRestoringSnapshot {
		p.planned = true
		if note := engine.PlanNote(ann); note != "" {
			lines = append(lines, fmt.Sprintf("[%s] %s", p.stamp(now), note))
		}
	}
	if v := ann[kdcv1alpha1.AnnotationRestoreMembersRevision]; v != "" && v != p.members {
		p.members = v
		lines = append(lines, fmt.Sprintf("[%s] Every member's staged restore agreed on revision %s; swapping them in", p.stamp(now), v))
	}
	if v := ann[kdcv1alpha1.AnnotationRestoreControlPlanePaused]; v != "" && v != p.paused {
		p.paused = v
		lines = append(lines, fmt.Sprintf("[%s] %s", p.stamp(now), pauseNote(v)))
	}
	if v := ann[kdcv1alpha1.AnnotationRestoreRevision]; v != "" && v != p.revision {
		p.revision = v
		if rev, err := kdcv1alpha1.ParseRestoreRevision(v); err == nil {
			lines = append(lines, fmt.Sprintf("[%s] Restored %s", p.stamp(now), rev.Describe()))
		}
	}
	if ann[kdcv1alpha1.AnnotationRestoreFrom] != "" || phase != "" || ann[kdcv1alpha1.AnnotationRestoreFailure] != "" {
		return lines, false, nil
	}
	// Ended: the controller wrote RestoreReady before it cleared the annotations.
	cond := meta.FindStatusCondition(c.Status.Conditions, kdcv1alpha1.ConditionRestoreReady)
	if cond != nil && cond.Status == metav1.ConditionTrue && cond.Reason == kdcv1alpha1.ReasonRestoreSucceeded {
		lines = append(lines, p.enter(kdcv1alpha1.PhaseSucceeded, now), cond.Message)
		return lines, true, nil
	}
	lines = append(lines, p.enter(kdcv1alpha1.PhaseFailed, now))
	msg := fmt.Sprintf("the restore from %q ended without a RestoreReady verdict", p.key)
	if cond != nil {
		msg = cond.Message
	}
	return lines, true, errors.New(msg)
}

// pauseNote says what the restore did to the Kamaji TenantControlPlane owning the control plane.
func pauseNote(v string) string {
	switch v {
	case engine.PausedByRestore:
		return "Control plane's TenantControlPlane paused (" + engine.AnnotationKamajiPaused + ") until the restored control plane is ready"
	case engine.PausedBefore:
		return "Control plane's TenantControlPlane was paused before the restore; it stays paused"
	case engine.PauseRemoved:
		return "Control plane's TenantControlPlane resumed: Kamaji manages it again"
	}
	return "Control plane's TenantControlPlane: " + v
}

// enter records the start of phase at now and returns its line.
func (p *restoreProgress) enter(phase kdcv1alpha1.RestorePhase, now time.Time) string {
	line := fmt.Sprintf("[%s] %s", p.stamp(now), phase)
	if p.phase != "" {
		d := now.Sub(p.since)
		p.durations = append(p.durations, phaseDuration{p.phase, d})
		line = fmt.Sprintf("%-36s (%s took %s)", line, p.phase, roundDuration(d))
	}
	p.phase, p.since = phase, now
	return line
}

func (p *restoreProgress) stamp(now time.Time) string {
	return fmt.Sprintf("%7s", roundDuration(now.Sub(p.start)))
}

// roundDuration shows d to 10ms below a second, to a tenth of a second below a minute, to a
// second above.
func roundDuration(d time.Duration) string {
	if d < time.Second {
		return d.Round(10 * time.Millisecond).String()
	}
	if d < time.Minute {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// followRestore prints the progress of the restore of key on the cluster until it ends; it
// returns an error when the restore failed.
func (o *Options) followRestore(ctx context.Context, c client.WithWatch, key client.ObjectKey, snapshot string) error {
	p := &restoreProgress{key: snapshot, start: o.now()}
	var failed error
	err := waitFor(ctx, c, key, &kdcv1alpha1.KdcCluster{}, func() client.ObjectList { return &kdcv1alpha1.KdcClusterList{} },
		func(obj client.Object) (bool, error) {
			kc, _ := obj.(*kdcv1alpha1.KdcCluster)
			lines, done, err := p.observe(kc, o.now())
			for _, l := range lines {
				fmt.Fprintln(o.Out, l)
			}
			failed = err
			return done, nil
		})
	if err != nil {
		return err
	}
	if failed != nil {
		return failed
	}
	if len(p.durations) > 0 {
		var parts []string
		for _, d := range p.durations {
			parts = append(parts, fmt.Sprintf("%s %s", d.Phase, roundDuration(d.Duration)))
		}
		fmt.Fprintf(o.Out, "Restored in %s: %s\n", roundDuration(p.since.Sub(p.start)), strings.Join(parts, ", "))
	}
	return nil
}
