package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// maxTerminationMessage is the kubelet's limit on a termination message.
const maxTerminationMessage = 4096

// podWorker owns one pod: its processes, its status and its deletion. Everything it keeps is
// touched only by its own goroutine (run); processes, probes and timers talk to it through
// events, and the informer through wake.
type podWorker struct {
	a                    *Agent
	uid                  types.UID
	namespace, name, key string
	log                  klog.Logger
	notify               chan struct{}
	events               chan func()
	quit                 chan struct{}

	dir      string
	ip       string
	hostname string
	ready    bool   // sandbox set up: address, volumes, hosts file
	setupErr string // why the sandbox is not ready yet
	volumes  map[string]string
	inits    []*container
	ctrs     []*container
	nextInit int
	terminal bool
	stopping bool // stopAll runs: exits are final
	start    metav1.Time
	conds    map[corev1.PodConditionType]corev1.PodCondition
	sent     *corev1.PodStatus
	retryAt  time.Time
}

// container is one (init) container of the pod and its current process.
type container struct {
	spec       corev1.Container
	init       bool
	runs       int32 // processes started
	state      corev1.ContainerState
	last       corev1.ContainerState
	ready      bool
	finished   bool // exited and will not restart
	proc       *process
	started    metav1.Time
	backoff    time.Duration
	waiting    bool // a restart is scheduled
	launch     *launchSpec
	logFile    *os.File
	logOffset  int64
	probeStop  context.CancelFunc
	probeOK    int32
	probeFails int32
}

func newPodWorker(a *Agent, pod *corev1.Pod) *podWorker {
	w := &podWorker{
		a: a, uid: pod.UID, namespace: pod.Namespace, name: pod.Name, key: pod.Namespace + "/" + pod.Name,
		log:    a.log.WithValues("pod", klog.KObj(pod)),
		notify: make(chan struct{}, 1), events: make(chan func(), 64), quit: make(chan struct{}),
		dir:   a.podDir(pod),
		conds: map[corev1.PodConditionType]corev1.PodCondition{},
	}
	for _, c := range pod.Spec.InitContainers {
		w.inits = append(w.inits, &container{spec: c, init: true, state: waitingState("PodInitializing", "")})
	}
	for _, c := range pod.Spec.Containers {
		w.ctrs = append(w.ctrs, &container{spec: c, state: waitingState("ContainerCreating", "")})
	}
	if len(w.inits) > 0 {
		for _, c := range w.ctrs {
			c.state = waitingState("PodInitializing", "")
		}
		w.inits[0].state = waitingState("ContainerCreating", "")
	}
	return w
}

func waitingState(reason, msg string) corev1.ContainerState {
	return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}
}

func (w *podWorker) wake() {
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// send runs f on the worker's goroutine, unless the worker is gone.
func (w *podWorker) send(f func()) {
	select {
	case w.events <- f:
	case <-w.quit:
	}
}

func (w *podWorker) after(d time.Duration, f func()) {
	time.AfterFunc(d, func() { w.send(f) })
}

// current is the pod as the informer last saw it, nil once it is gone (or replaced).
func (w *podWorker) current() *corev1.Pod {
	pod, err := w.a.pods.Pods(w.namespace).Get(w.name)
	if err != nil || pod.UID != w.uid {
		return nil
	}
	return pod
}

func (w *podWorker) run(ctx context.Context) {
	defer close(w.quit)
	if pod := w.current(); pod != nil && (pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed) {
		w.terminal = true // finished before this agent started: never run it again
		w.sent = pod.Status.DeepCopy()
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		pod := w.current()
		switch {
		case ctx.Err() != nil:
			w.stopAll(w.a.opts.ShutdownGrace)
			w.a.workerDone(w, false)
			return
		case pod == nil:
			w.log.Info("Pod is gone, stopping its containers")
			w.stopAll(2 * time.Second)
			w.cleanup()
			w.a.workerDone(w, false)
			return
		case pod.DeletionTimestamp != nil:
			w.terminate(ctx, pod)
			w.a.workerDone(w, true)
			return
		}
		w.step(ctx, pod)
		w.syncStatus(ctx, pod)
		next := time.Hour
		if !w.ready {
			next = 500 * time.Millisecond
		}
		if !w.retryAt.IsZero() {
			next = min(next, time.Until(w.retryAt))
		}
		timer.Reset(max(next, 10*time.Millisecond))
		select {
		case <-ctx.Done():
		case <-w.notify:
		case f := <-w.events:
			f()
		case <-timer.C:
		}
	}
}

// step moves the pod forward: sandbox, then init containers in order, then the containers.
func (w *podWorker) step(ctx context.Context, pod *corev1.Pod) {
	if w.terminal {
		return
	}
	if !w.ready {
		if w.start.IsZero() {
			w.start = metav1.Now()
		}
		if err := w.setup(ctx, pod); err != nil {
			if msg := err.Error(); msg != w.setupErr {
				w.log.Info("Pod sandbox not ready yet", "reason", msg)
				w.setupErr = msg
			}
			return
		}
		w.ready, w.setupErr = true, ""
		w.a.kickHosts()
	}
	for w.nextInit < len(w.inits) {
		c := w.inits[w.nextInit]
		if c.finished && c.state.Terminated != nil && c.state.Terminated.ExitCode == 0 {
			w.nextInit++
			continue
		}
		if c.finished { // failed for good
			w.terminal = true
			w.stopAll(0)
			return
		}
		if c.proc == nil && !c.waiting {
			w.startContainer(ctx, pod, c)
		}
		return
	}
	all := true
	for _, c := range w.ctrs {
		if c.proc == nil && !c.waiting && !c.finished {
			w.startContainer(ctx, pod, c)
		}
		all = all && c.finished
	}
	if all {
		w.terminal = true
	}
}

func (w *podWorker) startContainer(ctx context.Context, pod *corev1.Pod, c *container) {
	name := c.spec.Name
	spec, err := w.launchSpec(ctx, pod, c)
	if err != nil {
		reason := "CreateContainerConfigError"
		if ie := (*imageError)(nil); errors.As(err, &ie) {
			reason = "ErrImageNeverPull"
		}
		c.state = waitingState(reason, err.Error())
		c.waiting = true
		w.after(time.Second, func() { c.waiting = false })
		return
	}
	c.launch = spec
	if c.logFile == nil {
		if err := os.MkdirAll(filepath.Join(w.dir, "logs"), 0o755); err != nil {
			c.state = waitingState("CreateContainerError", err.Error())
			return
		}
		path := w.a.LogPath(pod, name)
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			c.state = waitingState("CreateContainerError", err.Error())
			return
		}
		c.logFile = f
		w.log.Info("Container log", "container", name, "path", path)
	}
	termPath := w.termPath(name)
	if err := os.WriteFile(termPath, nil, 0o666); err == nil {
		_ = os.Chmod(termPath, 0o666)
	}
	if off, err := c.logFile.Seek(0, 2); err == nil {
		c.logOffset = off
	}
	p, err := startProcess(w.a.self, filepath.Join(w.dir, "specs", name+".json"), spec, c.logFile)
	c.runs++
	now := metav1.Now()
	if err != nil {
		w.log.Info("Container failed to start", "container", name, "reason", err.Error())
		w.exited(pod, c, nil, 128, "StartError", err.Error(), now)
		return
	}
	c.proc, c.started = p, now
	c.state = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}
	w.log.Info("Container started", "container", name, "pid", p.pid, "argv", spec.Argv)
	c.probeOK, c.probeFails, c.ready = 0, 0, false
	if c.spec.ReadinessProbe != nil && !c.init {
		pctx, cancel := context.WithCancel(ctx)
		c.probeStop = cancel
		go w.probeLoop(pctx, pod, c, p)
	} else if !c.init {
		c.ready = true
	}
	go func() {
		<-p.done
		w.send(func() {
			if c.proc == p {
				reason := "Completed"
				if p.code != 0 {
					reason = "Error"
				}
				w.exited(w.current(), c, p, int32(p.code), reason, "", metav1.Now())
			}
		})
	}()
}

// exited records a container's exit and schedules its restart per the restart policy.
func (w *podWorker) exited(pod *corev1.Pod, c *container, p *process, code int32, reason, msg string, at metav1.Time) {
	if c.probeStop != nil {
		c.probeStop()
		c.probeStop = nil
	}
	c.proc, c.ready = nil, false
	if msg == "" {
		msg = w.terminationMessage(c, code)
	}
	t := &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, Message: msg, StartedAt: c.started, FinishedAt: at}
	if p != nil {
		t.ContainerID = fmt.Sprintf("nodeagent://%d", p.pid)
		if p.sig != 0 {
			t.Signal = int32(p.sig)
		}
	}
	c.state = corev1.ContainerState{Terminated: t}
	w.log.Info("Container exited", "container", c.spec.Name, "exitCode", code, "reason", reason)
	policy := corev1.RestartPolicyAlways
	if pod != nil {
		policy = pod.Spec.RestartPolicy
	}
	restart := policy == corev1.RestartPolicyAlways || (policy == corev1.RestartPolicyOnFailure && code != 0)
	if c.init {
		restart = code != 0 && policy != corev1.RestartPolicyNever
	}
	if !restart || w.terminal || w.stopping {
		c.finished = true
		return
	}
	// Reset the back-off only after a process that ran for a while; a container that fails to
	// start (p == nil) keeps backing off, as the kubelet's CrashLoopBackOff does.
	if p != nil && at.Sub(c.started.Time) > 2*w.a.opts.MaxRestartBackoff {
		c.backoff = 0
	}
	c.backoff = min(max(2*c.backoff, w.a.opts.RestartBackoff), w.a.opts.MaxRestartBackoff)
	c.last = c.state
	c.state = waitingState("CrashLoopBackOff", fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", c.backoff, c.spec.Name, w.name))
	c.waiting = true
	w.after(c.backoff, func() { c.waiting = false })
}

func (w *podWorker) termPath(container string) string {
	return filepath.Join(w.dir, "termination", container)
}

// terminationMessage reads the container's termination message file, falling back to the
// tail of its log when the policy says so.
func (w *podWorker) terminationMessage(c *container, code int32) string {
	data, _ := os.ReadFile(w.termPath(c.spec.Name))
	if len(data) > maxTerminationMessage {
		data = data[:maxTerminationMessage]
	}
	if len(data) == 0 && code != 0 && c.spec.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError && c.logFile != nil {
		if f, err := os.Open(c.logFile.Name()); err == nil {
			defer f.Close()
			fi, _ := f.Stat()
			from := max(c.logOffset, fi.Size()-2048)
			buf := make([]byte, fi.Size()-from)
			if n, _ := f.ReadAt(buf, from); n > 0 {
				data = buf[:n]
			}
		}
	}
	return string(data)
}

// stopAll stops every running process of the pod (containers in parallel) and records exits.
func (w *podWorker) stopAll(grace time.Duration) { w.stopAllOrKill(grace, nil) }

// stopAllOrKill is stopAll, killing what still runs when kill closes.
func (w *podWorker) stopAllOrKill(grace time.Duration, kill <-chan struct{}) {
	type stopped struct {
		c *container
		p *process
	}
	var procs []stopped
	w.stopping = true
	for _, c := range append(append([]*container{}, w.inits...), w.ctrs...) {
		if c.proc != nil {
			procs = append(procs, stopped{c, c.proc})
			go c.proc.stopOrKill(grace, kill)
		}
		c.waiting = false
	}
	for _, s := range procs {
		<-s.p.done
		reason := "Completed"
		if s.p.code != 0 {
			reason = "Error"
		}
		s.c.finished = true
		w.exited(nil, s.c, s.p, int32(s.p.code), reason, "", metav1.Now())
	}
	for _, c := range append(append([]*container{}, w.inits...), w.ctrs...) {
		c.finished = true
		if c.state.Waiting != nil && c.last.Terminated != nil {
			c.state, c.last = c.last, corev1.ContainerState{}
		}
		if c.logFile != nil {
			c.logFile.Close()
			c.logFile = nil
		}
	}
}

// minimumGrace is the kubelet's floor on a container's grace period: killContainer raises a
// shorter one to minimumGracePeriodInSeconds (kubernetes pkg/kubelet/kuberuntime).
const minimumGrace = 2 * time.Second

// killGrace is the grace period the kubelet gives a container of a pod deleted with seconds.
func killGrace(seconds int64) time.Duration {
	return max(time.Duration(seconds)*time.Second, minimumGrace)
}

// terminate handles a pod being deleted: stop its processes within the grace period, report
// the terminal phase, release its address and delete it for good (grace 0), as the kubelet does.
func (w *podWorker) terminate(ctx context.Context, pod *corev1.Pod) {
	grace := 30 * time.Second
	if pod.DeletionGracePeriodSeconds != nil {
		grace = killGrace(*pod.DeletionGracePeriodSeconds)
	}
	w.log.Info("Pod is being deleted, stopping its containers", "grace", grace)
	// A second deletion may shorten the grace period; the kubelet then restarts the kill with it.
	kill, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		for {
			select {
			case <-stopped:
				return
			case <-w.notify:
			}
			if p := w.current(); p != nil && p.DeletionGracePeriodSeconds != nil {
				if shorter := killGrace(*p.DeletionGracePeriodSeconds); shorter < grace {
					w.log.Info("Grace period shortened", "grace", shorter)
					select {
					case <-stopped:
					case <-time.After(shorter):
						close(kill)
					}
					return
				}
			}
		}
	}()
	w.stopAllOrKill(grace, kill)
	close(stopped)
	if !w.terminal && w.ready {
		w.terminal = true
		w.syncStatus(ctx, pod)
	}
	w.cleanup()
	err := retry.OnError(retry.DefaultBackoff, func(err error) bool { return !apierrors.IsNotFound(err) && ctx.Err() == nil }, func() error {
		return w.a.kube.CoreV1().Pods(w.namespace).Delete(ctx, w.name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To[int64](0),
			Preconditions:      &metav1.Preconditions{UID: &w.uid},
		})
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		w.log.Error(err, "Failed to delete pod")
	}
}

// cleanup releases the pod's address and removes its materialised volumes; logs stay.
func (w *podWorker) cleanup() {
	if w.ip != "" {
		w.a.ipam.release(w.ip)
	}
	_ = os.RemoveAll(filepath.Join(w.dir, "volumes"))
	w.a.kickHosts()
}

// status computes the pod status the kubelet would report.
func (w *podWorker) status(pod *corev1.Pod) corev1.PodStatus {
	st := corev1.PodStatus{Phase: w.phase(pod), QOSClass: pod.Status.QOSClass}
	if w.ip != "" {
		st.PodIP, st.PodIPs = w.ip, []corev1.PodIP{{IP: w.ip}}
	}
	st.HostIP, st.HostIPs = w.a.hostIP, []corev1.HostIP{{IP: w.a.hostIP}}
	if !w.start.IsZero() {
		st.StartTime = &w.start
	}
	cs := func(c *container) corev1.ContainerStatus {
		s := corev1.ContainerStatus{
			Name: c.spec.Name, Image: c.spec.Image, ImageID: "nodeagent://" + c.spec.Image,
			State: c.state, LastTerminationState: c.last, Ready: c.ready,
			RestartCount: max(c.runs-1, 0), Started: ptr.To(c.state.Running != nil),
		}
		if c.proc != nil {
			s.ContainerID = fmt.Sprintf("nodeagent://%d", c.proc.pid)
		} else if c.state.Terminated != nil {
			s.ContainerID = c.state.Terminated.ContainerID
		}
		if !w.ready && w.setupErr != "" && c.state.Waiting != nil && c.runs == 0 {
			s.State = waitingState("ContainerCreating", w.setupErr)
		}
		return s
	}
	for _, c := range w.inits {
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs(c))
	}
	ready := true
	for _, c := range w.ctrs {
		st.ContainerStatuses = append(st.ContainerStatuses, cs(c))
		ready = ready && c.ready
	}
	initialized := w.nextInit >= len(w.inits)
	terminal := st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed
	set := func(t corev1.PodConditionType, ok bool, reason string) {
		s := corev1.ConditionFalse
		if ok {
			s, reason = corev1.ConditionTrue, ""
		}
		old, had := w.conds[t]
		if !had || old.Status != s || old.Reason != reason {
			w.conds[t] = corev1.PodCondition{Type: t, Status: s, Reason: reason, LastTransitionTime: metav1.Now()}
		}
		st.Conditions = append(st.Conditions, w.conds[t])
	}
	notReady := "ContainersNotReady"
	if terminal {
		notReady = "PodCompleted"
	}
	set(corev1.PodReadyToStartContainers, w.ready && !terminal, "")
	set(corev1.PodInitialized, initialized, "ContainersNotInitialized")
	set(corev1.ContainersReady, ready && initialized && !terminal, notReady)
	set(corev1.PodReady, ready && initialized && !terminal, notReady)
	set(corev1.PodScheduled, true, "")
	return st
}

// phase follows the kubelet's getPhase.
func (w *podWorker) phase(pod *corev1.Pod) corev1.PodPhase {
	for _, c := range w.inits {
		if c.finished && (c.state.Terminated == nil || c.state.Terminated.ExitCode != 0) {
			return corev1.PodFailed
		}
	}
	if w.nextInit < len(w.inits) {
		return corev1.PodPending
	}
	var running, waiting, stopped, succeeded int
	for _, c := range w.ctrs {
		switch {
		case c.state.Running != nil:
			running++
		case c.state.Terminated != nil:
			stopped++
			if c.state.Terminated.ExitCode == 0 {
				succeeded++
			}
		case c.last.Terminated != nil:
			stopped++
		default:
			waiting++
		}
	}
	switch {
	case waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case stopped == 0:
		return corev1.PodPending
	}
	allDone := true
	for _, c := range w.ctrs {
		allDone = allDone && c.finished
	}
	if !allDone {
		return corev1.PodRunning
	}
	if succeeded == stopped {
		return corev1.PodSucceeded
	}
	return corev1.PodFailed
}

// syncStatus writes the pod's status when it changed, on the latest object (retrying on
// conflict), keeping conditions other writers own.
func (w *podWorker) syncStatus(ctx context.Context, pod *corev1.Pod) {
	want := w.status(pod)
	if w.sent != nil && apiequality.Semantic.DeepEqual(*w.sent, want) {
		return
	}
	if w.sent != nil && (w.sent.Phase == corev1.PodSucceeded || w.sent.Phase == corev1.PodFailed) && w.sent.Phase != want.Phase {
		return // a terminal phase is final
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := w.a.kube.CoreV1().Pods(w.namespace).Get(ctx, w.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != w.uid {
			return nil
		}
		conds := append([]corev1.PodCondition{}, want.Conditions...)
		for _, c := range cur.Status.Conditions {
			if _, ours := w.conds[c.Type]; !ours {
				conds = append(conds, c)
			}
		}
		st := want
		st.Conditions = conds
		if st.QOSClass == "" {
			st.QOSClass = cur.Status.QOSClass
		}
		st.NominatedNodeName, st.Resize, st.ResourceClaimStatuses = cur.Status.NominatedNodeName, cur.Status.Resize, cur.Status.ResourceClaimStatuses
		cur.Status = st
		_, err = w.a.kube.CoreV1().Pods(w.namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		if !apierrors.IsNotFound(err) && ctx.Err() == nil {
			w.log.Error(err, "Failed to update pod status, retrying")
			w.retryAt = time.Now().Add(time.Second)
		}
		return
	}
	w.retryAt = time.Time{}
	w.sent = &want
}
