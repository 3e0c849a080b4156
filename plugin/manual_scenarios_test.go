package plugin

import (
	"bytes"
	"context"
	"flag"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/engine"
	et "kube-dc.com/etcd-backup/engine/enginetest"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata/")

// manualWorld runs the manual restore's driver in the engine's test world: one pass is one
// engine Run; what it tells is the lines it prints.
type manualWorld struct {
	*et.World
	m   *manualRun
	out *bytes.Buffer
}

func (w *manualWorld) Pass() (time.Duration, error) {
	res, err := w.m.pass(w.Ctx)
	return res.RequeueAfter, err
}

func (w *manualWorld) Phase() kdcv1alpha1.RestorePhase { return w.m.run.Phase() }

func (w *manualWorld) Done() bool { return w.m.run.Outcome != nil }

func (w *manualWorld) Told() []string {
	s := strings.TrimRight(w.out.String(), "\n")
	w.out.Reset()
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// TestManualScenarios runs the engine's scenarios (enginetest.Scenarios) through
// `kubectl kdc restore --manual`'s driver and compares each transcript (every Run's writes and
// printed lines) with testdata/manual/<scenario>.golden (go test -run Scenarios -update). A rule
// the controller rejects in Validating is refused here before anything is written.
func TestManualScenarios(t *testing.T) {
	for _, sc := range et.Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			objs := et.Objects()
			if sc.Objects != nil {
				objs = sc.Objects(objs)
			}
			// The manual restore is not requested by annotation: the key comes from the command line.
			key := objs[0].GetAnnotations()[kdcv1alpha1.AnnotationRestoreFrom]
			objs[0].SetAnnotations(nil)
			w := &manualWorld{World: et.NewWorld(t, objs...), out: &bytes.Buffer{}}
			if sc.Setup != nil {
				sc.Setup(w.World)
			}
			o := &Options{IOStreams: genericiooptions.IOStreams{Out: w.out, ErrOut: w.out}, Clock: w.Clock}
			f := &manualFlags{ManagerNamespace: defaultManagerNamespace, LeaderElectionID: defaultLeaderElectionID, Timeout: defaultManualTimeout}
			w.m = &manualRun{o: o, f: f, cl: w.Client, c: w.Cluster(), key: key, start: w.Clock.Now()}
			golden := filepath.Join("testdata", "manual", sc.Golden+".golden")
			if err := w.m.preflight(context.Background()); err != nil {
				transcript := append(w.Told(), "refused: "+err.Error())
				et.CompareGolden(t, golden, transcript, *updateGolden)
				v := engine.ParseViolation(strings.TrimSuffix(strings.SplitN(sc.WantMessage, "failed (", 2)[1], "; nothing was changed"))
				if !strings.HasSuffix(sc.WantMessage, "; nothing was changed") || !strings.Contains(err.Error(), strings.Replace(v.String(), "): ", ": ", 1)) {
					t.Errorf("refused with %v; the controller ends with %q", err, sc.WantMessage)
				}
				if w.Writes != 0 {
					t.Errorf("a refused restore wrote %d times", w.Writes)
				}
				return
			}
			// The controller's per-phase deadlines, so the messages match its own.
			w.m.e.Timeouts = engine.DefaultTimeouts()
			if err := w.m.begin(); err != nil {
				t.Fatal(err)
			}
			transcript := w.Run(80, w)
			et.CompareGolden(t, golden, transcript, *updateGolden)
			if diff := cmp.Diff(sc.WantMessage, w.m.run.Outcome.Message); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
			if cond := et.RestoreReady(w.Cluster()); cond == nil || cond.Message != sc.WantMessage {
				t.Errorf("RestoreReady = %+v, want the outcome", cond)
			}
			d, sts := w.Workloads()
			if diff := cmp.Diff([]int32{sc.WantCP, sc.WantEtcd}, []int32{*d.Spec.Replicas, *sts.Spec.Replicas}); diff != "" {
				t.Errorf("replicas [C-cp DS-etcd] (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(sc.WantJobs, w.JobNames()); diff != "" {
				t.Errorf("Jobs (-want +got):\n%s", diff)
			}
			if sc.WantTCPPaused != nil && w.TCPPaused() != *sc.WantTCPPaused {
				t.Errorf("TenantControlPlane paused = %t, want %t", w.TCPPaused(), *sc.WantTCPPaused)
			}
			if got := w.Cluster().Annotations; len(got) != 0 {
				t.Errorf("the KdcCluster's metadata was written: %v", got)
			}
		})
	}
}
