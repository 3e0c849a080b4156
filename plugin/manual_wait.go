package plugin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/engine"
)

// The manual restore drives the restore engine in a loop: one Run, then a wait for an event of
// the objects the restore acts on (their watches are open for the whole restore) or for the
// deadline the Run reported, then the next Run. No polling, no fixed sleeps.

// manualErrorRetries is how many Runs in a row may fail (API errors) before the restore fails
// and the cluster is brought back.
const manualErrorRetries = 5

// manualErrorBackoff is the first wait after a failed Run; it doubles on each one.
const manualErrorBackoff = 500 * time.Millisecond

// drive runs the restore to its end and returns nil on success, the failure otherwise.
func (m *manualRun) drive(ctx context.Context) error {
	if err := m.begin(); err != nil {
		return err
	}
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	wake, err := m.watchAll(wctx)
	if err != nil {
		return fmt.Errorf("restore from %q refused, nothing was changed: cannot watch the cluster's objects: %w", m.key, err)
	}
	// The recovery runs even when ctx is cancelled (Ctrl-C): the cluster must come back.
	rctx := context.WithoutCancel(ctx)
	failures := 0
	for {
		res, err := m.pass(rctx)
		if o := m.run.Outcome; o != nil {
			return m.finish(o)
		}
		var after time.Duration
		switch {
		case err != nil && failures < manualErrorRetries:
			failures++
			after = manualErrorBackoff << (failures - 1)
			m.warnf("%v; retrying in %s", err, after)
		case err != nil:
			if ferr := m.e.Fail(rctx, m.run, engine.Violation{Reason: kdcv1alpha1.ReasonRestoreFailed, Detail: err.Error()}); ferr != nil {
				return fmt.Errorf("%w; the failure could not be recorded either (%v); bring the cluster back by hand:\n  %s", err, ferr, strings.Join(m.undo, "\n  "))
			}
			continue
		default:
			failures = 0
			after = res.RequeueAfter
		}
		if after <= 0 {
			after = m.f.Timeout
		}
		timer := time.NewTimer(after)
		select {
		case <-wake:
		case <-timer.C:
		case <-ctx.Done():
			ctx = context.Background()
			if !m.run.Failed() {
				if err := m.e.Fail(rctx, m.run, engine.Violation{Reason: kdcv1alpha1.ReasonRestoreCancelled,
					Detail: fmt.Sprintf("interrupted in %s (%v)", m.run.Phase(), context.Cause(rctx))}); err != nil {
					m.warnf("%v", err)
				}
			}
		}
		timer.Stop()
	}
}

// begin starts the engine's record of the prepared plan.
func (m *manualRun) begin() error {
	rec, err := engine.Begin(m.plan)
	if err != nil {
		return err
	}
	m.run = &engine.Restore{Cluster: m.c.DeepCopy(), Record: rec, Driver: m}
	return nil
}

// pass is one engine Run; it prints what the restore waits for when that changed.
func (m *manualRun) pass(ctx context.Context) (engine.Result, error) {
	res, err := m.e.Run(ctx, m.run)
	if err == nil && m.run.Outcome == nil && res.Waiting != "" && res.Waiting != m.lastWait {
		m.logf("  %s", res.Waiting)
	}
	m.lastWait = res.Waiting
	return res, err
}

// finish returns the outcome of the restore, printed.
func (m *manualRun) finish(o *engine.Outcome) error {
	if o.Succeeded {
		m.logf("%s in %s", o.Message, m.o.now().Sub(m.start).Round(100*time.Millisecond))
		return nil
	}
	m.logf("%s", o.Message)
	if len(o.NotReady) > 0 {
		return fmt.Errorf("%s\nbring the cluster back by hand once the cause is fixed:\n  %s", o.Message, strings.Join(m.undo, "\n  "))
	}
	return errors.New(o.Message)
}

// watchAll opens the watches of everything the restore acts on and returns a channel that
// wakes the loop on each event: C-cp and its namespace's pods, DS-etcd and its namespace's pods,
// the restore's Jobs in both namespaces.
func (m *manualRun) watchAll(ctx context.Context) (<-chan struct{}, error) {
	c := m.c
	jobs := client.MatchingLabels{kdcv1alpha1.LabelComponent: kdcv1alpha1.ComponentRestore}
	targets := []struct {
		list client.ObjectList
		opts []client.ListOption
	}{
		{&appsv1.DeploymentList{}, []client.ListOption{client.InNamespace(c.Namespace), client.MatchingFields{"metadata.name": kdcv1alpha1.ControlPlaneDeploymentName(c.Name)}}},
		{&appsv1.StatefulSetList{}, []client.ListOption{client.InNamespace(c.DataStoreNamespace()), client.MatchingFields{"metadata.name": kdcv1alpha1.EtcdStatefulSetName(c.DataStore())}}},
		{&corev1.PodList{}, []client.ListOption{client.InNamespace(c.Namespace)}},
		{&batchv1.JobList{}, []client.ListOption{client.InNamespace(c.Namespace), jobs}},
	}
	if ds := c.DataStoreNamespace(); ds != c.Namespace {
		targets = append(targets,
			struct {
				list client.ObjectList
				opts []client.ListOption
			}{&corev1.PodList{}, []client.ListOption{client.InNamespace(ds)}},
			struct {
				list client.ObjectList
				opts []client.ListOption
			}{&batchv1.JobList{}, []client.ListOption{client.InNamespace(ds), jobs}})
	}
	wake := make(chan struct{}, 1)
	notify := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	for _, t := range targets {
		w, err := m.cl.Watch(ctx, t.list.DeepCopyObject().(client.ObjectList), t.opts...)
		if err != nil {
			return nil, err
		}
		go m.pump(ctx, w, t.list, t.opts, notify)
	}
	return wake, nil
}

// pump turns the events of w into wake-ups, re-opening the watch when the API server ends it.
func (m *manualRun) pump(ctx context.Context, w watch.Interface, list client.ObjectList, opts []client.ListOption, notify func()) {
	for {
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				break
			}
			notify()
		}
		w.Stop()
		if ctx.Err() != nil {
			return
		}
		var err error
		if w, err = m.cl.Watch(ctx, list.DeepCopyObject().(client.ObjectList), opts...); err != nil {
			if ctx.Err() == nil {
				m.warnf("cannot watch %T: %v; progress is checked at each deadline only", list, err)
			}
			return
		}
		// Anything may have changed while no watch was open.
		notify()
	}
}

// Save keeps kv in memory (the KdcCluster's metadata is never written: its webhooks are down
// with the manager and fail closed) and prints how to undo each recorded scale-down.
func (m *manualRun) Save(_ context.Context, r *engine.Restore, kv map[string]string) error {
	for k, v := range kv {
		if v == "" {
			delete(r.Record, k)
		} else {
			r.Record[k] = v
		}
	}
	if v := kv[kdcv1alpha1.AnnotationRestoreControlPlaneReplicas]; v != "" {
		d := m.w.ControlPlane
		m.recorded("Deployment", d.Namespace, d.Name, "deployment", v)
	}
	if v := kv[kdcv1alpha1.AnnotationRestoreEtcdReplicas]; v != "" {
		sts := m.w.Etcd
		m.recorded("StatefulSet", sts.Namespace, sts.Name, "statefulset", v)
	}
	return nil
}

// recorded prints a recorded replica count with the command that brings it back; etcd's comes
// first in the undo list (it must be up before the control plane).
func (m *manualRun) recorded(kind, ns, name, resource, count string) {
	cmd := fmt.Sprintf("kubectl scale -n %s %s/%s --replicas=%s", ns, resource, name, count)
	if resource == "statefulset" {
		m.undo = append([]string{cmd}, m.undo...)
	} else {
		m.undo = append(m.undo, cmd)
	}
	m.logf("Recorded: %s %s/%s has %s replicas. To bring it back by hand:", kind, ns, name, count)
	fmt.Fprintf(m.o.Out, "%41s%s\n", "", cmd)
}

// SetReady writes RestoreReady (and, on success, latestRestoreKey/Time) like the controller,
// with an optimistic lock so BackupReady is never overwritten; a failure is only a warning: the
// cluster itself is what the restore is about.
func (m *manualRun) SetReady(ctx context.Context, r *engine.Restore, status metav1.ConditionStatus, reason, msg string, succeeded bool) error {
	if status == metav1.ConditionUnknown {
		msg += " (manual: kubectl kdc restore --manual)"
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		c := &kdcv1alpha1.KdcCluster{}
		if err := m.cl.Get(ctx, client.ObjectKeyFromObject(m.c), c); err != nil {
			return err
		}
		orig := c.DeepCopy()
		c.SetCondition(kdcv1alpha1.ConditionRestoreReady, status, reason, msg)
		if succeeded {
			c.Status.LatestRestoreKey = r.Key()
			c.Status.LatestRestoreTime = &metav1.Time{Time: r.Now()}
		}
		return m.cl.Status().Patch(ctx, c, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
	})
	if err != nil {
		m.warnf("could not record RestoreReady=%s on KdcCluster %s/%s: %v", status, m.c.Namespace, m.c.Name, err)
	}
	return nil
}

// Event prints a step; the final one is printed by finish.
func (m *manualRun) Event(r *engine.Restore, _, reason, message string) {
	if r.Outcome != nil && (reason == kdcv1alpha1.ReasonRestoreSucceeded || reason == kdcv1alpha1.ReasonRestoreFailed) {
		return
	}
	m.logf("%s", message)
}

// Note prints progress.
func (m *manualRun) Note(_ *engine.Restore, message string, _ ...any) { m.logf("%s", message) }

// Observe: the manual restore has no metrics.
func (m *manualRun) Observe(engine.Observation) {}
