package restore

import (
	"flag"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	et "kube-dc.com/etcd-backup/engine/enginetest"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestRestoreScenarios runs the engine's scenarios (enginetest.Scenarios: the success, each
// failure class, the recoveries) through the controller and compares each transcript (every
// reconcile's phase, writes and Events) with testdata/<scenario>.golden
// (go test -run Scenarios -update rewrites them); then checks how the restore ended.
func TestRestoreScenarios(t *testing.T) {
	for _, sc := range et.Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			objs := et.Objects()
			if sc.Objects != nil {
				objs = sc.Objects(objs)
			}
			w := newRestoreWorld(t, objs...)
			if sc.Setup != nil {
				sc.Setup(w.World)
			}
			_, stsBefore := w.Workloads()
			transcript := w.run(80)
			et.CompareGolden(t, filepath.Join("testdata", sc.Golden+".golden"), transcript, *updateGolden)
			c := w.Cluster()
			cond := et.RestoreReady(c)
			if cond == nil {
				t.Fatalf("no RestoreReady condition; transcript:\n%s", strings.Join(transcript, "\n"))
			}
			if diff := cmp.Diff(sc.WantMessage, cond.Message); diff != "" {
				t.Errorf("message (-want +got):\n%s", diff)
			}
			wantStatus, wantReason := metav1.ConditionFalse, kdcv1alpha1.ReasonRestoreFailed
			if sc.Succeeded() {
				wantStatus, wantReason = metav1.ConditionTrue, kdcv1alpha1.ReasonRestoreSucceeded
				if c.Status.LatestRestoreKey != et.Key || c.Status.LatestRestoreTime == nil {
					t.Errorf("latestRestoreKey/Time = %q/%v, want %q and a time", c.Status.LatestRestoreKey, c.Status.LatestRestoreTime, et.Key)
				}
			}
			if cond.Status != wantStatus || cond.Reason != wantReason || cond.ObservedGeneration != 1 {
				t.Errorf("condition %s/%s (generation %d), want %s/%s (1)", cond.Status, cond.Reason, cond.ObservedGeneration, wantStatus, wantReason)
			}
			if diff := cmp.Diff(map[string]string(nil), restoreAnnotationsOf(c)); diff != "" {
				t.Errorf("restore annotations left (-want +got):\n%s", diff)
			}
			d, sts := w.Workloads()
			if diff := cmp.Diff([]int32{sc.WantCP, sc.WantEtcd}, []int32{*d.Spec.Replicas, *sts.Spec.Replicas}); diff != "" {
				t.Errorf("replicas [C-cp DS-etcd] (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(stsBefore.Spec.Template.Spec.Containers, sts.Spec.Template.Spec.Containers); diff != "" {
				t.Errorf("etcd's containers changed by the restore (-before +after):\n%s", diff)
			}
			if sc.Succeeded() && sc.WantTCPPaused == nil && d.Spec.Template.Annotations[kdcv1alpha1.AnnotationRestartedAt] == "" {
				t.Errorf("control plane: no rollout stamp %s", kdcv1alpha1.AnnotationRestartedAt)
			}
			if diff := cmp.Diff(sc.WantJobs, w.JobNames()); diff != "" {
				t.Errorf("Jobs (-want +got):\n%s", diff)
			}
			if sc.WantTCPPaused != nil && w.TCPPaused() != *sc.WantTCPPaused {
				t.Errorf("TenantControlPlane paused = %t, want %t", w.TCPPaused(), *sc.WantTCPPaused)
			}
		})
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

// TestRestoreSurvivesFailedWrites fails each write of a whole restore once (as if the manager
// died at that point, or the API server refused it) and checks that the restore still completes
// exactly as without the failure: one verify and one restore Job, the recorded replica counts
// restored, no rollback.
func TestRestoreSurvivesFailedWrites(t *testing.T) {
	for _, layout := range []struct {
		name    string
		objects func() []client.Object
	}{
		{"plain Deployment", et.Objects},
		{"Kamaji TenantControlPlane", func() []client.Object { return et.KamajiControlPlane(et.Objects(), false) }},
		{"three etcd members", func() []client.Object { return et.ThreeMembers(et.Objects(), appsv1.ParallelPodManagement) }},
		{"three etcd members, OrderedReady", func() []client.Object { return et.ThreeMembers(et.Objects(), appsv1.OrderedReadyPodManagement) }},
		{"shared datastore", func() []client.Object { return et.SharedDataStore(et.Objects(), 1) }},
	} {
		t.Run(layout.name, func(t *testing.T) {
			clean := newRestoreWorld(t, layout.objects()...)
			clean.run(60)
			total := clean.Writes
			if total < 10 {
				t.Fatalf("a restore made only %d writes", total)
			}
			for n := 1; n <= total; n++ {
				w := newRestoreWorld(t, layout.objects()...)
				w.FailWrite = n
				transcript := w.run(80)
				c := w.Cluster()
				cond := et.RestoreReady(c)
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
				if jobs := w.JobNames(); len(jobs) != 1 || !strings.HasPrefix(jobs[0], kdcv1alpha1.BackupCronJobName(et.ClusterName)+"-r") {
					t.Errorf("write %d failed: Jobs left %v, want only the fresh backup", n, jobs)
				}
				restoreJob := kdcv1alpha1.RestoreJobName(et.ClusterName)
				if strings.HasPrefix(layout.name, "three etcd members") {
					restoreJob += "-0"
				}
				for _, job := range []string{kdcv1alpha1.VerifyJobName(et.ClusterName), restoreJob} {
					// A second attempt at creating the same Job would mean a second restore run.
					if k := created[et.NS+"/"+job]; k != 1 {
						t.Errorf("write %d failed: Job %s created %d times", n, job, k)
					}
				}
				if layout.name == "Kamaji TenantControlPlane" && w.TCPPaused() {
					t.Errorf("write %d failed: the TenantControlPlane is left paused", n)
				}
			}
		})
	}
}
