package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"
)

// defaultStateParent is where the default StateDir is made.
const defaultStateParent = "/var/tmp"

// Options tune the agent. The zero value works: see each field's default.
type Options struct {
	// NodeName is the Node the agent registers and runs the pods of. Default "nodeagent".
	NodeName string
	// StateDir holds each pod's volumes, /etc/hosts, termination messages and logs, and each
	// PersistentVolume's data. Default: a new directory under /var/tmp (kept after Stop, so
	// logs can be read). Not under /tmp: a pod that mounts an emptyDir at /tmp would hide the
	// agent's own files from its container.
	StateDir string
	// Images maps container images to local binaries, the image's entrypoint. An image is
	// looked up by its full reference, then "<last path element>:<tag>", its repository, and the
	// repository's last path element: "mirror/etcd:3.5.35-0" matches the key
	// "etcd:3.5.35-0" or "etcd". Default: DefaultImages().
	Images map[string]string
	// ImageArchives maps container images, looked up the same way and before Images, to image
	// archives (docker-compatible tarballs, `make image`): the container runs the image's
	// entrypoint, user and environment inside the image's own root filesystem, unpacked once
	// under StateDir/images. Default: DefaultImageArchives().
	ImageArchives map[string]string
	// PodCIDR is the loopback block pod addresses come from, such as "127.77.3.0/24"; its first
	// address is the node's own (hostIP). Default: a random /24 in 127.64.0.0/10, so that
	// agents of test binaries running in parallel do not collide.
	PodCIDR string
	// BindPods makes the agent bind pods nobody scheduled (spec.nodeName empty, default
	// scheduler) to its node, standing in for kube-scheduler. Default true.
	BindPods *bool
	// RestartBackoff is the first restart delay of a crashed container (doubled each restart,
	// up to MaxRestartBackoff). Defaults 1s and 10s.
	RestartBackoff, MaxRestartBackoff time.Duration
	// MaxProbePeriod caps a readiness probe's initialDelaySeconds and periodSeconds, so the
	// manifests' production timings do not slow tests down. Default 1s.
	MaxProbePeriod time.Duration
	// ShutdownGrace caps the grace period of the processes stopped when the agent stops.
	// Default 10s.
	ShutdownGrace time.Duration
	// ClusterDomain of the Service names in each pod's /etc/hosts. Default "cluster.local".
	ClusterDomain string
	// Logger receives the agent's logs (starts, exits, log file paths). Default: klog's text
	// logger on stderr.
	Logger *logr.Logger
}

// Agent is a kubelet stand-in that runs the pods of one Node as local processes.
type Agent struct {
	cfg    *rest.Config
	opts   Options
	kube   kubernetes.Interface
	log    logr.Logger
	self   string
	hostIP string
	ipam   *ipam
	roots  imageRoots

	pods      corelisters.PodLister
	services  corelisters.ServiceLister
	claims    corelisters.PersistentVolumeClaimLister
	binds     workqueue.TypedRateLimitingInterface[string]
	bindPVCs  workqueue.TypedRateLimitingInterface[string]
	hostsKick chan struct{}
	hostsMu   sync.Mutex
	proxy     *proxier

	mu       sync.Mutex
	workers  map[types.UID]*podWorker
	finished map[types.UID]bool // pods terminated and deleted by this agent, until they vanish
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	started  bool
}

// New returns an agent for the API server of cfg. Nothing runs before Start.
func New(cfg *rest.Config, opts Options) *Agent {
	if opts.NodeName == "" {
		opts.NodeName = "nodeagent"
	}
	if opts.Images == nil {
		opts.Images = DefaultImages()
	}
	if opts.ImageArchives == nil {
		opts.ImageArchives = DefaultImageArchives()
	}
	if opts.BindPods == nil {
		t := true
		opts.BindPods = &t
	}
	if opts.RestartBackoff == 0 {
		opts.RestartBackoff = time.Second
	}
	if opts.MaxRestartBackoff == 0 {
		opts.MaxRestartBackoff = 10 * time.Second
	}
	if opts.MaxProbePeriod == 0 {
		opts.MaxProbePeriod = time.Second
	}
	if opts.ShutdownGrace == 0 {
		opts.ShutdownGrace = 10 * time.Second
	}
	if opts.ClusterDomain == "" {
		opts.ClusterDomain = "cluster.local"
	}
	if opts.PodCIDR == "" {
		opts.PodCIDR = fmt.Sprintf("127.%d.%d.0/24", 64+rand.IntN(64), rand.IntN(256)) // ServiceCIDR is above
	}
	log := textlogger.NewLogger(textlogger.NewConfig())
	if opts.Logger != nil {
		log = *opts.Logger
	}
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 200, 400
	}
	return &Agent{
		cfg: cfg, opts: opts, log: log.WithName("nodeagent").WithValues("node", opts.NodeName),
		workers: map[types.UID]*podWorker{}, finished: map[types.UID]bool{},
		hostsKick: make(chan struct{}, 1),
	}
}

// NodeName is the name of the agent's Node.
func (a *Agent) NodeName() string { return a.opts.NodeName }

// StateDir is the directory holding the pods' volumes and logs.
func (a *Agent) StateDir() string { return a.opts.StateDir }

// HostIP is the node's loopback address.
func (a *Agent) HostIP() string { return a.hostIP }

// LogPath is the file the container's stdout and stderr go to (all its restarts appended).
func (a *Agent) LogPath(pod *corev1.Pod, container string) string {
	return filepath.Join(a.podDir(pod), "logs", container+".log")
}

func (a *Agent) podDir(pod *corev1.Pod) string {
	return filepath.Join(a.opts.StateDir, "pods", fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID))
}

// Start registers the Node, starts watching pods and returns once the agent runs. It fails
// clearly when container processes cannot get their own mount namespace (not root). The agent
// runs until ctx ends or Stop is called.
func (a *Agent) Start(ctx context.Context) error {
	if a.started {
		return errors.New("node agent already started")
	}
	a.started = true
	if os.Geteuid() != 0 {
		return fmt.Errorf("node agent needs root: each container runs in its own mount namespace (CLONE_NEWNS) with bind mounts, which an unprivileged user (uid %d) cannot create", os.Geteuid())
	}
	var err error
	if a.self, err = os.Executable(); err != nil {
		return fmt.Errorf("failed to find the agent's own binary: %w", err)
	}
	if a.opts.StateDir == "" {
		if a.opts.StateDir, err = os.MkdirTemp(defaultStateParent, "kdc-nodeagent-"); err != nil {
			return err
		}
	}
	a.roots.dir = filepath.Join(a.opts.StateDir, "images")
	if a.ipam, err = newIPAM(a.opts.PodCIDR); err != nil {
		return err
	}
	a.hostIP = a.ipam.hostIP
	if a.kube, err = kubernetes.NewForConfig(a.cfg); err != nil {
		return fmt.Errorf("failed to create client: %w", err)
	}
	if err := a.selfCheck(); err != nil {
		return err
	}
	if err := a.registerNode(ctx); err != nil {
		return err
	}
	a.ctx, a.cancel = context.WithCancel(ctx)
	factory := informers.NewSharedInformerFactory(a.kube, 0)
	podInf := factory.Core().V1().Pods()
	svcInf := factory.Core().V1().Services()
	pvcInf := factory.Core().V1().PersistentVolumeClaims()
	a.pods, a.services, a.claims = podInf.Lister(), svcInf.Lister(), pvcInf.Lister()
	a.binds = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	a.bindPVCs = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    a.onPod,
		UpdateFunc: func(_, obj any) { a.onPod(obj) },
		DeleteFunc: a.onPodDelete,
	}); err != nil {
		return err
	}
	a.proxy = &proxier{a: a, listeners: map[string]*proxyListener{}}
	kick := func(any) {
		a.kickHosts()
		a.proxy.sync()
	}
	if _, err := svcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: kick, UpdateFunc: func(_, o any) { kick(o) }, DeleteFunc: kick,
	}); err != nil {
		return err
	}
	enqueuePVC := func(obj any) {
		if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			a.bindPVCs.Add(key)
		}
	}
	if _, err := pvcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueuePVC, UpdateFunc: func(_, o any) { enqueuePVC(o) },
	}); err != nil {
		return err
	}
	factory.Start(a.ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(a.ctx.Done()) {
		if !ok {
			a.cancel()
			return fmt.Errorf("failed to sync the %v informer", typ)
		}
	}
	a.goRun(func() { a.runQueue(a.binds, a.bindPod) })
	a.goRun(func() { a.runQueue(a.bindPVCs, a.syncClaim) })
	a.goRun(a.heartbeat)
	a.goRun(a.hostsLoop)
	a.goRun(func() {
		<-a.ctx.Done()
		a.binds.ShutDown()
		a.bindPVCs.ShutDown()
		a.proxy.closeAll()
		factory.Shutdown()
	})
	a.log.Info("Node agent started", "hostIP", a.hostIP, "podCIDR", a.opts.PodCIDR, "stateDir", a.opts.StateDir)
	return nil
}

// Stop stops every process the agent started (SIGTERM, then SIGKILL after the grace period)
// and waits for them. The pods stay in the API server as they were.
func (a *Agent) Stop() {
	if a.cancel == nil {
		return
	}
	a.cancel()
	a.wg.Wait()
	a.log.Info("Node agent stopped", "stateDir", a.opts.StateDir)
}

func (a *Agent) goRun(f func()) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		f()
	}()
}

// selfCheck starts a trivial container to prove the container init works here.
func (a *Agent) selfCheck() error {
	bin := "/bin/true"
	if !isExecutable(bin) {
		return nil
	}
	dir := filepath.Join(a.opts.StateDir, "selfcheck")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	hosts := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
		return err
	}
	p, err := startProcess(a.self, filepath.Join(dir, "spec.json"), &launchSpec{
		Argv: []string{bin}, Hostname: "selfcheck",
		Mounts: []mountSpec{{Source: hosts, Target: "/etc/hosts", ReadOnly: true}},
	}, os.Stderr)
	if err != nil {
		return fmt.Errorf("node agent cannot run containers in their own mount namespace here: %w", err)
	}
	<-p.done
	if p.code != 0 {
		return fmt.Errorf("node agent self-check container exited with code %d", p.code)
	}
	return nil
}

func (a *Agent) registerNode(ctx context.Context) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: a.opts.NodeName, Labels: map[string]string{
			corev1.LabelHostname: a.opts.NodeName, corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64",
			"node.kube-dc.com/nodeagent": "true",
		}},
	}
	if _, err := a.kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("failed to register Node %s: %w", a.opts.NodeName, err)
	}
	return a.updateNodeStatus(ctx)
}

func (a *Agent) updateNodeStatus(ctx context.Context) error {
	now := metav1.Now()
	res := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("64"),
		corev1.ResourceMemory:           resource.MustParse("256Gi"),
		corev1.ResourcePods:             resource.MustParse("250"),
		corev1.ResourceEphemeralStorage: resource.MustParse("1Ti"),
	}
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := a.kube.CoreV1().Nodes().Get(ctx, a.opts.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		want := []corev1.NodeCondition{
			cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "node agent is posting ready status"),
			cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", ""),
			cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", ""),
			cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", ""),
		}
		for i := range want {
			for _, old := range node.Status.Conditions {
				if old.Type == want[i].Type && old.Status == want[i].Status {
					want[i].LastTransitionTime = old.LastTransitionTime
				}
			}
		}
		node.Status.Conditions = want
		node.Status.Capacity, node.Status.Allocatable = res, res
		node.Status.Addresses = []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: a.hostIP},
			{Type: corev1.NodeHostName, Address: a.opts.NodeName},
		}
		node.Status.NodeInfo = corev1.NodeSystemInfo{
			KubeletVersion: "v0.0.0-nodeagent", OperatingSystem: "linux", Architecture: "amd64",
			ContainerRuntimeVersion: "nodeagent://0.0.0",
		}
		_, err = a.kube.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("failed to update the status of Node %s: %w", a.opts.NodeName, err)
	}
	return nil
}

// heartbeat keeps the Node Ready for a node lifecycle controller, if one runs.
func (a *Agent) heartbeat() {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
			if err := a.updateNodeStatus(a.ctx); err != nil && a.ctx.Err() == nil {
				a.log.Error(err, "Failed to post node status")
			}
		}
	}
}

func (a *Agent) runQueue(q workqueue.TypedRateLimitingInterface[string], sync func(context.Context, string) error) {
	for {
		key, quit := q.Get()
		if quit {
			return
		}
		if err := sync(a.ctx, key); err != nil && a.ctx.Err() == nil {
			a.log.Error(err, "Sync failed, retrying", "key", key)
			q.AddRateLimited(key)
		} else {
			q.Forget(key)
		}
		q.Done(key)
	}
}

func (a *Agent) onPod(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	a.kickHosts()
	if pod.Spec.NodeName == "" {
		if *a.opts.BindPods && pod.DeletionTimestamp == nil &&
			(pod.Spec.SchedulerName == "" || pod.Spec.SchedulerName == corev1.DefaultSchedulerName) {
			if key, err := cache.MetaNamespaceKeyFunc(pod); err == nil {
				a.binds.Add(key)
			}
		}
		return
	}
	if pod.Spec.NodeName != a.opts.NodeName {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if w, ok := a.workers[pod.UID]; ok {
		w.wake()
		return
	}
	if a.finished[pod.UID] || a.ctx.Err() != nil {
		return
	}
	w := newPodWorker(a, pod)
	a.workers[pod.UID] = w
	a.goRun(func() { w.run(a.ctx) })
}

func (a *Agent) onPodDelete(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	a.kickHosts()
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			a.bindPVCs.Add(pod.Namespace + "/" + v.PersistentVolumeClaim.ClaimName)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.finished, pod.UID)
	if w, ok := a.workers[pod.UID]; ok {
		w.wake()
	}
}

// workerDone forgets a worker; deleted marks its pod as handled for good.
func (a *Agent) workerDone(w *podWorker, deleted bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.workers, w.uid)
	if deleted {
		if _, err := a.pods.Pods(w.namespace).Get(w.name); err == nil {
			a.finished[w.uid] = true
		}
	}
}

// bindPod binds an unscheduled pod to the agent's node, as kube-scheduler would.
func (a *Agent) bindPod(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := a.pods.Pods(ns).Get(name)
	if err != nil || pod.Spec.NodeName != "" || pod.DeletionTimestamp != nil {
		return nil
	}
	b := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: a.opts.NodeName},
	}
	if err := a.kube.CoreV1().Pods(ns).Bind(ctx, b, metav1.CreateOptions{}); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("failed to bind pod %s: %w", klog.KObj(pod), err)
	}
	a.log.V(1).Info("Bound pod", "pod", klog.KObj(pod))
	return nil
}

// ipam hands out loopback addresses; a pod gets its previous address back when free, so a
// StatefulSet pod keeps its address across restarts.
type ipam struct {
	mu     sync.Mutex
	hostIP string
	free   []net.IP
	used   map[string]string // ip -> pod key
	sticky map[string]string // pod key -> ip
}

func newIPAM(cidr string) (*ipam, error) {
	ip, n, err := net.ParseCIDR(cidr)
	if err != nil || ip.To4() == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("pod CIDR %q must be an IPv4 loopback block: %v", cidr, err)
	}
	ones, bits := n.Mask.Size()
	size := 1 << (bits - ones)
	if size < 4 {
		return nil, fmt.Errorf("pod CIDR %q is too small", cidr)
	}
	m := &ipam{used: map[string]string{}, sticky: map[string]string{}}
	base := n.IP.To4()
	for i := 1; i < size-1; i++ {
		a := make(net.IP, 4)
		copy(a, base)
		v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) + uint32(i)
		a[0], a[1], a[2], a[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
		if i == 1 {
			m.hostIP = a.String()
			continue
		}
		m.free = append(m.free, a)
	}
	return m, nil
}

func (m *ipam) allocate(key string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ip, ok := m.sticky[key]; ok {
		if _, busy := m.used[ip]; !busy {
			m.used[ip] = key
			return ip, nil
		}
	}
	for len(m.free) > 0 {
		ip := m.free[0].String()
		m.free = m.free[1:]
		if _, busy := m.used[ip]; busy {
			continue
		}
		m.used[ip] = key
		m.sticky[key] = ip
		return ip, nil
	}
	// Reuse an address remembered for a pod that is gone.
	for k, ip := range m.sticky {
		if _, busy := m.used[ip]; !busy {
			delete(m.sticky, k)
			m.used[ip] = key
			m.sticky[key] = ip
			return ip, nil
		}
	}
	return "", errors.New("no free pod address")
}

func (m *ipam) release(ip string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.used, ip)
}
