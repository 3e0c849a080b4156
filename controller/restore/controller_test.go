package restore

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	et "kube-dc.com/etcd-backup/engine/enginetest"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/engine"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestRestoreGoldenTranscript walks a whole successful restore and compares every reconcile's
// phase, writes and Events with testdata/restore_success.golden (go test -run Golden -update).
func TestRestoreGoldenTranscript(t *testing.T) {
	w := newRestoreWorld(t, testObjects()...)
	got := strings.Join(w.run(60), "\n") + "\n"
	path := filepath.Join("testdata", "restore_success.golden")
	if *updateGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("transcript differs from %s (-want +got):\n%s", path, diff)
	}
	c := w.cluster()
	wantCond := &metav1.Condition{Type: kdcv1alpha1.ConditionRestoreReady, Status: metav1.ConditionTrue, Reason: kdcv1alpha1.ReasonRestoreSucceeded,
		Message: `Restore from "` + et.Key + `" complete`, ObservedGeneration: 1}
	if diff := cmp.Diff(wantCond, restoreReadyCondition(c)); diff != "" {
		t.Errorf("RestoreReady (-want +got):\n%s", diff)
	}
	if c.Status.LatestRestoreKey != et.Key || c.Status.LatestRestoreTime == nil {
		t.Errorf("latestRestoreKey/Time = %q/%v, want %q and a time", c.Status.LatestRestoreKey, c.Status.LatestRestoreTime, et.Key)
	}
	if diff := cmp.Diff(map[string]string(nil), restoreAnnotationsOf(c)); diff != "" {
		t.Errorf("restore annotations left (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{engine.BuildFreshBackupJob(c, &batchv1.CronJob{}, et.Start.Format("2006-01-02T15:04:05Z07:00")).Name}, w.jobNames()); diff != "" {
		t.Errorf("Jobs after the restore: only the fresh backup (-want +got):\n%s", diff)
	}
	d := &appsv1.Deployment{}
	if err := w.base.Get(w.ctx, client.ObjectKey{Namespace: et.NS, Name: kdcv1alpha1.ControlPlaneDeploymentName(et.ClusterName)}, d); err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 2 || d.Spec.Template.Annotations[kdcv1alpha1.AnnotationRestartedAt] == "" {
		t.Errorf("control plane: replicas %d, restartedAt %q; want 2 and a rollout stamp", *d.Spec.Replicas, d.Spec.Template.Annotations[kdcv1alpha1.AnnotationRestartedAt])
	}
}

// restoreAnnotationsOf returns the restore annotations of c (nil when none).
func restoreAnnotationsOf(c *kdcv1alpha1.KdcCluster) map[string]string {
	var out map[string]string
	for k, v := range c.Annotations {
		if strings.HasPrefix(k, kdcv1alpha1.RestoreAnnotationPrefix) {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// TestRestoreFailures drives each failure reason to its end and checks the message (which says
// what happened to the data) and that the cluster came back as recorded.
func TestRestoreFailures(t *testing.T) {
	verify, restore, rollback := kdcv1alpha1.VerifyJobName(et.ClusterName), kdcv1alpha1.RestoreJobName(et.ClusterName), kdcv1alpha1.RollbackJobName(et.ClusterName)
	cases := []struct {
		name        string
		setup       func(w *restoreWorld)
		objects     func([]client.Object) []client.Object
		wantMessage string
		// wantCP/wantEtcd are the replica counts at the end.
		wantCP, wantEtcd int32
		wantJobs         []string
	}{
		{
			name: "ForeignKey (admitted without the webhook)",
			objects: func(objs []client.Object) []client.Object {
				objs[0].SetAnnotations(map[string]string{kdcv1alpha1.AnnotationRestoreFrom: "other/other-20260101T020000Z.db"})
				return objs
			},
			wantMessage: `Restore from "other/other-20260101T020000Z.db" failed (ForeignKey): key belongs to another cluster "other", not to "prod"; use a key under "prod/", for example prod/prod-20260101T020000Z.db; nothing was changed`,
			wantCP:      2, wantEtcd: 1,
		},
		{
			name: "MultiReplicaUnsupported",
			objects: func(objs []client.Object) []client.Object {
				objs[1].(*kdcv1alpha1.KdcClusterDatastore).Spec.Etcd.Replicas = 3
				return objs
			},
			wantMessage: `Restore from "` + et.Key + `" failed (MultiReplicaUnsupported): KdcClusterDatastore tenant/ds runs 3 etcd replicas (spec.etcd.replicas) and restores support exactly 1; do not scale a running multi-member etcd down (it loses quorum unless the other members are removed first): restore every member from the same snapshot by hand, as docs/restore.md "Multi-member datastores" describes; nothing was changed`,
			wantCP:      2, wantEtcd: 1,
		},
		{
			name:        "DataStoreUnknown",
			objects:     func(objs []client.Object) []client.Object { return append(objs[:1:1], objs[2:]...) },
			wantMessage: `Restore from "` + et.Key + `" failed (DataStoreUnknown): KdcClusterDatastore tenant/ds cannot be found; fix spec.dataStore or wait until the datastore exists, then annotate again; nothing was changed`,
			wantCP:      2, wantEtcd: 1,
		},
		{
			name:        "SnapshotUnavailable: the verify Job fails, nothing is touched",
			setup:       func(w *restoreWorld) { w.jobExit[verify] = 9 },
			wantMessage: `Restore from "` + et.Key + `" failed (SnapshotUnavailable): Job tenant/prod-etcd-verify: scripted failure of prod-etcd-verify (Integrity, exit code 9); pick another snapshot and annotate again; nothing was changed`,
			wantCP:      2, wantEtcd: 1, wantJobs: []string{verify},
		},
		{
			name:        "DrainFailed: the control plane does not drain, it is scaled back",
			setup:       func(w *restoreWorld) { w.cpNeverDrains = true },
			wantMessage: `Restore from "` + et.Key + `" failed (DrainFailed): Deployment tenant/prod-cp did not scale to 0 within 5m0s; the data was not swapped; etcd and the control plane were started again on the old data`,
			wantCP:      2, wantEtcd: 1, wantJobs: []string{verify},
		},
		{
			name:        "EtcdStopFailed: etcd does not stop, both are brought back",
			setup:       func(w *restoreWorld) { w.etcdNeverStops = true },
			wantMessage: `Restore from "` + et.Key + `" failed (EtcdStopFailed): pod tenant/ds-etcd-0 did not go away within 5m0s; the data was not swapped; etcd and the control plane were started again on the old data`,
			wantCP:      2, wantEtcd: 1, wantJobs: []string{verify},
		},
		{
			name:        "RestoreJobFailed: old data comes back",
			setup:       func(w *restoreWorld) { w.jobExit[restore] = 9 },
			wantMessage: `Restore from "` + et.Key + `" failed (RestoreJobFailed): Job tenant/prod-etcd-restore: scripted failure of prod-etcd-restore (Integrity, exit code 9); the data was not swapped; etcd and the control plane were started again on the old data`,
			wantCP:      2, wantEtcd: 1, wantJobs: []string{restore, verify},
		},
		{
			name:        "RestoreJobFailed: the restore Job hangs and is stopped",
			setup:       func(w *restoreWorld) { w.jobHang[restore] = true },
			wantMessage: `Restore from "` + et.Key + `" failed (RestoreJobFailed): the restore Job did not finish within 30m0s; the data was not swapped; etcd and the control plane were started again on the old data`,
			wantCP:      2, wantEtcd: 1, wantJobs: []string{verify},
		},
		{
			name:        "EtcdStartFailed: rollback to the previous data",
			setup:       func(w *restoreWorld) { w.etcdNeverReadyOnRestored = true },
			wantMessage: `Restore from "` + et.Key + `" failed (EtcdStartFailed): StatefulSet tenant/ds-etcd did not become ready on the restored data within 5m0s; the previous data was swapped back (rollback) and etcd and the control plane were started on it`,
			wantCP:      2, wantEtcd: 1, wantJobs: []string{restore, rollback, verify},
		},
		{
			name: "EtcdStartFailed: the rollback fails too",
			setup: func(w *restoreWorld) {
				w.etcdNeverReadyOnRestored = true
				w.jobExit[rollback] = 11
			},
			wantMessage: `Restore from "` + et.Key + `" failed (EtcdStartFailed): StatefulSet tenant/ds-etcd did not become ready on the restored data within 5m0s; the rollback failed (Job tenant/prod-etcd-rollback: scripted failure of prod-etcd-rollback (Integrity, exit code 11)); etcd and the control plane were started on the restored data (after 15m0s: etcd is not ready)`,
			wantCP:      2, wantEtcd: 1, wantJobs: []string{restore, rollback, verify},
		},
		{
			name:        "ControlPlaneStartFailed: the restored data is kept",
			setup:       func(w *restoreWorld) { w.cpNeverReady = true },
			wantMessage: `Restore from "` + et.Key + `" failed (ControlPlaneStartFailed): Deployment tenant/prod-cp did not become ready within 10m0s; the snapshot was restored and etcd runs on it (no rollback); the control plane did not become ready`,
			wantCP:      2, wantEtcd: 1, wantJobs: []string{restore, verify},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := testObjects()
			if tc.objects != nil {
				objs = tc.objects(objs)
			}
			w := newRestoreWorld(t, objs...)
			if tc.setup != nil {
				tc.setup(w)
			}
			transcript := w.run(80)
			c := w.cluster()
			cond := restoreReadyCondition(c)
			if cond == nil {
				t.Fatalf("no RestoreReady condition; transcript:\n%s", strings.Join(transcript, "\n"))
			}
			if diff := cmp.Diff(tc.wantMessage, cond.Message); diff != "" {
				t.Errorf("message (-want +got):\n%s\ntranscript:\n%s", diff, strings.Join(transcript, "\n"))
			}
			if cond.Status != metav1.ConditionFalse || cond.Reason != kdcv1alpha1.ReasonRestoreFailed {
				t.Errorf("condition %s/%s, want False/Failed", cond.Status, cond.Reason)
			}
			if diff := cmp.Diff(map[string]string(nil), restoreAnnotationsOf(c)); diff != "" {
				t.Errorf("restore annotations left (-want +got):\n%s", diff)
			}
			d := &appsv1.Deployment{}
			sts := &appsv1.StatefulSet{}
			if err := w.base.Get(w.ctx, client.ObjectKey{Namespace: et.NS, Name: kdcv1alpha1.ControlPlaneDeploymentName(et.ClusterName)}, d); err != nil {
				t.Fatal(err)
			}
			if err := w.base.Get(w.ctx, client.ObjectKey{Namespace: et.NS, Name: kdcv1alpha1.EtcdStatefulSetName(et.DS)}, sts); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]int32{tc.wantCP, tc.wantEtcd}, []int32{*d.Spec.Replicas, *sts.Spec.Replicas}); diff != "" {
				t.Errorf("replicas [C-cp DS-etcd] (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantJobs, w.jobNames()); diff != "" {
				t.Errorf("Jobs (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRestoreSurvivesFailedWrites fails each write of a whole restore once (as if the manager
// died at that point, or the API server refused it) and checks that the restore still completes
// exactly as without the failure: one verify and one restore Job, the recorded replica counts
// restored, no rollback.
func TestRestoreSurvivesFailedWrites(t *testing.T) {
	clean := newRestoreWorld(t, testObjects()...)
	clean.run(60)
	total := clean.writes
	if total < 10 {
		t.Fatalf("a restore made only %d writes", total)
	}
	for n := 1; n <= total; n++ {
		w := newRestoreWorld(t, testObjects()...)
		w.failWrite = n
		transcript := w.run(80)
		c := w.cluster()
		cond := restoreReadyCondition(c)
		if cond == nil || cond.Reason != kdcv1alpha1.ReasonRestoreSucceeded {
			t.Errorf("write %d failed: RestoreReady = %+v, want Succeeded; transcript:\n%s", n, cond, strings.Join(transcript, "\n"))
			continue
		}
		created := map[string]int{}
		for _, l := range transcript {
			if strings.HasPrefix(l, "  create Job ") {
				created[strings.TrimPrefix(l, "  create Job ")]++
			}
		}
		if jobs := w.jobNames(); len(jobs) != 1 || !strings.HasPrefix(jobs[0], kdcv1alpha1.BackupCronJobName(et.ClusterName)+"-r") {
			t.Errorf("write %d failed: Jobs left %v, want only the fresh backup", n, jobs)
		}
		for _, job := range []string{kdcv1alpha1.VerifyJobName(et.ClusterName), kdcv1alpha1.RestoreJobName(et.ClusterName)} {
			// A second attempt at creating the same Job would mean a second restore run.
			if k := created[et.NS+"/"+job]; k != 1 {
				t.Errorf("write %d failed: Job %s created %d times", n, job, k)
			}
		}
	}
}
