package v1alpha1

// RestorePhase is the value of the kube-dc.com/restore-state annotation.
//
// The mutating webhook stamps Validating on an accepted request; the controller moves it on:
//
//	Validating ──► DrainingControlPlane ──► StoppingEtcd ──► RestoringSnapshot
//	    │                 │                      │                  │
//	    │                 ▼                      ▼                  ▼
//	    │        (bring etcd and control plane back on the old data)
//	    ▼                                                           │
//	  Failed ◄───────────────────────────────────────────────────────┤
//	    ▲                                                           ▼
//	    │                                                     StartingEtcd ──► StartingControlPlane ──► Succeeded
//	    └── (etcd does not start: rollback to the previous data) ◄─┘
//
// Succeeded and Failed are terminal: the controller records the outcome in the RestoreReady
// condition and clears the annotations, so the annotation is normally only seen with a running
// phase.
type RestorePhase string

const (
	// PhaseValidating: accepted by the webhook; the controller re-checks the rules and proves
	// the snapshot exists and is intact. Nothing disruptive happens in this phase.
	PhaseValidating RestorePhase = "Validating"
	// PhaseDrainingControlPlane: C-cp replicas recorded, scaled to 0, waiting for its pods to go.
	PhaseDrainingControlPlane RestorePhase = "DrainingControlPlane"
	// PhaseStoppingEtcd: DS-etcd replicas recorded, scaled to 0, waiting for DS-etcd-0 to go.
	PhaseStoppingEtcd RestorePhase = "StoppingEtcd"
	// PhaseRestoringSnapshot: Job C-etcd-restore restores the snapshot into the data PVC.
	PhaseRestoringSnapshot RestorePhase = "RestoringSnapshot"
	// PhaseStartingEtcd: DS-etcd scaled back, waiting until ready.
	PhaseStartingEtcd RestorePhase = "StartingEtcd"
	// PhaseStartingControlPlane: C-cp scaled back with fresh pods, waiting until ready.
	PhaseStartingControlPlane RestorePhase = "StartingControlPlane"
	// PhaseSucceeded is terminal.
	PhaseSucceeded RestorePhase = "Succeeded"
	// PhaseFailed is terminal.
	PhaseFailed RestorePhase = "Failed"
)

// RestorePhases lists the phases in order.
var RestorePhases = []RestorePhase{
	PhaseValidating, PhaseDrainingControlPlane, PhaseStoppingEtcd, PhaseRestoringSnapshot,
	PhaseStartingEtcd, PhaseStartingControlPlane, PhaseSucceeded, PhaseFailed,
}

// Running reports whether p is a non-terminal phase, i.e. a restore is in progress.
func (p RestorePhase) Running() bool {
	switch p {
	case PhaseValidating, PhaseDrainingControlPlane, PhaseStoppingEtcd, PhaseRestoringSnapshot,
		PhaseStartingEtcd, PhaseStartingControlPlane:
		return true
	}
	return false
}

// Valid reports whether p is one of the documented phases.
func (p RestorePhase) Valid() bool {
	for _, q := range RestorePhases {
		if p == q {
			return true
		}
	}
	return false
}
