package engine

import (
	"context"
	"testing"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	et "kube-dc.com/etcd-backup/engine/enginetest"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestRestoreJobPodOutcome checks when a Job's pods decide it before kube-controller-manager sets
// its condition: only this Job's clean terminal pods, and a failure only when the Job's
// podFailurePolicy / backoffLimit make it final.
func TestRestoreJobPodOutcome(t *testing.T) {
	c := et.Cluster(et.NS, et.ClusterName, et.DS, nil)
	job := func(kind JobKind) *batchv1.Job {
		j := BuildJob(kind, c, testPlan(), testAttempt)
		j.UID = types.UID("uid-" + j.Name)
		return j
	}
	verify, restore := job(JobVerify), job(JobRestore)
	if *verify.Spec.BackoffLimit == 0 || *restore.Spec.BackoffLimit != 0 {
		t.Fatalf("backoffLimit verify %d, restore %d: the cases below assume verify retries and restore does not",
			*verify.Spec.BackoffLimit, *restore.Spec.BackoffLimit)
	}
	type podOpt func(p *corev1.Pod)
	pod := func(j *batchv1.Job, phase corev1.PodPhase, code int32, opts ...podOpt) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: j.Namespace, Name: j.Name + "-x",
			Labels:          map[string]string{batchv1.ControllerUidLabel: string(j.UID)},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(j, batchv1.SchemeGroupVersion.WithKind("Job"))}},
			Status: corev1.PodStatus{Phase: phase}}
		if code >= 0 {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: ContainerName,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}}}
		}
		for _, o := range opts {
			o(&p)
		}
		return p
	}
	deleting := func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: et.Start} }
	evicted := func(p *corev1.Pod) { p.Status.Reason = "Evicted" }
	disrupted := func(p *corev1.Pod) {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue}}
	}
	ownedBy := func(uid types.UID) podOpt {
		return func(p *corev1.Pod) {
			p.OwnerReferences[0].UID = uid
			p.Labels[batchv1.ControllerUidLabel] = string(uid)
		}
	}
	otherLabel := func(p *corev1.Pod) { p.Labels[batchv1.ControllerUidLabel] = "uid-other" }
	const retriable = 7 // not in restoreNonRetryableExitCodes
	cases := []struct {
		name string
		job  *batchv1.Job
		pods []corev1.Pod
		want JobOutcome
	}{
		{"no pod", restore, nil, JobPending},
		{"running", restore, []corev1.Pod{pod(restore, corev1.PodRunning, -1)}, JobPending},
		{"succeeded", restore, []corev1.Pod{pod(restore, corev1.PodSucceeded, 0)}, JobSucceeded},
		{"succeeded, verify", verify, []corev1.Pod{pod(verify, corev1.PodSucceeded, 0)}, JobSucceeded},
		{"succeeded without a container status", restore, []corev1.Pod{pod(restore, corev1.PodSucceeded, -1)}, JobPending},
		{"succeeded pod of an earlier Job of the same name", restore,
			[]corev1.Pod{pod(restore, corev1.PodSucceeded, 0, ownedBy("uid-earlier"))}, JobPending},
		{"succeeded pod labelled for another Job", restore, []corev1.Pod{pod(restore, corev1.PodSucceeded, 0, otherLabel)}, JobPending},
		{"succeeded but being deleted", restore, []corev1.Pod{pod(restore, corev1.PodSucceeded, 0, deleting)}, JobPending},
		{"failed, backoffLimit 0", restore, []corev1.Pod{pod(restore, corev1.PodFailed, retriable)}, JobFailed},
		{"failed, non-retryable exit code", restore, []corev1.Pod{pod(restore, corev1.PodFailed, 9)}, JobFailed},
		{"failed without an exit code", restore, []corev1.Pod{pod(restore, corev1.PodFailed, -1)}, JobPending},
		{"failed but being deleted", restore, []corev1.Pod{pod(restore, corev1.PodFailed, 9, deleting)}, JobPending},
		{"evicted", restore, []corev1.Pod{pod(restore, corev1.PodFailed, 137, evicted)}, JobPending},
		{"disrupted", restore, []corev1.Pod{pod(restore, corev1.PodFailed, 137, disrupted)}, JobPending},
		{"failed pod of an earlier Job of the same name", restore,
			[]corev1.Pod{pod(restore, corev1.PodFailed, 9, ownedBy("uid-earlier"))}, JobPending},
		{"verify: non-retryable exit code (podFailurePolicy FailJob)", verify,
			[]corev1.Pod{pod(verify, corev1.PodFailed, 9)}, JobFailed},
		{"verify: retriable exit code, the Job retries", verify,
			[]corev1.Pod{pod(verify, corev1.PodFailed, retriable)}, JobPending},
		{"verify: retriable exit codes up to backoffLimit", verify,
			[]corev1.Pod{pod(verify, corev1.PodFailed, retriable), pod(verify, corev1.PodFailed, retriable)}, JobPending},
		{"verify: retriable exit codes beyond backoffLimit: its condition decides", verify,
			[]corev1.Pod{pod(verify, corev1.PodFailed, retriable), pod(verify, corev1.PodFailed, retriable), pod(verify, corev1.PodFailed, retriable)},
			JobPending},
		{"verify: beyond backoffLimit by disruptions only", verify,
			[]corev1.Pod{pod(verify, corev1.PodFailed, 137, evicted), pod(verify, corev1.PodFailed, 137, evicted), pod(verify, corev1.PodFailed, 137, disrupted)},
			JobPending},
		{"verify: succeeded after a retry", verify,
			[]corev1.Pod{pod(verify, corev1.PodFailed, retriable), pod(verify, corev1.PodSucceeded, 0)}, JobSucceeded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := podOutcome(tc.job, tc.pods); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRestoreJobConditionWins checks jobOutcome against a client: the Job's condition,
// once set, decides whatever its pods say; without it a clean terminal pod decides, but not for
// a Job being deleted.
func TestRestoreJobConditionWins(t *testing.T) {
	c := et.Cluster(et.NS, et.ClusterName, et.DS, nil)
	job := BuildJob(JobRestore, c, testPlan(), testAttempt)
	job.UID = "uid-restore"
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: job.Namespace, Name: job.Name + "-x",
		Labels:          map[string]string{batchv1.ControllerUidLabel: string(job.UID)},
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))}},
		Status: corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{{Name: ContainerName,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}}}}}
	e := &Engine{Live: fake.NewClientBuilder().WithScheme(et.Scheme(t)).WithObjects(pod).WithStatusSubresource(pod).Build()}
	r := &Restore{log: logr.Discard()}
	ctx := context.Background()
	if got := e.jobOutcome(ctx, r, job.DeepCopy()); got != JobSucceeded {
		t.Errorf("no condition, pod Succeeded: got %v, want succeeded", got)
	}
	failed := job.DeepCopy()
	failed.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue}}
	if got := e.jobOutcome(ctx, r, failed); got != JobFailed {
		t.Errorf("condition Failed, pod Succeeded: got %v, want failed", got)
	}
	deleting := job.DeepCopy()
	deleting.DeletionTimestamp = &metav1.Time{Time: et.Start}
	if got := e.jobOutcome(ctx, r, deleting); got != JobPending {
		t.Errorf("Job being deleted, pod Succeeded: got %v, want pending", got)
	}
	other := job.DeepCopy()
	other.UID = "uid-restore-2"
	if got := e.jobOutcome(ctx, r, other); got != JobPending {
		t.Errorf("a new Job of the same name, the earlier one's pod Succeeded: got %v, want pending", got)
	}
}
