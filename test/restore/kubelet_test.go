package restore

import (
	"context"
	"fmt"
	"strings"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/source"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/test/framework"
)

// gate is a step the fake kubelet can hold until the test releases it.
type gate string

const (
	// gateVerify, gateRestore, gateRollback hold the pod of that Job (it stays Pending).
	gateVerify   gate = "verify"
	gateRestore  gate = "restore"
	gateRollback gate = "rollback"
	// gateCPDelete and gateEtcdDelete keep deleted control-plane / etcd pods terminating.
	gateCPDelete   gate = "cp-delete"
	gateEtcdDelete gate = "etcd-delete"
	// gateEtcdReady keeps etcd pods un-ready; gateCPReady keeps the control plane's pods of the
	// post-restore rollout (those with the restarted-at annotation) un-ready.
	gateEtcdReady gate = "etcd-ready"
	gateCPReady   gate = "cp-ready"

	// holdFinalizer is how the fake kubelet delays a pod's deletion, like a graceful shutdown.
	holdFinalizer = "test.kube-dc.com/kubelet"
)

// kubelet plays the kubelet for the pods of one namespace.
type kubelet struct {
	c        client.Client
	ns       string
	cluster  string
	mu       sync.Mutex
	held     map[gate]bool
	jobExit  map[string]int32
	etcdBad  bool // etcd never becomes ready on restored data (until rolled back)
	wake     chan event.GenericEvent
	cancel   context.CancelFunc
	done     chan struct{}
	jobNames map[gate]string
}

// startKubelet runs the fake kubelet for ns until the test ends.
func startKubelet(ns, cluster string) *kubelet {
	opts := framework.ManagerOptions()
	opts.Cache = cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}}
	mgr, err := ctrl.NewManager(env.Config, opts)
	Expect(err).NotTo(HaveOccurred())
	k := &kubelet{
		c: mgr.GetClient(), ns: ns, cluster: cluster,
		held: map[gate]bool{}, jobExit: map[string]int32{},
		wake: make(chan event.GenericEvent, 100), done: make(chan struct{}),
		jobNames: map[gate]string{
			gateVerify:   kdcv1alpha1.VerifyJobName(cluster),
			gateRestore:  kdcv1alpha1.RestoreJobName(cluster),
			gateRollback: kdcv1alpha1.RollbackJobName(cluster),
		},
	}
	Expect(ctrl.NewControllerManagedBy(mgr).Named("kubelet-" + ns).For(&corev1.Pod{}).
		WatchesRawSource(source.Channel(k.wake, &handler.EnqueueRequestForObject{})).
		Complete(k)).To(Succeed())
	kctx, cancel := context.WithCancel(ctx)
	k.cancel = cancel
	go func() {
		defer GinkgoRecover()
		defer close(k.done)
		Expect(mgr.Start(kctx)).To(Succeed())
	}()
	DeferCleanup(func() {
		k.cancel()
		Eventually(k.done).Should(BeClosed())
	})
	return k
}

// hold holds gates; release releases them and wakes every pod of the namespace.
func (k *kubelet) hold(gs ...gate) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, g := range gs {
		k.held[g] = true
	}
}

func (k *kubelet) release(gs ...gate) {
	k.mu.Lock()
	for _, g := range gs {
		delete(k.held, g)
	}
	k.mu.Unlock()
	var pods corev1.PodList
	Expect(env.Client.List(ctx, &pods, client.InNamespace(k.ns))).To(Succeed())
	for i := range pods.Items {
		k.wake <- event.GenericEvent{Object: &pods.Items[i]}
	}
}

func (k *kubelet) isHeld(g gate) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.held[g]
}

// failJob makes the pods of Job name exit with code.
func (k *kubelet) failJob(name string, code int32) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.jobExit[name] = code
}

func (k *kubelet) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pod := &corev1.Pod{}
	if err := k.c.Get(ctx, req.NamespacedName, pod); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if job := pod.Labels[batchv1.JobNameLabel]; job != "" {
		return ctrl.Result{}, k.runJobPod(ctx, pod, job)
	}
	app := pod.Labels["app"]
	isEtcd := strings.HasSuffix(app, "-etcd")
	if !pod.DeletionTimestamp.IsZero() {
		if (isEtcd && k.isHeld(gateEtcdDelete)) || (!isEtcd && k.isHeld(gateCPDelete)) {
			return ctrl.Result{}, nil
		}
		if controllerutil.RemoveFinalizer(pod, holdFinalizer) {
			return ctrl.Result{}, client.IgnoreNotFound(k.c.Update(ctx, pod))
		}
		return ctrl.Result{}, nil
	}
	if controllerutil.AddFinalizer(pod, holdFinalizer) {
		return ctrl.Result{}, client.IgnoreNotFound(k.c.Update(ctx, pod))
	}
	ready := true
	switch {
	case isEtcd && k.isHeld(gateEtcdReady):
		ready = false
	case isEtcd && k.etcdBad:
		c := &kdcv1alpha1.KdcCluster{}
		if err := k.c.Get(ctx, client.ObjectKey{Namespace: k.ns, Name: k.cluster}, c); err != nil {
			return ctrl.Result{}, err
		}
		ready = c.Annotations[kdcv1alpha1.AnnotationRestoreSwapped] != "true" || c.Annotations[kdcv1alpha1.AnnotationRestoreRolledBack] == "true"
	case !isEtcd && k.isHeld(gateCPReady) && pod.Annotations[kdcv1alpha1.AnnotationRestartedAt] != "":
		ready = false
	}
	if !ready || pod.Status.Phase == corev1.PodRunning {
		return ctrl.Result{}, nil
	}
	now := metav1.Now()
	pod.Status.Phase = corev1.PodRunning
	pod.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
	}
	for _, c := range pod.Spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, Ready: true, Started: ptr.To(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	return ctrl.Result{}, client.IgnoreNotFound(k.c.Status().Update(ctx, pod))
}

// runJobPod finishes a Job pod (unless its gate is held) with its scripted exit code and a
// termination message like the real subcommands write.
func (k *kubelet) runJobPod(ctx context.Context, pod *corev1.Pod, job string) error {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed || !pod.DeletionTimestamp.IsZero() {
		return nil
	}
	for g, name := range k.jobNames {
		if name == job && k.isHeld(g) {
			return nil
		}
	}
	k.mu.Lock()
	code := k.jobExit[job]
	k.mu.Unlock()
	now := metav1.Now()
	phase, msg := corev1.PodSucceeded, `{"key":"done"}`
	if code != 0 {
		phase = corev1.PodFailed
		msg = fmt.Sprintf(`{"error":"scripted failure of %s","reason":"Integrity","exitCode":%d}`, job, code)
	}
	pod.Status.Phase = phase
	pod.Status.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: code, Message: msg, Reason: "Completed", StartedAt: now, FinishedAt: now}},
		})
	}
	err := k.c.Status().Update(ctx, pod)
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
