package restore

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	et "kube-dc.com/etcd-backup/engine/enginetest"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	obcv1alpha1 "kube-dc.com/etcd-backup/api/objectbucket/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/engine"
)

// The unit tests of the restore state machine run the real RestoreReconciler against the fake
// client, with restoreWorld playing kube-controller-manager and the kubelet between reconciles
// (workload status, pods, Job outcomes). Every write of the reconciler goes through an
// interceptor that logs it (the golden transcript) and can inject errors.

// restoreWorld is the simulated cluster.
type restoreWorld struct {
	t      testing.TB
	ctx    context.Context
	base   client.WithWatch
	client client.WithWatch
	clock  *clocktesting.FakeClock
	rec    *events.FakeRecorder
	r      *Reconciler

	// Scripted behaviour.
	jobExit        map[string]int32 // Job name -> exit code of its pod (default 0)
	jobHang        map[string]bool  // Job name -> never finishes
	cpNeverDrains  bool
	cpNeverReady   bool
	etcdNeverStops bool
	// etcdReadyAfterRollback: etcd becomes ready only once the rollback Job succeeded.
	etcdNeverReadyOnRestored bool

	// failWrite injects an error into the n-th write of the reconciler (1-based; 0: never).
	failWrite, writes int
	// log is the transcript of the reconciler's writes and Events.
	log []string
}

func newRestoreWorld(t testing.TB, objs ...client.Object) *restoreWorld {
	t.Helper()
	s := et.Scheme(t)
	w := &restoreWorld{t: t, ctx: ctrl.LoggerInto(context.Background(), ctrl.Log), jobExit: map[string]int32{}, jobHang: map[string]bool{}}
	w.base = fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).
		WithStatusSubresource(&kdcv1alpha1.KdcCluster{}, &appsv1.Deployment{}, &appsv1.StatefulSet{}, &batchv1.Job{}, &corev1.Pod{}).
		Build()
	write := func(verb string, obj client.Object, detail string) error {
		w.writes++
		if w.failWrite == w.writes {
			w.log = append(w.log, fmt.Sprintf("  !! %s %s %s: injected error", verb, restoreKindOf(s, obj), client.ObjectKeyFromObject(obj)))
			return apierrors.NewServiceUnavailable("injected")
		}
		line := fmt.Sprintf("  %s %s %s", verb, restoreKindOf(s, obj), client.ObjectKeyFromObject(obj))
		if detail != "" {
			line += " " + detail
		}
		w.log = append(w.log, line)
		return nil
	}
	w.client = interceptor.NewClient(w.base, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if err := write("create", obj, ""); err != nil {
				return err
			}
			if obj.GetUID() == "" {
				obj.SetUID(types.UID("uid-" + obj.GetName()))
			}
			return c.Create(ctx, obj, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			if err := write("delete", obj, ""); err != nil {
				return err
			}
			return c.Delete(ctx, obj, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			if err := write("patch", obj, restorePatchSummary(patch, obj)); err != nil {
				return err
			}
			return c.Patch(ctx, obj, patch, opts...)
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			if err := write("patch "+sub+" of", obj, restorePatchSummary(patch, obj)); err != nil {
				return err
			}
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
	})
	w.clock = clocktesting.NewFakeClock(et.Start)
	w.rec = events.NewFakeRecorder(1000)
	w.r = &Reconciler{Client: w.client, Recorder: w.rec, Engine: &engine.Engine{Client: w.client, Live: w.client, Clock: w.clock,
		Image: et.Image, S3Endpoint: "http://s3.example:80"}}
	w.startPods()
	return w
}

// restoreKindOf names obj's kind.
func restoreKindOf(s *runtime.Scheme, obj client.Object) string {
	gvks, _, err := s.ObjectKinds(obj)
	if err != nil || len(gvks) == 0 {
		return fmt.Sprintf("%T", obj)
	}
	return gvks[0].Kind
}

// restorePatchSummary renders a patch without the volatile fields (resourceVersion, times).
func restorePatchSummary(p client.Patch, obj client.Object) string {
	data, err := p.Data(obj)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	var v any
	if json.Unmarshal(data, &v) != nil {
		return string(data)
	}
	var strip func(any) any
	strip = func(x any) any {
		switch t := x.(type) {
		case map[string]any:
			for k := range t {
				if k == "resourceVersion" || k == "lastTransitionTime" {
					delete(t, k)
				} else {
					t[k] = strip(t[k])
				}
			}
			if m, ok := t["metadata"].(map[string]any); ok && len(m) == 0 {
				delete(t, "metadata")
			}
		case []any:
			for i := range t {
				t[i] = strip(t[i])
			}
		}
		return x
	}
	out, _ := json.Marshal(strip(v))
	return string(out)
}

func testObjects() []client.Object {
	return []client.Object{
		et.Cluster(et.NS, et.ClusterName, et.DS, map[string]string{
			kdcv1alpha1.AnnotationRestoreFrom:        et.Key,
			kdcv1alpha1.AnnotationRestoreState:       string(kdcv1alpha1.PhaseValidating),
			kdcv1alpha1.AnnotationRestoreRequestedBy: "alice",
			kdcv1alpha1.AnnotationRestoreRequestedAt: et.Start.Format(time.RFC3339),
		}),
		&kdcv1alpha1.KdcClusterDatastore{ObjectMeta: metav1.ObjectMeta{Namespace: et.NS, Name: et.DS}, Spec: kdcv1alpha1.KdcClusterDatastoreSpec{Etcd: kdcv1alpha1.EtcdSpec{Replicas: 1}}},
		et.ControlPlane(et.NS, et.ClusterName, 2),
		et.EtcdStatefulSet(et.NS, et.DS, 1),
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: et.NS, Name: kdcv1alpha1.ObjectBucketClaimName},
			Data: map[string]string{obcv1alpha1.ConfigMapKeyBucketName: "tenant-managed-k8s-backups", obcv1alpha1.ConfigMapKeyBucketHost: "rgw.rook-ceph.svc", obcv1alpha1.ConfigMapKeyBucketPort: "80"}},
		&batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: et.NS, Name: kdcv1alpha1.BackupCronJobName(et.ClusterName), UID: "uid-cronjob"},
			Spec: batchv1.CronJobSpec{Schedule: "0 2 * * *", JobTemplate: batchv1.JobTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{kdcv1alpha1.LabelComponent: kdcv1alpha1.ComponentBackup}},
				Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{Name: "backup", Image: et.Image}}}}},
			}}},
	}
}

// startPods brings the workloads to their steady state before the restore.
func (w *restoreWorld) startPods() {
	for w.step() {
	}
	w.log = nil
}

func (w *restoreWorld) cluster() *kdcv1alpha1.KdcCluster {
	c := &kdcv1alpha1.KdcCluster{}
	if err := w.base.Get(w.ctx, client.ObjectKey{Namespace: et.NS, Name: et.ClusterName}, c); err != nil {
		w.t.Fatal(err)
	}
	return c
}

// step plays kube-controller-manager and the kubelet once; it reports whether anything changed.
func (w *restoreWorld) step() bool {
	changed := false
	c := w.base
	ctx := w.ctx
	must := func(err error) {
		if err != nil {
			w.t.Fatal(err)
		}
	}
	// The control plane.
	d := &appsv1.Deployment{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: et.NS, Name: kdcv1alpha1.ControlPlaneDeploymentName(et.ClusterName)}, d); err == nil {
		want := int(engine.Replicas(d.Spec.Replicas))
		var pods corev1.PodList
		must(c.List(ctx, &pods, client.InNamespace(et.NS), client.MatchingLabels(d.Spec.Selector.MatchLabels)))
		rollout := d.Spec.Template.Annotations[kdcv1alpha1.AnnotationRestartedAt]
		var current []corev1.Pod
		for _, p := range pods.Items {
			if p.Annotations[kdcv1alpha1.AnnotationRestartedAt] != rollout && !w.cpNeverDrains {
				must(c.Delete(ctx, &p))
				changed = true
				continue
			}
			current = append(current, p)
		}
		for len(current) > want && !w.cpNeverDrains {
			must(c.Delete(ctx, &current[len(current)-1]))
			current = current[:len(current)-1]
			changed = true
		}
		for i := len(current); i < want; i++ {
			p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: et.NS, Name: fmt.Sprintf("%s-%s-%d", d.Name, rollout, i),
				Labels: d.Spec.Selector.MatchLabels, Annotations: map[string]string{kdcv1alpha1.AnnotationRestartedAt: rollout}}}
			p.Name = strings.ReplaceAll(strings.ToLower(p.Name), ":", "")
			p.Name = strings.ReplaceAll(p.Name, ".", "")
			must(c.Create(ctx, &p))
			current = append(current, p)
			changed = true
		}
		ready := int32(len(current))
		if w.cpNeverReady && rollout != "" {
			ready = 0
		}
		st := appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: int32(len(current)), UpdatedReplicas: int32(len(current)), ReadyReplicas: ready, AvailableReplicas: ready}
		if !equality.Semantic.DeepEqual(d.Status, st) {
			d.Status = st
			must(c.Status().Update(ctx, d))
			changed = true
		}
	}
	// etcd.
	sts := &appsv1.StatefulSet{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: et.NS, Name: kdcv1alpha1.EtcdStatefulSetName(et.DS)}, sts); err == nil {
		want := engine.Replicas(sts.Spec.Replicas)
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: et.NS, Name: kdcv1alpha1.EtcdPodName(et.DS)}}
		exists := c.Get(ctx, client.ObjectKeyFromObject(pod), pod) == nil
		switch {
		case want > 0 && !exists:
			must(c.Create(ctx, pod))
			exists, changed = true, true
		case want == 0 && exists && !w.etcdNeverStops:
			must(c.Delete(ctx, pod))
			exists, changed = false, true
		}
		var n, ready int32
		if exists {
			n, ready = 1, 1
		}
		cl := w.cluster()
		if w.etcdNeverReadyOnRestored && cl.Annotations[kdcv1alpha1.AnnotationRestoreSwapped] == "true" && cl.Annotations[kdcv1alpha1.AnnotationRestoreRolledBack] != "true" {
			ready = 0
		}
		st := appsv1.StatefulSetStatus{ObservedGeneration: sts.Generation, Replicas: n, ReadyReplicas: ready, AvailableReplicas: ready, CurrentReplicas: n, UpdatedReplicas: n}
		if !equality.Semantic.DeepEqual(sts.Status, st) {
			sts.Status = st
			must(c.Status().Update(ctx, sts))
			changed = true
		}
	}
	// Jobs, as kube-controller-manager's Job controller and the kubelet run them: a step runs the
	// Job's pod to its end (terminal phase, exit code, termination message); the Job controller
	// sets the Job's Complete/Failed condition only a step later (it batches pod updates), so a
	// reconcile in between sees a finished pod of a Job without a condition.
	var jobs batchv1.JobList
	must(c.List(ctx, &jobs))
	for i := range jobs.Items {
		j := &jobs.Items[i]
		if len(j.Status.Conditions) > 0 || w.jobHang[j.Name] {
			continue
		}
		code := w.jobExit[j.Name]
		pod := &corev1.Pod{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: j.Namespace, Name: j.Name + "-pod"}, pod); err == nil && metav1.IsControlledBy(pod, j) {
			cond := batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}
			if code != 0 {
				cond = batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "PodFailurePolicy"}
			}
			j.Status.Conditions = append(j.Status.Conditions, cond)
			must(c.Status().Update(ctx, j))
			changed = true
			continue
		} else if err == nil {
			must(c.Delete(ctx, pod)) // of an earlier Job of the same name
		}
		pod = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: j.Namespace, Name: j.Name + "-pod",
			Labels:          map[string]string{batchv1.JobNameLabel: j.Name, batchv1.ControllerUidLabel: string(j.UID)},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(j, batchv1.SchemeGroupVersion.WithKind("Job"))}}}
		must(c.Create(ctx, pod))
		phase := corev1.PodSucceeded
		msg := `{"key":"` + et.Key + `"}`
		if j.Name == kdcv1alpha1.RestoreJobName(et.ClusterName) {
			msg = `{"key":"` + et.Key + `","revision":239,"revisionBefore":2000000241,"bumpRevision":3000000002,"restoredRevision":3000000241}`
		}
		if code != 0 {
			phase = corev1.PodFailed
			msg = fmt.Sprintf(`{"error":"scripted failure of %s","reason":"Integrity","exitCode":%d}`, j.Name, code)
		}
		pod.Status = corev1.PodStatus{Phase: phase, ContainerStatuses: []corev1.ContainerStatus{{Name: engine.ContainerName,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Message: msg}}}}}
		must(c.Status().Update(ctx, pod))
		changed = true
	}
	return changed
}

// run reconciles until the restore ends (or maxReconciles), playing the world in between and
// moving the clock to the requested deadline when nothing happened. It returns the
// transcript: every reconcile's phase before and after, and its writes and Events.
func (w *restoreWorld) run(maxReconciles int) []string {
	var out []string
	for i := 1; i <= maxReconciles; i++ {
		before := kdcv1alpha1.RestorePhaseOf(w.cluster().Annotations)
		w.log = nil
		res, err := w.r.Reconcile(w.ctx, ctrl.Request{NamespacedName: client.ObjectKey{Namespace: et.NS, Name: et.ClusterName}})
		c := w.cluster()
		after := kdcv1alpha1.RestorePhaseOf(c.Annotations)
		head := fmt.Sprintf("reconcile %d: %s -> %s", i, restorePhaseOrNone(before), restorePhaseOrNone(after))
		if res.RequeueAfter > 0 {
			head += fmt.Sprintf(" (requeue after %s)", res.RequeueAfter)
		}
		if err != nil {
			head += " error: " + err.Error()
		}
		out = append(out, head)
		out = append(out, w.log...)
		out = append(out, w.drainEvents()...)
		if after == "" && c.Annotations[kdcv1alpha1.AnnotationRestoreFrom] == "" {
			return out
		}
		// The reconciler's own writes (a patch, a create, a delete) come back as watch events and
		// wake it again; only when neither it nor the world changed anything does the clock move to
		// the deadline it asked for.
		wrote := false
		for _, l := range w.log {
			wrote = wrote || !strings.HasPrefix(l, "  event ")
		}
		changed := w.step()
		switch {
		case !changed && !wrote && res.RequeueAfter > 0:
			w.clock.Step(res.RequeueAfter)
			out = append(out, fmt.Sprintf("  (clock +%s)", res.RequeueAfter))
		default:
			w.clock.Step(time.Second)
		}
	}
	w.t.Fatalf("restore did not end within %d reconciles:\n%s", maxReconciles, strings.Join(out, "\n"))
	return nil
}

func restorePhaseOrNone(p kdcv1alpha1.RestorePhase) string {
	if p == "" {
		return "(none)"
	}
	return string(p)
}

func (w *restoreWorld) drainEvents() []string {
	var out []string
	for {
		select {
		case e := <-w.rec.Events:
			out = append(out, "  event "+e)
		default:
			return out
		}
	}
}

// restoreReadyCondition returns the cluster's RestoreReady without its transition time.
func restoreReadyCondition(c *kdcv1alpha1.KdcCluster) *metav1.Condition {
	for _, cond := range c.Status.Conditions {
		if cond.Type == kdcv1alpha1.ConditionRestoreReady {
			cond.LastTransitionTime = metav1.Time{}
			return &cond
		}
	}
	return nil
}

// jobNames lists the Jobs in the world, sorted.
func (w *restoreWorld) jobNames() []string {
	var jobs batchv1.JobList
	if err := w.base.List(w.ctx, &jobs); err != nil {
		w.t.Fatal(err)
	}
	var names []string
	for _, j := range jobs.Items {
		names = append(names, j.Name)
	}
	sort.Strings(names)
	return names
}
