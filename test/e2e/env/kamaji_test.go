package env

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/watch"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// TestCheckControlPlane: the check catches a pod back between drain and start, and a missing or kept pause.
func TestCheckControlPlane(t *testing.T) {
	start := time.Now()
	r := &Restore{Start: start, EndResourceVersion: 100, Phases: []PhaseTiming{
		{Phase: kdcv1alpha1.PhaseDrainingControlPlane, ResourceVersion: 10},
		{Phase: kdcv1alpha1.PhaseStoppingEtcd, ResourceVersion: 30},
		{Phase: kdcv1alpha1.PhaseStartingControlPlane, ResourceVersion: 60},
	}}
	pod := func(rv int64, typ watch.EventType, name string) ControlPlaneEvent {
		return ControlPlaneEvent{ResourceVersion: rv, Kind: "Pod", Type: typ, Name: name, PodPhase: corev1.PodRunning}
	}
	tcp := func(rv int64, paused bool) ControlPlaneEvent {
		return ControlPlaneEvent{ResourceVersion: rv, Kind: "TenantControlPlane", Type: watch.Modified, Name: "c-cp", Paused: paused}
	}
	held := []ControlPlaneEvent{
		pod(1, watch.Added, "old"), tcp(2, false),
		tcp(11, true), pod(20, watch.Modified, "old"), pod(25, watch.Deleted, "old"),
		pod(61, watch.Added, "new"), tcp(90, false),
	}
	for _, tc := range []struct {
		name   string
		events []ControlPlaneEvent
		want   []string
	}{
		{"held", held, nil},
		{"pod brought back in the window", append(append([]ControlPlaneEvent{}, held...), pod(40, watch.Added, "back")),
			[]string{"pod back added"}},
		{"pod not gone when the drain ended", []ControlPlaneEvent{pod(1, watch.Added, "old"), tcp(11, true), pod(61, watch.Added, "new"), pod(70, watch.Deleted, "old"), tcp(90, false)},
			[]string{"pod old existed"}},
		{"never paused", []ControlPlaneEvent{pod(1, watch.Added, "old"), tcp(2, false), pod(25, watch.Deleted, "old"), pod(61, watch.Added, "new")},
			[]string{"not paused when the drain ended", "never paused"}},
		{"pause left behind", held[:6], []string{"not resumed", "still paused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := checkControlPlane(tc.events, r, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(tc.want) == 0 && len(rep.Violations) > 0 {
				t.Fatalf("violations %q, want none", rep.Violations)
			}
			got := strings.Join(rep.Violations, "\n")
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("violations %q, want one saying %q", rep.Violations, w)
				}
			}
		})
	}
}

// TestCheckControlPlanePrefixMode: in prefix mode the drain ends with RestoringSnapshot (no StoppingEtcd).
func TestCheckControlPlanePrefixMode(t *testing.T) {
	r := &Restore{Start: time.Now(), EndResourceVersion: 100, Phases: []PhaseTiming{
		{Phase: kdcv1alpha1.PhaseValidating, ResourceVersion: 5},
		{Phase: kdcv1alpha1.PhaseDrainingControlPlane, ResourceVersion: 10},
		{Phase: kdcv1alpha1.PhaseRestoringSnapshot, ResourceVersion: 30},
		{Phase: kdcv1alpha1.PhaseStartingControlPlane, ResourceVersion: 60},
	}}
	events := []ControlPlaneEvent{
		{ResourceVersion: 1, Kind: "Pod", Type: watch.Added, Name: "old"},
		{ResourceVersion: 11, Kind: "TenantControlPlane", Type: watch.Modified, Name: "c-cp", Paused: true},
		{ResourceVersion: 25, Kind: "Pod", Type: watch.Deleted, Name: "old"},
		{ResourceVersion: 40, Kind: "Pod", Type: watch.Added, Name: "back"},
		{ResourceVersion: 61, Kind: "Pod", Type: watch.Added, Name: "new"},
		{ResourceVersion: 90, Kind: "TenantControlPlane", Type: watch.Modified, Name: "c-cp"},
	}
	rep, err := checkControlPlane(events, r, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Drained.Phase != kdcv1alpha1.PhaseRestoringSnapshot || len(rep.Violations) != 1 || !strings.Contains(rep.Violations[0], "pod back added") {
		t.Errorf("drain end %s, violations %q; want RestoringSnapshot and only the pod back in the window", rep.Drained.Phase, rep.Violations)
	}
}
