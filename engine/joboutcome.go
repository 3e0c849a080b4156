package engine

import (
	"context"
	"slices"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// A Job's outcome is read from its terminal pod, not only from its Complete/Failed condition,
// which kube-controller-manager sets only after batching pod updates (docs/restore.md, "When a
// Job is done"); the condition stays the fallback for every pod-less case.

// JobOutcome is where a verify, restore or rollback Job stands.
type JobOutcome int

const (
	// JobPending: being created, replaced, or still running; wait for its watch event.
	JobPending JobOutcome = iota
	// JobSucceeded: the Job completed.
	JobSucceeded
	// JobFailed: the Job failed for good.
	JobFailed
)

func (o JobOutcome) String() string {
	switch o {
	case JobSucceeded:
		return "Succeeded"
	case JobFailed:
		return "Failed"
	}
	return "Pending"
}

// jobOutcome reports where a Job of this restore stands: its Complete/Failed condition when
// kube-controller-manager has set it, else what its pods already decided (podOutcome). A pod
// read error only means waiting for the condition.
func (e *Engine) jobOutcome(ctx context.Context, r *Restore, job *batchv1.Job) JobOutcome {
	if state, decided := conditionOutcome(job); decided {
		return state
	}
	reader := e.JobPods
	if reader == nil {
		reader = e.Live
	}
	var pods corev1.PodList
	if err := reader.List(ctx, &pods, client.InNamespace(job.Namespace),
		client.MatchingLabels{batchv1.ControllerUidLabel: string(job.UID)}); err != nil {
		r.log.V(1).Info("Cannot read the Job's pods; waiting for its condition", "job", klog.KObj(job), "error", err.Error())
		return JobPending
	}
	state := podOutcome(job, pods.Items)
	if state != JobPending {
		r.log.V(1).Info("Job decided by its pod before its condition", "job", klog.KObj(job), "succeeded", state == JobSucceeded)
	}
	return state
}

// conditionOutcome is what a Job's own state decides without its pods: its
// Complete/Failed condition, or pending for a Job not created yet or being deleted (whose pods
// decide nothing). decided is false when the pods have to be asked (podOutcome).
func conditionOutcome(job *batchv1.Job) (state JobOutcome, decided bool) {
	switch {
	case jobCondition(job, batchv1.JobComplete) != nil:
		return JobSucceeded, true
	case jobCondition(job, batchv1.JobFailed) != nil:
		return JobFailed, true
	case job.UID == "" || !job.DeletionTimestamp.IsZero():
		return JobPending, true
	}
	return JobPending, false
}

// podOutcome decides a Job from its pods where kube-controller-manager's Job controller is
// bound to decide it the same way, without counting the retries of a Job that retries:
//
//   - only pods controlled by this Job (owner UID, and the controller-uid label when set) count:
//     never a pod of an earlier Job of the same name (the Job itself is this attempt's);
//   - a pod being deleted, evicted or otherwise disrupted (DisruptionTarget) decides nothing;
//   - failed: a pod Failed with the restore container terminated non-zero, and the failure is
//     final: its podFailurePolicy says FailJob, or the Job does not retry (backoffLimit 0: the
//     restore and rollback Jobs). A retriable failure of a Job that retries (verify) is left to
//     the Job's condition;
//   - succeeded: as many pods Succeeded with the container's exit code 0 as the Job's completions.
//
// Anything else is pending: the Job's condition decides.
func podOutcome(job *batchv1.Job, pods []corev1.Pod) JobOutcome {
	retries := job.Spec.BackoffLimit == nil || *job.Spec.BackoffLimit > 0
	completions := int32(1)
	if job.Spec.Completions != nil {
		completions = *job.Spec.Completions
	}
	var succeeded int32
	final := false
	for i := range pods {
		p := &pods[i]
		if !metav1.IsControlledBy(p, job) || !podDecisive(p) {
			continue
		}
		if uid, ok := p.Labels[batchv1.ControllerUidLabel]; ok && uid != string(job.UID) {
			continue
		}
		switch code := containerExitCode(p); {
		case p.Status.Phase == corev1.PodFailed && code > 0:
			action := podFailureAction(job.Spec.PodFailurePolicy, &p.Status)
			final = final || action == batchv1.PodFailurePolicyActionFailJob || (action == batchv1.PodFailurePolicyActionCount && !retries)
		case p.Status.Phase == corev1.PodSucceeded && code == 0:
			succeeded++
		}
	}
	switch {
	case final:
		return JobFailed
	case succeeded >= completions:
		return JobSucceeded
	}
	return JobPending
}

// podDecisive reports whether a terminal pod may decide its Job: not being deleted, not
// evicted, not marked as disrupted.
func podDecisive(p *corev1.Pod) bool {
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

// containerExitCode is the exit code of the pod's restore container, -1 when it has not
// terminated.
func containerExitCode(p *corev1.Pod) int32 {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == ContainerName && cs.State.Terminated != nil {
			return cs.State.Terminated.ExitCode
		}
	}
	return -1
}

// podFailureAction is what the Job's podFailurePolicy does with a failed pod, as the Job
// controller evaluates it: the first rule whose onExitCodes (non-zero exit codes of the named
// container, or any) or onPodConditions match; Count when none does.
func podFailureAction(policy *batchv1.PodFailurePolicy, st *corev1.PodStatus) batchv1.PodFailurePolicyAction {
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
