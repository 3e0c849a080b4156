// Package engine is the restore engine of kdc-etcd-backup (docs/restore.md): the rules, the
// plan, the ordered phase steps, the recovery and the Jobs of a restore, written once and driven
// by two drivers: the restore controller (controller/restore: one Run per reconcile, the record
// in the KdcCluster's annotations) and `kubectl kdc restore --manual` (plugin: Runs in a loop on
// watches, the record in memory, printed with the undo commands).
//
//	Validating ──► DrainingControlPlane ──► StoppingEtcd ──► RestoringSnapshot ──► StartingEtcd ──► StartingControlPlane ──► Succeeded
//	    │                  │                     │                  │                   │                    │
//	    └─ rejected        └──────────────── failure recorded: recovery (failure.go) ──────────────────────┴──► Failed
//
// Where each step lives: rules.go (the request's rules, Violation), plan.go (the plan resolved
// once in Validating and recorded), validating.go, draining.go, stopping_etcd.go, restoring.go,
// starting_etcd.go, starting_cp.go, finish.go (one file per phase), failure.go (the recovery,
// an ordered list of guarded steps), jobs.go (the Job builders), jobsync.go and joboutcome.go
// (creating the Jobs and deciding their outcome), member.go (the etcd member of DS-etcd).
package engine
