package restore

import (
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/engine"
	et "kube-dc.com/etcd-backup/engine/enginetest"
)

// restoreWorld runs the real Reconciler in the engine's test world (enginetest.World): one pass
// is one reconcile; what it tells is its Events.
type restoreWorld struct {
	*et.World
	r   *Reconciler
	rec *events.FakeRecorder
}

func newRestoreWorld(t testing.TB, objs ...client.Object) *restoreWorld {
	w := &restoreWorld{World: et.NewWorld(t, objs...), rec: events.NewFakeRecorder(1000)}
	w.r = &Reconciler{Client: w.Client, Recorder: w.rec, Engine: &engine.Engine{Client: w.Client, Live: w.Client, Clock: w.Clock,
		Image: et.Image, S3Endpoint: "http://s3.example:80"}}
	return w
}

// run reconciles until the restore ends and returns the transcript.
func (w *restoreWorld) run(maxReconciles int) []string { return w.Run(maxReconciles, w) }

func (w *restoreWorld) Pass() (time.Duration, error) {
	res, err := w.r.Reconcile(w.Ctx, ctrl.Request{NamespacedName: client.ObjectKey{Namespace: et.NS, Name: et.ClusterName}})
	return res.RequeueAfter, err
}

func (w *restoreWorld) Phase() kdcv1alpha1.RestorePhase {
	return kdcv1alpha1.RestorePhaseOf(w.Cluster().Annotations)
}

func (w *restoreWorld) Done() bool {
	c := w.Cluster()
	return kdcv1alpha1.RestorePhaseOf(c.Annotations) == "" && c.Annotations[kdcv1alpha1.AnnotationRestoreFrom] == ""
}

func (w *restoreWorld) Told() []string {
	var out []string
	for {
		select {
		case e := <-w.rec.Events:
			out = append(out, "event "+strings.TrimSpace(e))
		default:
			return out
		}
	}
}
