package plugin

import (
	"context"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/controller"
)

// The manual restore's side effects and waits. Every wait opens its watches first, then checks
// its condition, then checks again on every event, until the condition holds or --timeout
// passes: no polling, no fixed sleeps.

// watchTarget is one watch that wakes a wait: a list type and its selection.
type watchTarget struct {
	list client.ObjectList
	opts []client.ListOption
}

// byName watches the single object ns/name of list's type.
func byName(list client.ObjectList, ns, name string) watchTarget {
	return watchTarget{list: list, opts: []client.ListOption{client.InNamespace(ns), client.MatchingFields{"metadata.name": name}}}
}

// waitCheck reports whether the wait is over, and a short status while it is not.
type waitCheck func(ctx context.Context) (done bool, status string, err error)

// waitFor waits until check holds, re-checking on every event of targets; what says what did not
// happen when --timeout passes (the step fails with reason), like the controller's messages.
func (m *manualRun) waitFor(ctx context.Context, reason, what string, targets []watchTarget, check waitCheck) error {
	wctx, cancel := context.WithTimeout(ctx, m.f.Timeout)
	defer cancel()
	wake := make(chan struct{}, 1)
	failed := make(chan error, len(targets))
	for _, t := range targets {
		w, err := m.cl.Watch(wctx, t.list.DeepCopyObject().(client.ObjectList), t.opts...)
		if err != nil {
			return &stepError{reason, fmt.Sprintf("cannot watch while waiting (%s): %v", what, err)}
		}
		go m.pump(wctx, w, t, wake, failed)
	}
	last := ""
	for {
		done, status, err := check(wctx)
		switch {
		case err != nil && wctx.Err() == nil:
			return &stepError{reason, fmt.Sprintf("%s: %v", what, err)}
		case err == nil && done:
			return nil
		case err == nil && status != "" && status != last:
			m.logf("  %s", status)
			last = status
		}
		select {
		case <-wake:
		case err := <-failed:
			return &stepError{reason, fmt.Sprintf("cannot watch while waiting (%s): %v", what, err)}
		case <-wctx.Done():
			if ctx.Err() != nil {
				return &stepError{reason, fmt.Sprintf("%s: %v", what, context.Cause(ctx))}
			}
			if last != "" {
				return &stepError{reason, fmt.Sprintf("%s within %s (%s)", what, m.f.Timeout, last)}
			}
			return &stepError{reason, fmt.Sprintf("%s within %s", what, m.f.Timeout)}
		}
	}
}

// pump turns the events of w into wake-ups, re-opening the watch when the API server ends it.
func (m *manualRun) pump(ctx context.Context, w watch.Interface, t watchTarget, wake chan<- struct{}, failed chan<- error) {
	notify := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
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
		if w, err = m.cl.Watch(ctx, t.list.DeepCopyObject().(client.ObjectList), t.opts...); err != nil {
			if ctx.Err() == nil {
				failed <- err
			}
			return
		}
		// Anything may have changed while no watch was open.
		notify()
	}
}

// scaleDeployment sets C-cp's replicas and, with restartedAt, its pod template's restarted-at
// annotation (a rollout: fresh pods), like the controller. It patches only what differs.
func (m *manualRun) scaleDeployment(ctx context.Context, replicas int32, restartedAt string) error {
	d := &appsv1.Deployment{}
	if err := m.cl.Get(ctx, client.ObjectKeyFromObject(m.deploy), d); err != nil {
		return fmt.Errorf("failed to get Deployment %s/%s: %w", m.deploy.Namespace, m.deploy.Name, err)
	}
	m.deploy = d
	if controller.Replicas(d.Spec.Replicas) == replicas && (restartedAt == "" || d.Spec.Template.Annotations[kdcv1alpha1.AnnotationRestartedAt] == restartedAt) {
		return nil
	}
	orig := d.DeepCopy()
	d.Spec.Replicas = &replicas
	note := ""
	if restartedAt != "" {
		if d.Spec.Template.Annotations == nil {
			d.Spec.Template.Annotations = map[string]string{}
		}
		d.Spec.Template.Annotations[kdcv1alpha1.AnnotationRestartedAt] = restartedAt
		note = " (fresh pods: " + kdcv1alpha1.AnnotationRestartedAt + "=" + restartedAt + ")"
	}
	if err := m.cl.Patch(ctx, d, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("failed to scale Deployment %s/%s to %d: %w", d.Namespace, d.Name, replicas, err)
	}
	m.logf("Scaled Deployment %s/%s to %d%s", d.Namespace, d.Name, replicas, note)
	return nil
}

// scaleStatefulSet sets DS-etcd's replicas when they differ.
func (m *manualRun) scaleStatefulSet(ctx context.Context, replicas int32) error {
	sts := &appsv1.StatefulSet{}
	if err := m.cl.Get(ctx, client.ObjectKeyFromObject(m.sts), sts); err != nil {
		return fmt.Errorf("failed to get StatefulSet %s/%s: %w", m.sts.Namespace, m.sts.Name, err)
	}
	m.sts = sts
	if controller.Replicas(sts.Spec.Replicas) == replicas {
		return nil
	}
	orig := sts.DeepCopy()
	sts.Spec.Replicas = &replicas
	if err := m.cl.Patch(ctx, sts, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("failed to scale StatefulSet %s/%s to %d: %w", sts.Namespace, sts.Name, replicas, err)
	}
	m.logf("Scaled StatefulSet %s/%s to %d", sts.Namespace, sts.Name, replicas)
	return nil
}

// waitDrained waits until C-cp observed its scale-down to 0 and none of its pods exists,
// terminating ones included (a terminating API server could still write to etcd).
func (m *manualRun) waitDrained(ctx context.Context, reason string) error {
	d := m.deploy
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return &stepError{reason, fmt.Sprintf("Deployment %s/%s has an invalid selector: %v", d.Namespace, d.Name, err)}
	}
	targets := []watchTarget{
		byName(&appsv1.DeploymentList{}, d.Namespace, d.Name),
		{list: &corev1.PodList{}, opts: []client.ListOption{client.InNamespace(d.Namespace), client.MatchingLabelsSelector{Selector: sel}}},
	}
	return m.waitFor(ctx, reason, fmt.Sprintf("Deployment %s/%s did not scale to 0", d.Namespace, d.Name), targets,
		func(ctx context.Context) (bool, string, error) {
			got := &appsv1.Deployment{}
			if err := m.cl.Get(ctx, client.ObjectKeyFromObject(d), got); err != nil {
				return false, "", err
			}
			pods := &corev1.PodList{}
			if err := m.cl.List(ctx, pods, client.InNamespace(d.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
				return false, "", err
			}
			if len(pods.Items) > 0 {
				return false, fmt.Sprintf("waiting for %d control-plane pod(s) to go: %s", len(pods.Items), podNames(pods.Items)), nil
			}
			if got.Status.ObservedGeneration < got.Generation || got.Status.Replicas != 0 {
				return false, fmt.Sprintf("waiting for Deployment %s/%s to report 0 replicas", d.Namespace, d.Name), nil
			}
			return true, "", nil
		})
}

// waitEtcdStopped waits until pod DS-etcd-0 is gone and DS-etcd reports 0 replicas.
func (m *manualRun) waitEtcdStopped(ctx context.Context, reason string) error {
	sts := m.sts
	pod := client.ObjectKey{Namespace: sts.Namespace, Name: kdcv1alpha1.EtcdPodName(m.c.DataStore())}
	targets := []watchTarget{byName(&appsv1.StatefulSetList{}, sts.Namespace, sts.Name), byName(&corev1.PodList{}, pod.Namespace, pod.Name)}
	return m.waitFor(ctx, reason, fmt.Sprintf("pod %s/%s did not go away", pod.Namespace, pod.Name), targets,
		func(ctx context.Context) (bool, string, error) {
			err := m.cl.Get(ctx, pod, &corev1.Pod{})
			if err == nil {
				return false, fmt.Sprintf("waiting for pod %s/%s to go", pod.Namespace, pod.Name), nil
			}
			if !apierrors.IsNotFound(err) {
				return false, "", err
			}
			got := &appsv1.StatefulSet{}
			if err := m.cl.Get(ctx, client.ObjectKeyFromObject(sts), got); err != nil {
				return false, "", err
			}
			if got.Status.ObservedGeneration < got.Generation || got.Status.Replicas != 0 {
				return false, fmt.Sprintf("waiting for StatefulSet %s/%s to report 0 replicas", sts.Namespace, sts.Name), nil
			}
			return true, "", nil
		})
}

// waitStatefulSetReady waits until DS-etcd runs its recorded replicas, ready.
func (m *manualRun) waitStatefulSetReady(ctx context.Context, reason, note string) error {
	sts := m.sts
	what := fmt.Sprintf("StatefulSet %s/%s did not become ready", sts.Namespace, sts.Name)
	if note != "" {
		what += " " + note
	}
	return m.waitFor(ctx, reason, what, []watchTarget{byName(&appsv1.StatefulSetList{}, sts.Namespace, sts.Name)},
		func(ctx context.Context) (bool, string, error) {
			got := &appsv1.StatefulSet{}
			if err := m.cl.Get(ctx, client.ObjectKeyFromObject(sts), got); err != nil {
				return false, "", err
			}
			if controller.StatefulSetReady(got, m.etcdReplicas) {
				return true, "", nil
			}
			return false, fmt.Sprintf("etcd: %d/%d ready", got.Status.ReadyReplicas, m.etcdReplicas), nil
		})
}

// waitDeploymentReady waits until C-cp completed its rollout at its recorded replicas.
func (m *manualRun) waitDeploymentReady(ctx context.Context, reason string) error {
	d := m.deploy
	return m.waitFor(ctx, reason, fmt.Sprintf("Deployment %s/%s did not become ready", d.Namespace, d.Name),
		[]watchTarget{byName(&appsv1.DeploymentList{}, d.Namespace, d.Name)},
		func(ctx context.Context) (bool, string, error) {
			got := &appsv1.Deployment{}
			if err := m.cl.Get(ctx, client.ObjectKeyFromObject(d), got); err != nil {
				return false, "", err
			}
			if controller.DeploymentReady(got, m.cpReplicas) {
				return true, "", nil
			}
			st := got.Status
			return false, fmt.Sprintf("control plane: %d updated, %d ready, %d available of %d", st.UpdatedReplicas, st.ReadyReplicas, st.AvailableReplicas, m.cpReplicas), nil
		})
}

// runJob creates Job want (after deleting a Job of the same name left from an earlier restore)
// and waits for its outcome, decided like the controller decides it. A failed Job is a
// *stepError with reason and the Job's failure detail.
func (m *manualRun) runJob(ctx context.Context, want *batchv1.Job, reason string) (*batchv1.Job, controller.JobOutcome, error) {
	ref := want.Namespace + "/" + want.Name
	got := &batchv1.Job{}
	err := m.cl.Get(ctx, client.ObjectKeyFromObject(want), got)
	switch {
	case err == nil:
		// A verify Job only reads S3; a restore or rollback Job's pod must be gone before
		// another one may touch the data volume.
		policy := metav1.DeletePropagationForeground
		if want.Name == kdcv1alpha1.VerifyJobName(m.c.Name) {
			policy = metav1.DeletePropagationBackground
		}
		m.logf("Deleting Job %s left over from an earlier restore", ref)
		if err := m.deleteJobAndWait(ctx, got, policy); err != nil {
			return nil, controller.JobPending, &stepError{reason, err.Error()}
		}
	case !apierrors.IsNotFound(err):
		return nil, controller.JobPending, &stepError{reason, fmt.Sprintf("failed to get Job %s: %v", ref, err)}
	}
	if err := m.cl.Create(ctx, want); err != nil {
		return nil, controller.JobPending, &stepError{reason, fmt.Sprintf("failed to create Job %s: %v", ref, err)}
	}
	m.logf("Created Job %s", ref)
	outcome := controller.JobPending
	var pods []corev1.Pod
	job := want
	targets := []watchTarget{
		byName(&batchv1.JobList{}, want.Namespace, want.Name),
		{list: &corev1.PodList{}, opts: []client.ListOption{client.InNamespace(want.Namespace), client.MatchingLabels{batchv1.ControllerUidLabel: string(want.UID)}}},
	}
	err = m.waitFor(ctx, reason, fmt.Sprintf("Job %s did not finish", ref), targets, func(ctx context.Context) (bool, string, error) {
		var err error
		outcome, job, pods, err = m.jobOutcome(ctx, want)
		if err != nil {
			return false, "", err
		}
		return outcome != controller.JobPending, "Job " + ref + ": " + podPhases(pods), nil
	})
	if err != nil {
		return want, controller.JobPending, err
	}
	if outcome == controller.JobFailed {
		return job, outcome, &stepError{reason, controller.RestoreJobFailureDetail(job, pods)}
	}
	m.logf("Job %s succeeded", ref)
	return job, outcome, nil
}

// jobOutcome reads Job job (this very Job: same UID) and its pods, and decides it.
func (m *manualRun) jobOutcome(ctx context.Context, job *batchv1.Job) (controller.JobOutcome, *batchv1.Job, []corev1.Pod, error) {
	got := &batchv1.Job{}
	err := m.cl.Get(ctx, client.ObjectKeyFromObject(job), got)
	if apierrors.IsNotFound(err) || (err == nil && got.UID != job.UID) {
		return controller.JobPending, job, nil, fmt.Errorf("the Job was deleted before it reported")
	}
	if err != nil {
		return controller.JobPending, job, nil, err
	}
	pods := &corev1.PodList{}
	if err := m.cl.List(ctx, pods, client.InNamespace(got.Namespace), client.MatchingLabels{batchv1.ControllerUidLabel: string(got.UID)}); err != nil {
		return controller.JobPending, got, nil, err
	}
	return controller.RestoreJobOutcome(got, pods.Items), got, pods.Items, nil
}

// deleteJobAndWait deletes this very Job (UID precondition) and waits until it is gone.
func (m *manualRun) deleteJobAndWait(ctx context.Context, job *batchv1.Job, policy metav1.DeletionPropagation) error {
	ref := job.Namespace + "/" + job.Name
	opts := []client.DeleteOption{client.PropagationPolicy(policy)}
	if job.UID != "" {
		opts = append(opts, client.Preconditions{UID: &job.UID})
	}
	if err := m.cl.Delete(ctx, job, opts...); client.IgnoreNotFound(err) != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("failed to delete Job %s: %w", ref, err)
	}
	return m.waitFor(ctx, "", fmt.Sprintf("Job %s was not deleted", ref), []watchTarget{byName(&batchv1.JobList{}, job.Namespace, job.Name)},
		func(ctx context.Context) (bool, string, error) {
			got := &batchv1.Job{}
			err := m.cl.Get(ctx, client.ObjectKeyFromObject(job), got)
			if apierrors.IsNotFound(err) || (err == nil && job.UID != "" && got.UID != job.UID) {
				return true, "", nil
			}
			return false, "waiting for Job " + ref + " and its pods to be deleted", client.IgnoreNotFound(err)
		})
}

// podNames lists the names of pods, sorted.
func podNames(pods []corev1.Pod) string {
	names := make([]string, 0, len(pods))
	for _, p := range pods {
		names = append(names, p.Name)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// podPhases summarises the phases of a Job's pods ("no pod yet", "1 Running", ...).
func podPhases(pods []corev1.Pod) string {
	if len(pods) == 0 {
		return "no pod yet"
	}
	count := map[string]int{}
	for _, p := range pods {
		ph := string(p.Status.Phase)
		if ph == "" {
			ph = string(corev1.PodPending)
		}
		count[ph]++
	}
	var parts []string
	for ph, n := range count {
		parts = append(parts, fmt.Sprintf("%d %s", n, ph))
	}
	sort.Strings(parts)
	return "pods " + strings.Join(parts, ", ")
}
