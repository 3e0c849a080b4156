package env

import (
	"fmt"
	"time"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// Targets of issue 7 for a restore of a ~20 MB tenant etcd.
const (
	TargetRTO      = 20 * time.Second
	TargetOverhead = 2 * time.Second
)

// Overhead is the controller's overhead: the RTO minus the same steps done directly.
func Overhead(r *Restore, d *DirectSteps) time.Duration { return r.RTO() - d.Total() }

// Comparison renders the restore's phases beside the direct steps, one line each, ending with
// the totals and the controller overhead against the targets.
func Comparison(r *Restore, d *DirectSteps) []string {
	byPhase := map[kdcv1alpha1.RestorePhase]time.Duration{}
	for _, p := range r.PhaseDurations() {
		byPhase[p.Phase] = p.Duration
	}
	rows := []struct {
		phase  kdcv1alpha1.RestorePhase
		direct string
		d      time.Duration
	}{
		{kdcv1alpha1.PhaseValidating, "(verify Job: no direct equivalent)", 0},
		{kdcv1alpha1.PhaseDrainingControlPlane, "stop kube-apiserver", d.StopAPIServer},
		{kdcv1alpha1.PhaseStoppingEtcd, "stop etcd", d.StopEtcd},
		{kdcv1alpha1.PhaseRestoringSnapshot, "etcdutl snapshot restore + swap", d.Restore},
		{kdcv1alpha1.PhaseStartingEtcd, "start etcd until healthy", d.StartEtcd},
		{kdcv1alpha1.PhaseStartingControlPlane, "start kube-apiserver until ready", d.StartAPIServer},
	}
	round := func(x time.Duration) string { return x.Round(10 * time.Millisecond).String() }
	lines := []string{
		fmt.Sprintf("snapshot %.1f MiB", float64(d.SnapshotBytes)/(1<<20)),
		fmt.Sprintf("%-22s %10s   %-36s %8s", "phase", "controller", "direct step", "direct"),
	}
	for _, row := range rows {
		dd := "-"
		if row.d > 0 {
			dd = round(row.d)
		}
		lines = append(lines, fmt.Sprintf("%-22s %10s   %-36s %8s", row.phase, round(byPhase[row.phase]), row.direct, dd))
	}
	lines = append(lines,
		fmt.Sprintf("%-22s %10s   %-36s %8s", "total", round(r.RTO()), "", round(d.Total())),
		fmt.Sprintf("RTO %s (target < %s: %s); controller overhead (RTO - direct steps) %s (target < %s: %s)",
			round(r.RTO()), TargetRTO, met(r.RTO() < TargetRTO), round(Overhead(r, d)), TargetOverhead, met(Overhead(r, d) < TargetOverhead)),
	)
	return lines
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}
