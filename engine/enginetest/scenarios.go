package enginetest

import (
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// Scenario is one restore every driver is tested on: how the world behaves, and how the restore
// must end. Each driver's transcript of it is a reviewed file, testdata/<Golden>.golden.
type Scenario struct {
	Name, Golden string
	// Objects changes the world's objects before it starts; Setup scripts its behaviour.
	Objects func([]client.Object) []client.Object
	Setup   func(w *World)
	// WantMessage is RestoreReady's message at the end.
	WantMessage string
	// WantCP and WantEtcd are the replica counts at the end; WantJobs the Jobs left.
	WantCP, WantEtcd int32
	WantJobs         []string
	// WantTCPPaused is whether C-cp's Kamaji TenantControlPlane is paused at the end (nil: none).
	WantTCPPaused *bool
}

// Succeeded reports whether the scenario ends in a successful restore.
func (s Scenario) Succeeded() bool { return s.WantMessage == `Restore from "`+Key+`" complete` }

// Scenarios are the success, each failure class and the recoveries.
func Scenarios() []Scenario {
	verify, restore, rollback := kdcv1alpha1.VerifyJobName(ClusterName), kdcv1alpha1.RestoreJobName(ClusterName), kdcv1alpha1.RollbackJobName(ClusterName)
	kamaji := func(paused bool) func([]client.Object) []client.Object {
		return func(objs []client.Object) []client.Object { return KamajiControlPlane(objs, paused) }
	}
	shared := func(replicas int32) func([]client.Object) []client.Object {
		return func(objs []client.Object) []client.Object { return SharedDataStore(objs, replicas) }
	}
	three := func(policy appsv1.PodManagementPolicyType) func([]client.Object) []client.Object {
		return func(objs []client.Object) []client.Object { return ThreeMembers(objs, policy) }
	}
	return []Scenario{
		{
			Golden: "three-members", Name: "Three members: staged, agreed on one revision, swapped, started",
			Objects:     three(appsv1.ParallelPodManagement),
			WantMessage: `Restore from "` + Key + `" complete`,
			WantCP:      2, WantEtcd: 3, WantJobs: []string{"prod-etcd-backup-rf0062daa"},
		},
		{
			Golden: "three-members-stage-fails", Name: "Three members: one member's restore fails, nothing is swapped",
			Objects:     three(appsv1.ParallelPodManagement),
			Setup:       func(w *World) { w.JobExit[restore+"-1"] = 9 },
			WantMessage: `Restore from "` + Key + `" failed (RestoreJobFailed): Job tenant/prod-etcd-restore-1: scripted failure of prod-etcd-restore-1 (Integrity, exit code 9); the data was not swapped; etcd and the control plane were started again on the old data`,
			WantCP:      2, WantEtcd: 3, WantJobs: []string{restore + "-0", restore + "-1", restore + "-2", rollback + "-0", rollback + "-1", rollback + "-2", verify},
		},
		{
			Golden: "three-members-etcd-start-failed", Name: "Three members: etcd not ready on the restored data, every member rolled back",
			Objects:     three(appsv1.ParallelPodManagement),
			Setup:       func(w *World) { w.EtcdNeverReadyOnRestored = true },
			WantMessage: `Restore from "` + Key + `" failed (EtcdStartFailed): StatefulSet tenant/ds-etcd did not become ready on the restored data within 5m0s; the previous data was swapped back (rollback) and etcd and the control plane were started on it`,
			WantCP:      2, WantEtcd: 3, WantJobs: []string{"prod-etcd-restage-1", "prod-etcd-restage-2", restore + "-0", restore + "-1", restore + "-2", rollback + "-0", rollback + "-1", rollback + "-2", "prod-etcd-swap-0", "prod-etcd-swap-1", "prod-etcd-swap-2", verify},
		},
		{
			Golden: "three-members-ordered-ready", Name: "Three members started one by one (OrderedReady): without their readiness probe, then with it",
			Objects:     three(appsv1.OrderedReadyPodManagement),
			WantMessage: `Restore from "` + Key + `" complete`,
			WantCP:      2, WantEtcd: 3, WantJobs: []string{"prod-etcd-backup-rf0062daa"},
		},
		{
			Golden: "three-members-ordered-ready-etcd-start-failed", Name: "Three members, OrderedReady: etcd not ready on the restored data, rolled back, probe back",
			Objects:     three(appsv1.OrderedReadyPodManagement),
			Setup:       func(w *World) { w.EtcdNeverReadyOnRestored = true },
			WantMessage: `Restore from "` + Key + `" failed (EtcdStartFailed): StatefulSet tenant/ds-etcd did not become ready on the restored data within 5m0s; the previous data was swapped back (rollback) and etcd and the control plane were started on it`,
			WantCP:      2, WantEtcd: 3, WantJobs: []string{"prod-etcd-restage-1", "prod-etcd-restage-2", restore + "-0", restore + "-1", restore + "-2", rollback + "-0", rollback + "-1", rollback + "-2", "prod-etcd-swap-0", "prod-etcd-swap-1", "prod-etcd-swap-2", verify},
		},
		{
			Golden: "prefix-success", Name: "Shared datastore: the tenant's prefix is restored, etcd stays up",
			Objects:     shared(1),
			WantMessage: `Restore from "` + Key + `" complete`,
			WantCP:      2, WantEtcd: 1, WantJobs: []string{"prod-etcd-backup-rf0062daa"},
		},
		{
			Golden: "prefix-three-members", Name: "Shared datastore of 3 members: admitted in prefix mode",
			Objects:     shared(3),
			WantMessage: `Restore from "` + Key + `" complete`,
			WantCP:      2, WantEtcd: 3, WantJobs: []string{"prod-etcd-backup-rf0062daa"},
		},
		{
			Golden: "prefix-restore-job-failed", Name: "Shared datastore: a failed prefix restore is undone",
			Objects:     shared(1),
			Setup:       func(w *World) { w.JobExit[restore] = 9 },
			WantMessage: `Restore from "` + Key + `" failed (RestoreJobFailed): Job tenant/prod-etcd-restore: scripted failure of prod-etcd-restore (Integrity, exit code 9); the tenant's keys were converged back to their content before the restore and the control plane was started on them`,
			WantCP:      2, WantEtcd: 1, WantJobs: []string{restore, rollback, verify},
		},
		{
			Golden: "kamaji-success", Name: "Kamaji owns the control plane: paused, drained, resumed",
			Objects:     kamaji(false),
			WantMessage: `Restore from "` + Key + `" complete`,
			WantCP:      2, WantEtcd: 1, WantJobs: []string{"prod-etcd-backup-rf0062daa"}, WantTCPPaused: ptr.To(false),
		},
		{
			Golden: "kamaji-paused-before", Name: "Kamaji's TCP paused before the restore stays paused",
			Objects:     kamaji(true),
			WantMessage: `Restore from "` + Key + `" complete`,
			WantCP:      2, WantEtcd: 1, WantJobs: []string{"prod-etcd-backup-rf0062daa"}, WantTCPPaused: ptr.To(true),
		},
		{
			Golden: "kamaji-restore-job-failed", Name: "Kamaji: the recovery resumes the TCP",
			Objects:     kamaji(false),
			Setup:       func(w *World) { w.JobExit[restore] = 9 },
			WantMessage: `Restore from "` + Key + `" failed (RestoreJobFailed): Job tenant/prod-etcd-restore: scripted failure of prod-etcd-restore (Integrity, exit code 9); the data was not swapped; etcd and the control plane were started again on the old data`,
			WantCP:      2, WantEtcd: 1, WantJobs: []string{restore, verify}, WantTCPPaused: ptr.To(false),
		},
		{
			Golden: "success", Name: "Succeeded",
			WantMessage: `Restore from "` + Key + `" complete`,
			WantCP:      2, WantEtcd: 1, WantJobs: []string{"prod-etcd-backup-rf0062daa"},
		},
		{
			Golden: "foreign-key",
			Name:   "ForeignKey (admitted without the webhook)",
			Objects: func(objs []client.Object) []client.Object {
				objs[0].SetAnnotations(map[string]string{kdcv1alpha1.AnnotationRestoreFrom: "other/other-20260101T020000Z.db"})
				return objs
			},
			WantMessage: `Restore from "other/other-20260101T020000Z.db" failed (ForeignKey): key belongs to another cluster "other", not to "prod"; use a key under "prod/", for example prod/prod-20260101T020000Z.db; nothing was changed`,
			WantCP:      2, WantEtcd: 1,
		},
		{
			Golden: "multi-replica-unsupported",
			Name:   "MultiReplicaUnsupported",
			Objects: func(objs []client.Object) []client.Object {
				objs[1].(*kdcv1alpha1.KdcClusterDatastore).Spec.Etcd.Replicas = 3
				return objs
			},
			WantMessage: `Restore from "` + Key + `" failed (MultiReplicaUnsupported): KdcClusterDatastore tenant/ds runs 3 etcd replicas (spec.etcd.replicas) but StatefulSet tenant/ds-etcd has 1: a scale is in progress; wait until they agree, then annotate again; nothing was changed`,
			WantCP:      2, WantEtcd: 1,
		},
		{
			Golden:      "datastore-unknown",
			Name:        "DataStoreUnknown",
			Objects:     func(objs []client.Object) []client.Object { return append(objs[:1:1], objs[2:]...) },
			WantMessage: `Restore from "` + Key + `" failed (DataStoreUnknown): KdcClusterDatastore tenant/ds cannot be found; fix spec.dataStore or wait until the datastore exists, then annotate again; nothing was changed`,
			WantCP:      2, WantEtcd: 1,
		},
		{
			Golden:      "snapshot-unavailable",
			Name:        "SnapshotUnavailable: the verify Job fails, nothing is touched",
			Setup:       func(w *World) { w.JobExit[verify] = 9 },
			WantMessage: `Restore from "` + Key + `" failed (SnapshotUnavailable): Job tenant/prod-etcd-verify: scripted failure of prod-etcd-verify (Integrity, exit code 9); pick another snapshot and annotate again; nothing was changed`,
			WantCP:      2, WantEtcd: 1, WantJobs: []string{verify},
		},
		{
			Golden:      "drain-failed",
			Name:        "DrainFailed: the control plane does not drain, it is scaled back",
			Setup:       func(w *World) { w.CPNeverDrains = true },
			WantMessage: `Restore from "` + Key + `" failed (DrainFailed): Deployment tenant/prod-cp did not scale to 0 within 5m0s; the data was not swapped; etcd and the control plane were started again on the old data`,
			WantCP:      2, WantEtcd: 1, WantJobs: []string{verify},
		},
		{
			Golden:      "etcd-stop-failed",
			Name:        "EtcdStopFailed: etcd does not stop, both are brought back",
			Setup:       func(w *World) { w.EtcdNeverStops = true },
			WantMessage: `Restore from "` + Key + `" failed (EtcdStopFailed): pod tenant/ds-etcd-0 did not go away within 5m0s; the data was not swapped; etcd and the control plane were started again on the old data`,
			WantCP:      2, WantEtcd: 1, WantJobs: []string{verify},
		},
		{
			Golden:      "restore-job-failed",
			Name:        "RestoreJobFailed: old data comes back",
			Setup:       func(w *World) { w.JobExit[restore] = 9 },
			WantMessage: `Restore from "` + Key + `" failed (RestoreJobFailed): Job tenant/prod-etcd-restore: scripted failure of prod-etcd-restore (Integrity, exit code 9); the data was not swapped; etcd and the control plane were started again on the old data`,
			WantCP:      2, WantEtcd: 1, WantJobs: []string{restore, verify},
		},
		{
			Golden:      "restore-job-hangs",
			Name:        "RestoreJobFailed: the restore Job hangs and is stopped",
			Setup:       func(w *World) { w.JobHang[restore] = true },
			WantMessage: `Restore from "` + Key + `" failed (RestoreJobFailed): the restore Job did not finish within 30m0s; the data was not swapped; etcd and the control plane were started again on the old data`,
			WantCP:      2, WantEtcd: 1, WantJobs: []string{verify},
		},
		{
			Golden:      "etcd-start-failed-rollback",
			Name:        "EtcdStartFailed: rollback to the previous data",
			Setup:       func(w *World) { w.EtcdNeverReadyOnRestored = true },
			WantMessage: `Restore from "` + Key + `" failed (EtcdStartFailed): StatefulSet tenant/ds-etcd did not become ready on the restored data within 5m0s; the previous data was swapped back (rollback) and etcd and the control plane were started on it`,
			WantCP:      2, WantEtcd: 1, WantJobs: []string{restore, rollback, verify},
		},
		{
			Golden: "etcd-start-failed-rollback-fails",
			Name:   "EtcdStartFailed: the rollback fails too",
			Setup: func(w *World) {
				w.EtcdNeverReadyOnRestored = true
				w.JobExit[rollback] = 11
			},
			WantMessage: `Restore from "` + Key + `" failed (EtcdStartFailed): StatefulSet tenant/ds-etcd did not become ready on the restored data within 5m0s; the rollback failed (Job tenant/prod-etcd-rollback: scripted failure of prod-etcd-rollback (Integrity, exit code 11)); etcd and the control plane were started on the restored data (after 15m0s: etcd is not ready)`,
			WantCP:      2, WantEtcd: 1, WantJobs: []string{restore, rollback, verify},
		},
		{
			Golden:      "control-plane-start-failed",
			Name:        "ControlPlaneStartFailed: the restored data is kept",
			Setup:       func(w *World) { w.CPNeverReady = true },
			WantMessage: `Restore from "` + Key + `" failed (ControlPlaneStartFailed): Deployment tenant/prod-cp did not become ready within 10m0s; the snapshot was restored and etcd runs on it (no rollback); the control plane did not become ready`,
			WantCP:      2, WantEtcd: 1, WantJobs: []string{restore, verify},
		},
	}
}
