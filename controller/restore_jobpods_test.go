package controller

import (
	"strings"
	"testing"

	"github.com/go-logr/logr"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// TestRestoreJobPodOutcome checks when a Job's pods decide it before kube-controller-manager sets
// its condition: only this Job's clean terminal pods, and a failure only when the Job's
// podFailurePolicy / backoffLimit make it final.
func TestRestoreJobPodOutcome(t *testing.T) {
	c := testCluster(tNS, tCluster, tDS, nil)
	job := func(kind restoreJobKind) *batchv1.Job {
		j := buildRestoreJob(kind, c, testJobInputs())
		j.UID = types.UID("uid-" + j.Name)
		return j
	}
	verify, restore := job(restoreJobVerify), job(restoreJobRestore)
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
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: restoreContainerName,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}}}
		}
		for _, o := range opts {
			o(&p)
		}
		return p
	}
	deleting := func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: tStart} }
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
		want restoreJobState
	}{
		{"no pod", restore, nil, restoreJobPending},
		{"running", restore, []corev1.Pod{pod(restore, corev1.PodRunning, -1)}, restoreJobPending},
		{"succeeded", restore, []corev1.Pod{pod(restore, corev1.PodSucceeded, 0)}, restoreJobSucceeded},
		{"succeeded, verify", verify, []corev1.Pod{pod(verify, corev1.PodSucceeded, 0)}, restoreJobSucceeded},
		{"succeeded without a container status", restore, []corev1.Pod{pod(restore, corev1.PodSucceeded, -1)}, restoreJobPending},
		{"succeeded pod of an earlier Job of the same name", restore,
			[]corev1.Pod{pod(restore, corev1.PodSucceeded, 0, ownedBy("uid-earlier"))}, restoreJobPending},
		{"succeeded pod labelled for another Job", restore, []corev1.Pod{pod(restore, corev1.PodSucceeded, 0, otherLabel)}, restoreJobPending},
		{"succeeded but being deleted", restore, []corev1.Pod{pod(restore, corev1.PodSucceeded, 0, deleting)}, restoreJobPending},
		{"failed, backoffLimit 0", restore, []corev1.Pod{pod(restore, corev1.PodFailed, retriable)}, restoreJobFailedState},
		{"failed, non-retryable exit code", restore, []corev1.Pod{pod(restore, corev1.PodFailed, 9)}, restoreJobFailedState},
		{"failed without an exit code", restore, []corev1.Pod{pod(restore, corev1.PodFailed, -1)}, restoreJobPending},
		{"failed but being deleted", restore, []corev1.Pod{pod(restore, corev1.PodFailed, 9, deleting)}, restoreJobPending},
		{"evicted", restore, []corev1.Pod{pod(restore, corev1.PodFailed, 137, evicted)}, restoreJobPending},
		{"disrupted", restore, []corev1.Pod{pod(restore, corev1.PodFailed, 137, disrupted)}, restoreJobPending},
		{"failed pod of an earlier Job of the same name", restore,
			[]corev1.Pod{pod(restore, corev1.PodFailed, 9, ownedBy("uid-earlier"))}, restoreJobPending},
		{"verify: non-retryable exit code (podFailurePolicy FailJob)", verify,
			[]corev1.Pod{pod(verify, corev1.PodFailed, 9)}, restoreJobFailedState},
		{"verify: retriable exit code, the Job retries", verify,
			[]corev1.Pod{pod(verify, corev1.PodFailed, retriable)}, restoreJobPending},
		{"verify: retriable exit codes up to backoffLimit", verify,
			[]corev1.Pod{pod(verify, corev1.PodFailed, retriable), pod(verify, corev1.PodFailed, retriable)}, restoreJobPending},
		{"verify: retriable exit codes beyond backoffLimit", verify,
			[]corev1.Pod{pod(verify, corev1.PodFailed, retriable), pod(verify, corev1.PodFailed, retriable), pod(verify, corev1.PodFailed, retriable)},
			restoreJobFailedState},
		{"verify: beyond backoffLimit by disruptions only", verify,
			[]corev1.Pod{pod(verify, corev1.PodFailed, 137, evicted), pod(verify, corev1.PodFailed, 137, evicted), pod(verify, corev1.PodFailed, 137, disrupted)},
			restoreJobPending},
		{"verify: succeeded after a retry", verify,
			[]corev1.Pod{pod(verify, corev1.PodFailed, retriable), pod(verify, corev1.PodSucceeded, 0)}, restoreJobSucceeded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := restoreJobPodOutcome(tc.job, tc.pods); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRestoreJobConditionWins checks restoreJobState against the world: the Job's condition,
// once set, decides whatever its pods say; without it a clean terminal pod decides, but not for
// a Job being deleted.
func TestRestoreJobConditionWins(t *testing.T) {
	c := testCluster(tNS, tCluster, tDS, nil)
	job := buildRestoreJob(restoreJobRestore, c, testJobInputs())
	job.UID = "uid-restore"
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: job.Namespace, Name: job.Name + "-x",
		Labels:          map[string]string{batchv1.ControllerUidLabel: string(job.UID)},
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))}},
		Status: corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{{Name: restoreContainerName,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}}}}}
	w := newRestoreWorld(t, append(testObjects(), pod)...)
	s := &restoreScope{cluster: w.cluster(), log: logr.Discard()}
	if got := w.r.restoreJobState(w.ctx, s, job.DeepCopy()); got != restoreJobSucceeded {
		t.Errorf("no condition, pod Succeeded: got %v, want succeeded", got)
	}
	failed := job.DeepCopy()
	failed.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue}}
	if got := w.r.restoreJobState(w.ctx, s, failed); got != restoreJobFailedState {
		t.Errorf("condition Failed, pod Succeeded: got %v, want failed", got)
	}
	deleting := job.DeepCopy()
	deleting.DeletionTimestamp = &metav1.Time{Time: tStart}
	if got := w.r.restoreJobState(w.ctx, s, deleting); got != restoreJobPending {
		t.Errorf("Job being deleted, pod Succeeded: got %v, want pending", got)
	}
	other := job.DeepCopy()
	other.UID = "uid-restore-2"
	if got := w.r.restoreJobState(w.ctx, s, other); got != restoreJobPending {
		t.Errorf("a new Job of the same name, the earlier one's pod Succeeded: got %v, want pending", got)
	}
}

// TestRestoreReplacesStaleJobs starts a restore while Jobs of an earlier restore are left (as
// after a failed one): the verify Job is deleted in the background and replaced in the same
// reconcile; the restore Job, which mounts the data volume, is deleted in the foreground and
// replaced only in a later reconcile (woken by its deletion).
func TestRestoreReplacesStaleJobs(t *testing.T) {
	c := testCluster(tNS, tCluster, tDS, nil)
	in := testJobInputs()
	in.Attempt = "2026-02-01T00:00:00Z"
	objs := testObjects()
	for _, kind := range []restoreJobKind{restoreJobVerify, restoreJobRestore} {
		j := buildRestoreJob(kind, c, in)
		j.UID = types.UID("uid-earlier-" + j.Name)
		j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue}}
		objs = append(objs, j)
	}
	w := newRestoreWorld(t, objs...)
	transcript := w.run(60)
	cond := restoreReadyCondition(w.cluster())
	if cond == nil || cond.Reason != kdcv1alpha1.ReasonRestoreSucceeded {
		t.Fatalf("RestoreReady = %+v, want Succeeded; transcript:\n%s", cond, strings.Join(transcript, "\n"))
	}
	reconcileOf := func(line string) int {
		n := 0
		for _, l := range transcript {
			if strings.HasPrefix(l, "reconcile ") {
				n++
			}
			if l == line {
				return n
			}
		}
		t.Fatalf("no %q in the transcript:\n%s", line, strings.Join(transcript, "\n"))
		return 0
	}
	verify := client.ObjectKey{Namespace: tNS, Name: kdcv1alpha1.VerifyJobName(tCluster)}.String()
	restore := client.ObjectKey{Namespace: tNS, Name: kdcv1alpha1.RestoreJobName(tCluster)}.String()
	if d, cr := reconcileOf("  delete Job "+verify), reconcileOf("  create Job "+verify); d != cr {
		t.Errorf("stale verify Job deleted in reconcile %d, its replacement created in %d: want the same", d, cr)
	}
	if d, cr := reconcileOf("  delete Job "+restore), reconcileOf("  create Job "+restore); cr <= d {
		t.Errorf("stale restore Job deleted in reconcile %d, its replacement created in %d: want later", d, cr)
	}
}
