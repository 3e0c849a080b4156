package enginetest

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	kamajiv1alpha1 "kube-dc.com/etcd-backup/api/kamaji/v1alpha1"
	obcv1alpha1 "kube-dc.com/etcd-backup/api/objectbucket/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// The unit tests of the restore engine's drivers run them against the fake client, with World
// playing kube-controller-manager and the kubelet between passes (workload status, pods, Job
// outcomes). Every write of the driver goes through an interceptor that logs it (the golden
// transcript) and can inject errors.

// JobContainer is the container of the restore's Jobs.
const JobContainer = "restore"

// replicasOf is a replica count, nil meaning 1.
func replicasOf(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

// World is the simulated cluster.
type World struct {
	T testing.TB
	// Ctx carries a logger.
	Ctx context.Context
	// Base is the fake API server; Client is Base with every write logged (and FailWrite).
	Base   client.WithWatch
	Client client.WithWatch
	Clock  *clocktesting.FakeClock

	// Scripted behaviour.
	JobExit        map[string]int32 // Job name -> exit code of its pod (default 0)
	JobHang        map[string]bool  // Job name -> never finishes
	CPNeverDrains  bool
	CPNeverReady   bool
	EtcdNeverStops bool
	// EtcdNeverReadyOnRestored: etcd becomes ready only on the old data (after a rollback).
	EtcdNeverReadyOnRestored bool

	// FailWrite injects an error into the n-th write of the driver (1-based; 0: never).
	FailWrite, Writes int
	// Log is the transcript of the driver's writes since the pass began.
	Log []string
	// onRestored: the restore Job succeeded and no rollback Job succeeded after it.
	onRestored bool
	// Reverts counts how often Kamaji set C-cp's replicas back to its TCP's.
	Reverts int
}

func NewWorld(t testing.TB, objs ...client.Object) *World {
	t.Helper()
	s := Scheme(t)
	w := &World{T: t, Ctx: ctrl.LoggerInto(context.Background(), ctrl.Log), JobExit: map[string]int32{}, JobHang: map[string]bool{}}
	w.Base = fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).
		WithStatusSubresource(&kdcv1alpha1.KdcCluster{}, &appsv1.Deployment{}, &appsv1.StatefulSet{}, &batchv1.Job{}, &corev1.Pod{}).
		Build()
	write := func(verb string, obj client.Object, detail string) error {
		w.Writes++
		if w.FailWrite == w.Writes {
			w.Log = append(w.Log, fmt.Sprintf("  !! %s %s %s: injected error", verb, kindOf(s, obj), client.ObjectKeyFromObject(obj)))
			return apierrors.NewServiceUnavailable("injected")
		}
		line := fmt.Sprintf("  %s %s %s", verb, kindOf(s, obj), client.ObjectKeyFromObject(obj))
		if detail != "" {
			line += " " + detail
		}
		w.Log = append(w.Log, line)
		return nil
	}
	w.Client = interceptor.NewClient(w.Base, interceptor.Funcs{
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
			if err := write("patch", obj, patchSummary(patch, obj)); err != nil {
				return err
			}
			return c.Patch(ctx, obj, patch, opts...)
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			if err := write("patch "+sub+" of", obj, patchSummary(patch, obj)); err != nil {
				return err
			}
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
	})
	w.Clock = clocktesting.NewFakeClock(Start)
	w.startPods()
	return w
}

// kindOf names obj's kind.
func kindOf(s *runtime.Scheme, obj client.Object) string {
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
		return m.Kind
	}
	gvks, _, err := s.ObjectKinds(obj)
	if err != nil || len(gvks) == 0 {
		return fmt.Sprintf("%T", obj)
	}
	return gvks[0].Kind
}

// patchSummary renders a patch without the volatile fields (resourceVersion, times).
func patchSummary(p client.Patch, obj client.Object) string {
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

func Objects() []client.Object {
	return []client.Object{
		Cluster(NS, ClusterName, DS, map[string]string{
			kdcv1alpha1.AnnotationRestoreFrom:        Key,
			kdcv1alpha1.AnnotationRestoreState:       string(kdcv1alpha1.PhaseValidating),
			kdcv1alpha1.AnnotationRestoreRequestedBy: "alice",
			kdcv1alpha1.AnnotationRestoreRequestedAt: Start.Format(time.RFC3339),
		}),
		&kdcv1alpha1.KdcClusterDatastore{ObjectMeta: metav1.ObjectMeta{Namespace: NS, Name: DS}, Spec: kdcv1alpha1.KdcClusterDatastoreSpec{Etcd: kdcv1alpha1.EtcdSpec{Replicas: 1}}},
		ControlPlane(NS, ClusterName, 2),
		EtcdStatefulSet(NS, DS, 1),
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: NS, Name: kdcv1alpha1.ObjectBucketClaimName},
			Data: map[string]string{obcv1alpha1.ConfigMapKeyBucketName: "tenant-managed-k8s-backups", obcv1alpha1.ConfigMapKeyBucketHost: "rgw.rook-ceph.svc", obcv1alpha1.ConfigMapKeyBucketPort: "80"}},
		&batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: NS, Name: kdcv1alpha1.BackupCronJobName(ClusterName), UID: "uid-cronjob"},
			Spec: batchv1.CronJobSpec{Schedule: "0 2 * * *", JobTemplate: batchv1.JobTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{kdcv1alpha1.LabelComponent: kdcv1alpha1.ComponentBackup}},
				Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{Name: "backup", Image: Image}}}}},
			}}},
	}
}

// startPods brings the workloads to their steady state before the restore.
func (w *World) startPods() {
	for w.Step() {
	}
	w.Log = nil
}

// Cluster reads the KdcCluster.
func (w *World) Cluster() *kdcv1alpha1.KdcCluster {
	c := &kdcv1alpha1.KdcCluster{}
	if err := w.Base.Get(w.Ctx, client.ObjectKey{Namespace: NS, Name: ClusterName}, c); err != nil {
		w.T.Fatal(err)
	}
	return c
}

// Step plays kube-controller-manager and the kubelet once; it reports whether anything changed.
func (w *World) Step() bool {
	changed := false
	c := w.Base
	ctx := w.Ctx
	must := func(err error) {
		if err != nil {
			w.T.Fatal(err)
		}
	}
	// The control plane.
	d := &appsv1.Deployment{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: NS, Name: kdcv1alpha1.ControlPlaneDeploymentName(ClusterName)}, d); err == nil {
		changed = w.kamaji(d) || changed
		want := int(replicasOf(d.Spec.Replicas))
		var pods corev1.PodList
		must(c.List(ctx, &pods, client.InNamespace(NS), client.MatchingLabels(d.Spec.Selector.MatchLabels)))
		rollout := d.Spec.Template.Annotations[kdcv1alpha1.AnnotationRestartedAt]
		var current []corev1.Pod
		for _, p := range pods.Items {
			if p.Annotations[kdcv1alpha1.AnnotationRestartedAt] != rollout && !w.CPNeverDrains {
				must(c.Delete(ctx, &p))
				changed = true
				continue
			}
			current = append(current, p)
		}
		for len(current) > want && !w.CPNeverDrains {
			must(c.Delete(ctx, &current[len(current)-1]))
			current = current[:len(current)-1]
			changed = true
		}
		for i := len(current); i < want; i++ {
			p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: NS, Name: fmt.Sprintf("%s-%s-%d", d.Name, rollout, i),
				Labels: d.Spec.Selector.MatchLabels, Annotations: map[string]string{kdcv1alpha1.AnnotationRestartedAt: rollout}}}
			p.Name = strings.ReplaceAll(strings.ToLower(p.Name), ":", "")
			p.Name = strings.ReplaceAll(p.Name, ".", "")
			must(c.Create(ctx, &p))
			current = append(current, p)
			changed = true
		}
		ready := int32(len(current))
		if w.CPNeverReady && rollout != "" {
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
	if err := c.Get(ctx, client.ObjectKey{Namespace: NS, Name: kdcv1alpha1.EtcdStatefulSetName(DS)}, sts); err == nil {
		want := replicasOf(sts.Spec.Replicas)
		// A member with a readiness probe is ready only with a quorum of members running; under
		// OrderedReady member i+1 is created only once member i is ready.
		probe := len(sts.Spec.Template.Spec.Containers) > 0 && sts.Spec.Template.Spec.Containers[0].ReadinessProbe != nil
		ordered := sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement
		var n int32
		blocked := false
		for i := range max(want, 9) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: NS, Name: kdcv1alpha1.MemberPodName(DS, int(i))}}
			exists := c.Get(ctx, client.ObjectKeyFromObject(pod), pod) == nil
			switch {
			case i < want && !exists && !blocked:
				must(c.Create(ctx, pod))
				exists, changed = true, true
			case i >= want && exists && !w.EtcdNeverStops:
				must(c.Delete(ctx, pod))
				exists, changed = false, true
			}
			if exists {
				n++
			}
			blocked = blocked || (ordered && probe && exists && n < want/2+1)
		}
		ready := n
		if probe && n < want/2+1 {
			ready = 0
		}
		if w.EtcdNeverReadyOnRestored && w.onRestored {
			ready = 0
		}
		// The controller revision is the template; a rollout to it completes in one step once
		// every member runs (the others keep the quorum).
		rev := "rev-1"
		if !probe {
			rev = "rev-noprobe"
		}
		current := sts.Status.CurrentRevision
		if current == "" || n == want {
			current = rev
		}
		st := appsv1.StatefulSetStatus{ObservedGeneration: sts.Generation, Replicas: n, ReadyReplicas: ready, AvailableReplicas: ready,
			CurrentReplicas: n, UpdatedReplicas: n, CurrentRevision: current, UpdateRevision: rev}
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
		if len(j.Status.Conditions) > 0 || w.JobHang[j.Name] {
			continue
		}
		code := w.JobExit[j.Name]
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
		switch {
		case code == 0 && (j.Name == kdcv1alpha1.RestoreJobName(ClusterName) || strings.HasPrefix(j.Name, ClusterName+"-etcd-swap-")):
			w.onRestored = true
		case code == 0 && strings.HasPrefix(j.Name, kdcv1alpha1.RollbackJobName(ClusterName)):
			w.onRestored = false
		}
		phase := corev1.PodSucceeded
		msg := `{"key":"` + Key + `"}`
		switch {
		case j.Name == kdcv1alpha1.RestoreJobName(ClusterName):
			msg = `{"key":"` + Key + `","revision":239,"revisionBefore":2000000241,"bumpRevision":3000000002,"restoredRevision":3000000241}`
		case strings.HasPrefix(j.Name, kdcv1alpha1.RestoreJobName(ClusterName)+"-"), strings.HasPrefix(j.Name, ClusterName+"-etcd-restage-"):
			// Member 0 kept its data; the others lost theirs (quorum lost), so they stage lower
			// and are staged again at member 0's revision.
			restored := 3000000241
			if strings.HasSuffix(j.Name, "-restore-1") || strings.HasSuffix(j.Name, "-restore-2") {
				restored = 1000000239
			}
			if strings.Contains(j.Name, "-restage-") {
				restored = 3000000241
			}
			msg = fmt.Sprintf(`{"key":"%s","sha256":"abc","revision":239,"revisionBefore":2000000241,"bumpRevision":%d,"restoredRevision":%d,"state":"staged"}`, Key, restored-239, restored)
		case strings.HasPrefix(j.Name, ClusterName+"-etcd-swap-"):
			msg = `{"state":"swapped"}`
		}
		if code != 0 {
			phase = corev1.PodFailed
			msg = fmt.Sprintf(`{"error":"scripted failure of %s","reason":"Integrity","exitCode":%d}`, j.Name, code)
		}
		pod.Status = corev1.PodStatus{Phase: phase, ContainerStatuses: []corev1.ContainerStatus{{Name: JobContainer,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Message: msg}}}}}
		must(c.Status().Update(ctx, pod))
		changed = true
	}
	return changed
}

// run reconciles until the restore ends (or maxReconciles), playing the world in between and
// moving the clock to the requested deadline when nothing happened. It returns the
// transcript: every reconcile's phase before and after, and its Writes and Events.
// Driver is a restore driver under test: one Pass is one reconcile of the controller, or one
// engine Run of the manual restore.
type Driver interface {
	// Pass runs the driver once.
	Pass() (requeueAfter time.Duration, err error)
	// Phase is the phase the driver has recorded ("" when none).
	Phase() kdcv1alpha1.RestorePhase
	// Done reports whether the restore ended.
	Done() bool
	// Told is what the driver told since the last call (Events, printed lines).
	Told() []string
}

// Run runs the driver until the restore ends (or maxPasses), playing the world in between and
// moving the clock to the requested deadline when nothing happened. It returns the transcript:
// every pass's phase before and after, and its writes and what it told.
func (w *World) Run(maxPasses int, d Driver) []string {
	var out []string
	for i := 1; i <= maxPasses; i++ {
		before := d.Phase()
		w.Log = nil
		requeue, err := d.Pass()
		after := d.Phase()
		head := fmt.Sprintf("pass %d: %s -> %s", i, phaseOrNone(before), phaseOrNone(after))
		if requeue > 0 {
			head += fmt.Sprintf(" (requeue after %s)", requeue)
		}
		if err != nil {
			head += " error: " + err.Error()
		}
		out = append(out, head)
		out = append(out, w.Log...)
		for _, l := range d.Told() {
			out = append(out, "  "+l)
		}
		if d.Done() {
			return out
		}
		// The driver's own writes (a patch, a create, a delete) come back as watch events and
		// wake it again; only when neither it nor the world changed anything does the clock move
		// to the deadline it asked for.
		wrote := len(w.Log) > 0
		changed := w.Step()
		switch {
		case !changed && !wrote && requeue > 0:
			w.Clock.Step(requeue)
			out = append(out, fmt.Sprintf("  (clock +%s)", requeue))
		default:
			w.Clock.Step(time.Second)
		}
	}
	w.T.Fatalf("restore did not end within %d passes:\n%s", maxPasses, strings.Join(out, "\n"))
	return nil
}

func phaseOrNone(p kdcv1alpha1.RestorePhase) string {
	if p == "" {
		return "(none)"
	}
	return string(p)
}

// RestoreReady returns the cluster's RestoreReady without its transition time.
func RestoreReady(c *kdcv1alpha1.KdcCluster) *metav1.Condition {
	for _, cond := range c.Status.Conditions {
		if cond.Type == kdcv1alpha1.ConditionRestoreReady {
			cond.LastTransitionTime = metav1.Time{}
			return &cond
		}
	}
	return nil
}

// JobNames lists the Jobs in the world, sorted.
func (w *World) JobNames() []string {
	var jobs batchv1.JobList
	if err := w.Base.List(w.Ctx, &jobs); err != nil {
		w.T.Fatal(err)
	}
	var names []string
	for _, j := range jobs.Items {
		names = append(names, j.Name)
	}
	sort.Strings(names)
	return names
}

// Workloads reads C-cp and DS-etcd.
func (w *World) Workloads() (*appsv1.Deployment, *appsv1.StatefulSet) {
	d, sts := &appsv1.Deployment{}, &appsv1.StatefulSet{}
	if err := w.Base.Get(w.Ctx, client.ObjectKey{Namespace: NS, Name: kdcv1alpha1.ControlPlaneDeploymentName(ClusterName)}, d); err != nil {
		w.T.Fatal(err)
	}
	if err := w.Base.Get(w.Ctx, client.ObjectKey{Namespace: NS, Name: kdcv1alpha1.EtcdStatefulSetName(DS)}, sts); err != nil {
		w.T.Fatal(err)
	}
	return d, sts
}

// kamaji plays Kamaji's TenantControlPlane controller on C-cp when a TCP owns it: unless the TCP
// is paused, the Deployment's replicas are set back to the TCP's (test/kamaji says which Kamaji
// files this follows). It reports whether it changed the Deployment.
func (w *World) kamaji(d *appsv1.Deployment) bool {
	ref := metav1.GetControllerOf(d)
	if ref == nil || ref.Kind != "TenantControlPlane" {
		return false
	}
	tcp := &kamajiv1alpha1.TenantControlPlane{}
	if err := w.Base.Get(w.Ctx, client.ObjectKey{Namespace: d.Namespace, Name: ref.Name}, tcp); err != nil {
		w.T.Fatal(err)
	}
	if _, paused := tcp.Annotations[kamajiv1alpha1.AnnotationPaused]; paused {
		return false
	}
	want := replicasOf(tcp.Spec.ControlPlane.Deployment.Replicas)
	if replicasOf(d.Spec.Replicas) == want {
		return false
	}
	d.Spec.Replicas = &want
	if err := w.Base.Update(w.Ctx, d); err != nil {
		w.T.Fatal(err)
	}
	w.Reverts++
	return true
}

// TCPPaused reports whether C-cp's TenantControlPlane carries Kamaji's pause.
func (w *World) TCPPaused() bool {
	tcp := &kamajiv1alpha1.TenantControlPlane{}
	if err := w.Base.Get(w.Ctx, client.ObjectKey{Namespace: NS, Name: kdcv1alpha1.ControlPlaneDeploymentName(ClusterName)}, tcp); err != nil {
		w.T.Fatal(err)
	}
	_, paused := tcp.Annotations[kamajiv1alpha1.AnnotationPaused]
	return paused
}
