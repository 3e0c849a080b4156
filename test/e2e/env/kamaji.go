package env

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kamajiv1alpha1 "kube-dc.com/etcd-backup/api/kamaji/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/test/framework"
)

// resourceVersion as a number: one etcd holds every kind, so it orders events across kinds.
func resourceVersion(obj metav1.Object) int64 {
	rv, _ := strconv.ParseInt(obj.GetResourceVersion(), 10, 64)
	return rv
}

// Phase is when the restore entered phase, if it did.
func (r *Restore) Phase(phase kdcv1alpha1.RestorePhase) (PhaseTiming, bool) {
	for _, p := range r.Phases {
		if p.Phase == phase {
			return p, true
		}
	}
	return PhaseTiming{}, false
}

// PhaseAfter is when the restore entered the phase that followed phase, if it did.
func (r *Restore) PhaseAfter(phase kdcv1alpha1.RestorePhase) (PhaseTiming, bool) {
	for i, p := range r.Phases {
		if p.Phase == phase && i+1 < len(r.Phases) {
			return r.Phases[i+1], true
		}
	}
	return PhaseTiming{}, false
}

// ControlPlaneName is C-cp: the TenantControlPlane and the Deployment it owns.
func (t *Tenant) ControlPlaneName() string { return kdcv1alpha1.ControlPlaneDeploymentName(t.Cluster) }

// TenantControlPlane is the tenant's TCP.
func (t *Tenant) TenantControlPlane(ctx context.Context) (*kamajiv1alpha1.TenantControlPlane, error) {
	tcp := &kamajiv1alpha1.TenantControlPlane{}
	err := t.env.Client.Get(ctx, client.ObjectKey{Namespace: t.Namespace, Name: t.ControlPlaneName()}, tcp)
	return tcp, err
}

// OwnerRevert is what the Kamaji stand-in did to a scale of C-cp to 0 behind its back.
type OwnerRevert struct {
	// Output is kubectl scale's.
	Output string
	// Replicas is the TCP's count, which the Deployment was set back to, after Took.
	Replicas int32
	Took     time.Duration
	// Reverts is the stand-in's count of reverts after this one.
	Reverts int64
	// PodsBefore and PodsAfter: C-cp's pods before the scale and once the tenant is ready again.
	PodsBefore, PodsAfter []string
}

// ScaleAgainstOwner scales C-cp to 0 behind the unpaused TCP, as a restore without the pause would.
func (t *Tenant) ScaleAgainstOwner(ctx context.Context) (*OwnerRevert, error) {
	e, name := t.env, t.ControlPlaneName()
	tcp, err := t.TenantControlPlane(ctx)
	if err != nil {
		return nil, err
	}
	if _, paused := tcp.Annotations[kamajiv1alpha1.AnnotationPaused]; paused {
		return nil, fmt.Errorf("TenantControlPlane %s is paused", name)
	}
	o := &OwnerRevert{Replicas: ptr.Deref(tcp.Spec.ControlPlane.Deployment.Replicas, 0)}
	if o.PodsBefore, err = t.controlPlanePods(ctx); err != nil {
		return nil, err
	}
	before := e.Kamaji.Reverts()
	start := time.Now()
	if o.Output, err = e.Kubectl(ctx, "scale", "deployment", name, "-n", t.Namespace, "--replicas=0"); err != nil {
		return nil, fmt.Errorf("kubectl scale: %w: %s", err, o.Output)
	}
	err = poll(ctx, 30*time.Second, 10*time.Millisecond, func() error {
		var d appsv1.Deployment
		if err := e.Client.Get(ctx, client.ObjectKey{Namespace: t.Namespace, Name: name}, &d); err != nil {
			return err
		}
		if got := ptr.Deref(d.Spec.Replicas, 1); got != o.Replicas || e.Kamaji.Reverts() == before {
			return fmt.Errorf("deployment %s at %d replicas, %d reverts by the Kamaji stand-in", name, got, e.Kamaji.Reverts()-before)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("the Kamaji stand-in did not undo the scale: %w", err)
	}
	o.Took, o.Reverts = time.Since(start), e.Kamaji.Reverts()
	if err := t.WaitReady(ctx, 2*time.Minute); err != nil {
		return nil, err
	}
	if o.PodsAfter, err = t.controlPlanePods(ctx); err != nil {
		return nil, err
	}
	return o, nil
}

// controlPlanePods are the names of C-cp's pods, sorted.
func (t *Tenant) controlPlanePods(ctx context.Context) ([]string, error) {
	var pods corev1.PodList
	if err := t.env.Client.List(ctx, &pods, client.InNamespace(t.Namespace), client.MatchingLabels{kamajiv1alpha1.LabelName: t.ControlPlaneName()}); err != nil {
		return nil, err
	}
	names := []string{}
	for _, p := range pods.Items {
		names = append(names, p.Name)
	}
	sort.Strings(names)
	return names, nil
}

// ControlPlaneEvent is one watch event of a pod of C-cp or of the TenantControlPlane.
type ControlPlaneEvent struct {
	At              time.Time
	ResourceVersion int64
	// Kind is "Pod" or "TenantControlPlane"; Type is Added for what the initial list held.
	Kind string
	Type watch.EventType
	Name string
	// Pods: the phase and whether it is terminating.
	PodPhase    corev1.PodPhase
	Terminating bool
	// TenantControlPlane: whether it carries kamaji.clastix.io/paused, and its value.
	Paused      bool
	PausedValue string
}

// ControlPlaneWatch records every pod (kamaji.clastix.io/name) and TCP state of C-cp until Stop.
type ControlPlaneWatch struct {
	mu      sync.Mutex
	events  []ControlPlaneEvent
	errs    []error
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	reverts int64
	t       *Tenant
}

// WatchControlPlane starts the recording; start it before the restore is requested.
func (t *Tenant) WatchControlPlane(ctx context.Context) (*ControlPlaneWatch, error) {
	e, name := t.env, t.ControlPlaneName()
	wc, err := client.NewWithWatch(e.Mgmt.Config, client.Options{Scheme: framework.Scheme})
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	cw := &ControlPlaneWatch{cancel: cancel, t: t, reverts: e.Kamaji.Reverts()}
	now := time.Now()

	var pods corev1.PodList
	if err := wc.List(ctx, &pods, client.InNamespace(t.Namespace), client.MatchingLabels{kamajiv1alpha1.LabelName: name}); err != nil {
		cancel()
		return nil, err
	}
	for i := range pods.Items {
		cw.add(podEvent(now, watch.Added, &pods.Items[i]))
	}
	podWatch, err := wc.Watch(wctx, &corev1.PodList{}, client.InNamespace(t.Namespace), client.MatchingLabels{kamajiv1alpha1.LabelName: name},
		&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: pods.ResourceVersion}})
	if err != nil {
		cancel()
		return nil, err
	}
	var tcps kamajiv1alpha1.TenantControlPlaneList
	if err := wc.List(ctx, &tcps, client.InNamespace(t.Namespace), client.MatchingFields{"metadata.name": name}); err != nil {
		podWatch.Stop()
		cancel()
		return nil, err
	}
	for i := range tcps.Items {
		cw.add(tcpEvent(now, watch.Added, &tcps.Items[i]))
	}
	tcpWatch, err := wc.Watch(wctx, &kamajiv1alpha1.TenantControlPlaneList{}, client.InNamespace(t.Namespace), client.MatchingFields{"metadata.name": name},
		&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: tcps.ResourceVersion}})
	if err != nil {
		podWatch.Stop()
		cancel()
		return nil, err
	}
	for _, w := range []watch.Interface{podWatch, tcpWatch} {
		cw.wg.Add(1)
		go cw.record(wctx, w)
	}
	return cw, nil
}

func (cw *ControlPlaneWatch) add(ev ControlPlaneEvent) {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	cw.events = append(cw.events, ev)
}

func (cw *ControlPlaneWatch) record(ctx context.Context, w watch.Interface) {
	defer cw.wg.Done()
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.ResultChan():
			if !ok {
				if ctx.Err() == nil {
					cw.mu.Lock()
					cw.errs = append(cw.errs, errors.New("a watch of the control plane ended before Stop: events may be missing"))
					cw.mu.Unlock()
				}
				return
			}
			now := time.Now()
			switch o := ev.Object.(type) {
			case *corev1.Pod:
				cw.add(podEvent(now, ev.Type, o))
			case *kamajiv1alpha1.TenantControlPlane:
				cw.add(tcpEvent(now, ev.Type, o))
			default:
				cw.mu.Lock()
				cw.errs = append(cw.errs, fmt.Errorf("watch of the control plane: %s event %v", ev.Type, ev.Object))
				cw.mu.Unlock()
			}
		}
	}
}

func podEvent(at time.Time, typ watch.EventType, p *corev1.Pod) ControlPlaneEvent {
	return ControlPlaneEvent{At: at, ResourceVersion: resourceVersion(p), Kind: "Pod", Type: typ, Name: p.Name,
		PodPhase: p.Status.Phase, Terminating: p.DeletionTimestamp != nil}
}

func tcpEvent(at time.Time, typ watch.EventType, tcp *kamajiv1alpha1.TenantControlPlane) ControlPlaneEvent {
	v, paused := tcp.Annotations[kamajiv1alpha1.AnnotationPaused]
	return ControlPlaneEvent{At: at, ResourceVersion: resourceVersion(tcp), Kind: "TenantControlPlane", Type: typ, Name: tcp.Name,
		Paused: paused, PausedValue: v}
}

// ControlPlaneReport is what happened to C-cp's pods and TenantControlPlane during a restore.
type ControlPlaneReport struct {
	// Events are all recorded events in resourceVersion order.
	Events []ControlPlaneEvent
	// Paused and Resumed are the TCP events that added and removed the restore's pause.
	Paused, Resumed *ControlPlaneEvent
	// Gone: pods deleted during the drain; Started: pods created from StartingControlPlane on.
	Gone, Started []ControlPlaneEvent
	// Drained and Starting: the restore entering StoppingEtcd (the drain's end) and StartingControlPlane.
	Drained, Starting PhaseTiming
	// PodsInWindow counts the pods of C-cp that existed between Drained and Starting.
	PodsInWindow int
	// RevertsDuring is how often the Kamaji stand-in set the replicas back during the restore.
	RevertsDuring int64
	// Violations break the write barrier or the pause (docs/restore.md); empty when the restore held.
	Violations []string
}

// Stop ends the recording and checks it against the succeeded restore r (docs/demo.md says what holds).
func (cw *ControlPlaneWatch) Stop(r *Restore) (*ControlPlaneReport, error) {
	cw.cancel()
	cw.wg.Wait()
	cw.mu.Lock()
	defer cw.mu.Unlock()
	if len(cw.errs) > 0 {
		return nil, errors.Join(cw.errs...)
	}
	return checkControlPlane(cw.events, r, cw.t.env.Kamaji.Reverts()-cw.reverts)
}

// checkControlPlane replays the events in etcd's order against the restore's phases.
func checkControlPlane(events []ControlPlaneEvent, r *Restore, revertsDuring int64) (*ControlPlaneReport, error) {
	rep := &ControlPlaneReport{Events: append([]ControlPlaneEvent(nil), events...), RevertsDuring: revertsDuring}
	sort.SliceStable(rep.Events, func(i, j int) bool { return rep.Events[i].ResourceVersion < rep.Events[j].ResourceVersion })
	var ok bool
	// The drain ends with the next phase: StoppingEtcd, or RestoringSnapshot in prefix mode (docs/restore.md).
	if rep.Drained, ok = r.PhaseAfter(kdcv1alpha1.PhaseDrainingControlPlane); !ok {
		return nil, fmt.Errorf("the restore never left %s (phases %v)", kdcv1alpha1.PhaseDrainingControlPlane, r.PhaseNames())
	}
	if rep.Starting, ok = r.Phase(kdcv1alpha1.PhaseStartingControlPlane); !ok {
		return nil, fmt.Errorf("the restore never entered %s (phases %v)", kdcv1alpha1.PhaseStartingControlPlane, r.PhaseNames())
	}
	violate := func(format string, args ...any) {
		rep.Violations = append(rep.Violations, fmt.Sprintf(format, args...))
	}
	pods := map[string]ControlPlaneEvent{}
	paused, checked := false, false
	for i := range rep.Events {
		ev := rep.Events[i]
		rv := ev.ResourceVersion
		if !checked && rv > rep.Drained.ResourceVersion {
			checked = true
			for name, p := range pods {
				rep.PodsInWindow++
				violate("pod %s existed (phase %s, terminating %v) when the drain ended (%s)", name, p.PodPhase, p.Terminating, rep.Drained.Phase)
			}
			if !paused {
				violate("TenantControlPlane not paused when the drain ended (%s)", rep.Drained.Phase)
			}
		}
		inWindow := rv > rep.Drained.ResourceVersion && rv < rep.Starting.ResourceVersion
		switch ev.Kind {
		case "Pod":
			if inWindow {
				if _, seen := pods[ev.Name]; !seen {
					rep.PodsInWindow++
				}
				violate("pod %s %s (phase %s) between the end of the drain and StartingControlPlane", ev.Name, strings.ToLower(string(ev.Type)), ev.PodPhase)
			}
			if ev.Type == watch.Deleted {
				delete(pods, ev.Name)
				if rv < rep.Drained.ResourceVersion {
					rep.Gone = append(rep.Gone, ev)
				}
				continue
			}
			if _, seen := pods[ev.Name]; !seen && rv > rep.Starting.ResourceVersion {
				rep.Started = append(rep.Started, ev)
			}
			pods[ev.Name] = ev
		case "TenantControlPlane":
			if ev.Paused && !paused && rep.Paused == nil {
				rep.Paused = &rep.Events[i]
			}
			if !ev.Paused && paused && rv > rep.Starting.ResourceVersion && rep.Resumed == nil {
				rep.Resumed = &rep.Events[i]
			}
			if inWindow && !ev.Paused {
				violate("TenantControlPlane unpaused between the end of the drain and StartingControlPlane")
			}
			paused = ev.Paused
		}
	}
	if !checked {
		violate("no event after the drain ended was recorded")
	}
	switch {
	case rep.Paused == nil:
		violate("the TenantControlPlane was never paused")
	case rep.Resumed == nil:
		violate("the TenantControlPlane was not resumed after StartingControlPlane")
	case r.EndResourceVersion > 0 && rep.Resumed.ResourceVersion > r.EndResourceVersion:
		violate("the TenantControlPlane was resumed only after the restore ended")
	}
	if paused {
		violate("the TenantControlPlane is still paused at the end")
	}
	if len(rep.Started) == 0 {
		violate("no pod of the control plane was started from StartingControlPlane on")
	}
	if rep.RevertsDuring != 0 {
		violate("the Kamaji stand-in set the replicas back %d times during the restore", rep.RevertsDuring)
	}
	return rep, nil
}

// Lines describe the report for the demo and the test log, times from the restore's start.
func (rep *ControlPlaneReport) Lines(r *Restore) []string {
	at := func(t time.Time) string { return fmt.Sprintf("+%.2fs", t.Sub(r.Start).Seconds()) }
	var lines []string
	if p := rep.Paused; p != nil {
		lines = append(lines, fmt.Sprintf("TenantControlPlane %s paused at %s (%s=%q)", p.Name, at(p.At), kamajiv1alpha1.AnnotationPaused, p.PausedValue))
	}
	for _, g := range rep.Gone {
		lines = append(lines, fmt.Sprintf("pod %s gone at %s", g.Name, at(g.At)))
	}
	lines = append(lines, fmt.Sprintf("drain ended (%s) at %s; StartingControlPlane at %s; pods of the control plane in between: %s",
		rep.Drained.Phase, at(rep.Drained.At), at(rep.Starting.At), podsInWindow(rep.PodsInWindow)))
	for _, s := range rep.Started {
		lines = append(lines, fmt.Sprintf("pod %s created at %s", s.Name, at(s.At)))
	}
	if p := rep.Resumed; p != nil {
		lines = append(lines, fmt.Sprintf("TenantControlPlane %s resumed at %s, once the control plane was ready", p.Name, at(p.At)))
	}
	lines = append(lines, fmt.Sprintf("Kamaji stand-in reverts during the restore: %d", rep.RevertsDuring))
	for _, v := range rep.Violations {
		lines = append(lines, "VIOLATION: "+v)
	}
	return lines
}

func podsInWindow(n int) string {
	if n == 0 {
		return "none"
	}
	return fmt.Sprintf("%d (VIOLATION)", n)
}
