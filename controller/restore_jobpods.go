package controller

import (
	"context"
	"fmt"
	"slices"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// The outcome of the restore's Jobs is read from their pods as soon as a pod is terminal, not
// only from the Job's Complete/Failed condition: kube-controller-manager's Job controller batches
// pod updates (about 1 s) before it sets the condition, which cost ~1 s per Job (verify, restore)
// on every restore. The condition stays the fallback, and is still what every pod-less case
// (Job deleted, pods garbage-collected, a failure the pods cannot prove final) waits for.

// newRestoreJobPodCache is a cache of the full pods of the restore's Jobs only (label
// app.kubernetes.io/component=etcd-restore, every namespace): the manager's own pod watch is
// metadata-only, which carries no phase or exit code.
func newRestoreJobPodCache(mgr manager.Manager) (cache.Cache, error) {
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		HTTPClient:       mgr.GetHTTPClient(),
		Scheme:           mgr.GetScheme(),
		Mapper:           mgr.GetRESTMapper(),
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{&corev1.Pod{}: {
			Label: labels.SelectorFromSet(labels.Set{kdcv1alpha1.LabelComponent: kdcv1alpha1.ComponentRestore}),
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("failed to create the restore Job pod cache: %w", err)
	}
	return c, nil
}

// restoreJobPodFinished passes the pod events that can decide a Job: a pod seen terminal (also
// the initial list after a restart) or becoming terminal.
func restoreJobPodFinished() predicate.TypedFuncs[*corev1.Pod] {
	terminal := func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	}
	return predicate.TypedFuncs[*corev1.Pod]{
		CreateFunc: func(e event.TypedCreateEvent[*corev1.Pod]) bool { return terminal(e.Object) },
		UpdateFunc: func(e event.TypedUpdateEvent[*corev1.Pod]) bool {
			return terminal(e.ObjectNew) && !terminal(e.ObjectOld)
		},
		DeleteFunc: func(event.TypedDeleteEvent[*corev1.Pod]) bool { return false },
	}
}

// restoreJobState reports where a Job of this restore stands: its Complete/Failed condition
// when kube-controller-manager has set it, else what its pods already decided
// (restoreJobPodOutcome). A pod read error only means waiting for the condition.
func (r *RestoreReconciler) restoreJobState(ctx context.Context, s *restoreScope, job *batchv1.Job) restoreJobState {
	if state, decided := restoreJobConditionState(job); decided {
		return state
	}
	reader := r.JobPods
	if reader == nil {
		reader = r.Client
	}
	var pods corev1.PodList
	if err := reader.List(ctx, &pods, client.InNamespace(job.Namespace),
		client.MatchingLabels{batchv1.ControllerUidLabel: string(job.UID)}); err != nil {
		s.log.V(1).Info("Cannot read the Job's pods; waiting for its condition", "job", klog.KObj(job), "error", err.Error())
		return restoreJobPending
	}
	state := restoreJobPodOutcome(job, pods.Items)
	if state != restoreJobPending {
		s.log.V(1).Info("Job decided by its pod before its condition", "job", klog.KObj(job), "succeeded", state == restoreJobSucceeded)
	}
	return state
}

// restoreJobConditionState is what a Job's own state decides without its pods: its
// Complete/Failed condition, or pending for a Job not created yet or being deleted (whose pods
// decide nothing). decided is false when the pods have to be asked (restoreJobPodOutcome).
func restoreJobConditionState(job *batchv1.Job) (state restoreJobState, decided bool) {
	switch {
	case restoreJobCondition(job, batchv1.JobComplete) != nil:
		return restoreJobSucceeded, true
	case restoreJobCondition(job, batchv1.JobFailed) != nil:
		return restoreJobFailedState, true
	case job.UID == "" || !job.DeletionTimestamp.IsZero():
		return restoreJobPending, true
	}
	return restoreJobPending, false
}

// restoreJobPodOutcome decides a Job from its pods, exactly when kube-controller-manager's Job
// controller will decide it the same way:
//
//   - only pods controlled by this Job (owner UID, and the controller-uid label when set) count:
//     never a pod of an earlier Job of the same name (the Job itself is this attempt's);
//   - a pod being deleted, evicted or otherwise disrupted (DisruptionTarget) decides nothing;
//   - failed: a pod Failed with the restore container terminated non-zero, and the failure is
//     final for the Job: its podFailurePolicy says FailJob for it, or the failed pods the policy
//     counts exceed backoffLimit (restore and rollback: 0; verify retries, see
//     restoreVerifyBackoffLimit, so only its non-retryable exit codes or its last retry);
//   - succeeded: as many pods Succeeded with the container's exit code 0 as the Job's completions.
//
// Anything else is pending: the Job's condition decides.
func restoreJobPodOutcome(job *batchv1.Job, pods []corev1.Pod) restoreJobState {
	backoff := int32(6)
	if job.Spec.BackoffLimit != nil {
		backoff = *job.Spec.BackoffLimit
	}
	completions := int32(1)
	if job.Spec.Completions != nil {
		completions = *job.Spec.Completions
	}
	var seenFailed, succeeded int32
	// cleanFailure: a counted failure that is not a deletion or disruption (the limit is never
	// judged on those alone); finalFailure: one the podFailurePolicy fails the Job for.
	cleanFailure, finalFailure := false, false
	for i := range pods {
		p := &pods[i]
		if !metav1.IsControlledBy(p, job) {
			continue
		}
		if uid, ok := p.Labels[batchv1.ControllerUidLabel]; ok && uid != string(job.UID) {
			continue
		}
		switch p.Status.Phase {
		case corev1.PodFailed:
			action := restorePodFailureAction(job.Spec.PodFailurePolicy, &p.Status)
			if action == batchv1.PodFailurePolicyActionIgnore {
				continue
			}
			// Counted by the Job controller whatever it was; decisive only when clean.
			seenFailed++
			if !restorePodDecisive(p) || restoreContainerExitCode(p) <= 0 {
				continue
			}
			cleanFailure = true
			if action == batchv1.PodFailurePolicyActionFailJob {
				finalFailure = true
			}
		case corev1.PodSucceeded:
			if restorePodDecisive(p) && restoreContainerExitCode(p) == 0 {
				succeeded++
			}
		}
	}
	// Both are lower bounds of the failures the Job controller counts.
	failed := max(seenFailed, job.Status.Failed)
	switch {
	case finalFailure:
		return restoreJobFailedState
	case failed > backoff && cleanFailure:
		return restoreJobFailedState
	case succeeded >= completions && failed <= backoff:
		return restoreJobSucceeded
	}
	return restoreJobPending
}

// restorePodDecisive reports whether a terminal pod may decide its Job: not being deleted, not
// evicted, not marked as disrupted.
func restorePodDecisive(p *corev1.Pod) bool {
	if !p.DeletionTimestamp.IsZero() || p.Status.Reason == "Evicted" {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
			return false
		}
	}
	return true
}

// restoreContainerExitCode is the exit code of the pod's restore container, -1 when it has not
// terminated.
func restoreContainerExitCode(p *corev1.Pod) int32 {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == restoreContainerName && cs.State.Terminated != nil {
			return cs.State.Terminated.ExitCode
		}
	}
	return -1
}

// restorePodFailureAction is what the Job's podFailurePolicy does with a failed pod, as the Job
// controller evaluates it: the first rule whose onExitCodes (non-zero exit codes of the named
// container, or any) or onPodConditions match; Count when none does.
func restorePodFailureAction(policy *batchv1.PodFailurePolicy, st *corev1.PodStatus) batchv1.PodFailurePolicyAction {
	if policy == nil {
		return batchv1.PodFailurePolicyActionCount
	}
	for _, rule := range policy.Rules {
		matched := false
		if req := rule.OnExitCodes; req != nil {
			for _, cs := range slices.Concat(st.InitContainerStatuses, st.ContainerStatuses) {
				t := cs.State.Terminated
				if t == nil || t.ExitCode == 0 || (req.ContainerName != nil && *req.ContainerName != cs.Name) {
					continue
				}
				in := slices.Contains(req.Values, t.ExitCode)
				if (req.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn) == in {
					matched = true
					break
				}
			}
		} else {
			for _, pat := range rule.OnPodConditions {
				for _, c := range st.Conditions {
					if c.Type == pat.Type && c.Status == pat.Status {
						matched = true
					}
				}
			}
		}
		if matched {
			return rule.Action
		}
	}
	return batchv1.PodFailurePolicyActionCount
}
