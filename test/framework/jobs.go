package framework

import (
	"context"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// FinishJobPods plays the kubelet for suites without one: every pod of the Job that has not
// finished terminates with exitCode and the termination message msg (its only container). It
// returns how many pods it finished.
func FinishJobPods(ctx context.Context, c client.Client, job *batchv1.Job, exitCode int32, msg string) (int, error) {
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods, client.InNamespace(job.Namespace), client.MatchingLabels{batchv1.JobNameLabel: job.Name}); err != nil {
		return 0, fmt.Errorf("failed to list the pods of Job %s/%s: %w", job.Namespace, job.Name, err)
	}
	n := 0
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		now := metav1.NewTime(time.Now())
		phase, reason := corev1.PodSucceeded, "Completed"
		if exitCode != 0 {
			phase, reason = corev1.PodFailed, "Error"
		}
		p.Status.Phase = phase
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{
			Name: p.Spec.Containers[0].Name, Image: p.Spec.Containers[0].Image,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: exitCode, Reason: reason, Message: msg, StartedAt: now, FinishedAt: now,
			}},
		}}
		if err := c.Status().Update(ctx, p); err != nil {
			return n, fmt.Errorf("failed to finish pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		n++
	}
	return n, nil
}
