package restore

import (
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/engine"
	et "kube-dc.com/etcd-backup/engine/enginetest"
)

// TestRestoreReplacesStaleJobs starts a restore while Jobs of an earlier restore are left (as
// after a failed one): the verify Job is deleted in the background and replaced in the same
// reconcile; the restore Job, which mounts the data volume, is deleted in the foreground and
// replaced only in a later reconcile (woken by its deletion).
func TestRestoreReplacesStaleJobs(t *testing.T) {
	w := newRestoreWorld(t, et.Objects()...)
	c := w.Cluster()
	plan, _, err := w.r.Engine.Prepare(w.Ctx, c, et.Key)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []engine.JobKind{engine.JobVerify, engine.JobRestore} {
		j := engine.BuildJob(kind, c, plan, "2026-02-01T00:00:00Z")
		j.UID = types.UID("uid-earlier-" + j.Name)
		if err := w.Base.Create(w.Ctx, j); err != nil {
			t.Fatal(err)
		}
		j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue}}
		if err := w.Base.Status().Update(w.Ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	transcript := w.run(60)
	cond := et.RestoreReady(w.Cluster())
	if cond == nil || cond.Reason != kdcv1alpha1.ReasonRestoreSucceeded {
		t.Fatalf("RestoreReady = %+v, want Succeeded; transcript:\n%s", cond, strings.Join(transcript, "\n"))
	}
	reconcileOf := func(line string) int {
		n := 0
		for _, l := range transcript {
			if strings.HasPrefix(l, "pass ") {
				n++
			}
			if l == line {
				return n
			}
		}
		t.Fatalf("no %q in the transcript:\n%s", line, strings.Join(transcript, "\n"))
		return 0
	}
	verify := client.ObjectKey{Namespace: et.NS, Name: kdcv1alpha1.VerifyJobName(et.ClusterName)}.String()
	restore := client.ObjectKey{Namespace: et.NS, Name: kdcv1alpha1.RestoreJobName(et.ClusterName)}.String()
	if d, cr := reconcileOf("  delete Job "+verify), reconcileOf("  create Job "+verify); d != cr {
		t.Errorf("stale verify Job deleted in reconcile %d, its replacement created in %d: want the same", d, cr)
	}
	if d, cr := reconcileOf("  delete Job "+restore), reconcileOf("  create Job "+restore); cr <= d {
		t.Errorf("stale restore Job deleted in reconcile %d, its replacement created in %d: want later", d, cr)
	}
}
