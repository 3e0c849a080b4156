package restore

import (
	"sort"
	"strconv"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kamajiv1alpha1 "kube-dc.com/etcd-backup/api/kamaji/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/engine"
	"kube-dc.com/etcd-backup/test/framework"
	"kube-dc.com/etcd-backup/test/kamaji"
)

// timeline is every change of C-cp's pods and of the restore's phase, in the API server's order
// (resourceVersions of one etcd), recorded by watches through a whole restore.
type timeline struct {
	mu     sync.Mutex
	events []timelineEvent
}

type timelineEvent struct {
	rv uint64
	// phase is set for a KdcCluster event; pod and deleted for a pod event.
	phase   string
	pod     string
	deleted bool
}

// recordTimeline watches C-cp's pods and the KdcCluster of t until the test ends.
func (t *tenant) recordTimeline() *timeline {
	GinkgoHelper()
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: framework.Scheme})
	Expect(err).NotTo(HaveOccurred())
	tl := &timeline{}
	add := func(obj client.Object, e timelineEvent) {
		rv, err := strconv.ParseUint(obj.GetResourceVersion(), 10, 64)
		Expect(err).NotTo(HaveOccurred())
		e.rv = rv
		tl.mu.Lock()
		tl.events = append(tl.events, e)
		tl.mu.Unlock()
	}
	pods, err := wc.Watch(ctx, &corev1.PodList{}, client.InNamespace(t.ns),
		client.MatchingLabels{"app": kdcv1alpha1.ControlPlaneDeploymentName(clusterName)})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(pods.Stop)
	clusters, err := wc.Watch(ctx, &kdcv1alpha1.KdcClusterList{}, client.InNamespace(t.ns))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(clusters.Stop)
	go func() {
		for ev := range pods.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok {
				add(p, timelineEvent{pod: p.Name, deleted: ev.Type == watch.Deleted})
			}
		}
	}()
	go func() {
		for ev := range clusters.ResultChan() {
			if c, ok := ev.Object.(*kdcv1alpha1.KdcCluster); ok && c.Name == clusterName {
				add(c, timelineEvent{phase: c.Annotations[kdcv1alpha1.AnnotationRestoreState]})
			}
		}
	}()
	return tl
}

// podsWhileDown replays the timeline in order and returns every control-plane pod that existed
// at some moment from the end of DrainingControlPlane until StartingControlPlane.
func (tl *timeline) podsWhileDown() (seen []string, phases []string) {
	tl.mu.Lock()
	events := append([]timelineEvent(nil), tl.events...)
	tl.mu.Unlock()
	sort.SliceStable(events, func(i, j int) bool { return events[i].rv < events[j].rv })
	live := map[string]bool{}
	down := false
	found := map[string]bool{}
	for _, e := range events {
		switch {
		case e.pod != "" && e.deleted:
			delete(live, e.pod)
		case e.pod != "":
			live[e.pod] = true
		default:
			if len(phases) == 0 || phases[len(phases)-1] != e.phase {
				phases = append(phases, e.phase)
			}
			switch kdcv1alpha1.RestorePhase(e.phase) {
			case kdcv1alpha1.PhaseStoppingEtcd, kdcv1alpha1.PhaseRestoringSnapshot, kdcv1alpha1.PhaseStartingEtcd:
				down = true
			default:
				down = false
			}
		}
		if down {
			for p := range live {
				found[p] = true
			}
		}
	}
	for p := range found {
		seen = append(seen, p)
	}
	sort.Strings(seen)
	return seen, phases
}

// startKamaji runs the Kamaji stand-in until the test ends, makes a TenantControlPlane own C-cp,
// and proves the stand-in active: a scale of C-cp is set back.
func (t *tenant) startKamaji(paused bool) (*kamaji.StandIn, *kamajiv1alpha1.TenantControlPlane) {
	GinkgoHelper()
	mgr, err := ctrl.NewManager(env.Config, framework.ManagerOptions())
	Expect(err).NotTo(HaveOccurred())
	standIn, err := kamaji.Setup(mgr)
	Expect(err).NotTo(HaveOccurred())
	m := startManager(mgr)
	DeferCleanup(m.stop)
	tcp := kamaji.TenantControlPlane(t.ns, kdcv1alpha1.ControlPlaneDeploymentName(clusterName), cpReplicas)
	Expect(env.Client.Create(ctx, tcp)).To(Succeed())
	Eventually(func(g Gomega) {
		g.Expect(metav1.GetControllerOf(t.deployment())).To(HaveField("UID", tcp.UID))
	}).Should(Succeed())
	t.scaleControlPlane(1)
	Eventually(func(g Gomega) {
		g.Expect(standIn.Reverts()).To(BeNumerically(">", 0))
		g.Expect(*t.deployment().Spec.Replicas).To(BeEquivalentTo(cpReplicas))
	}).Should(Succeed())
	if paused {
		t.setTCPAnnotation(kamajiv1alpha1.AnnotationPaused, "maintenance")
	}
	t.waitHealthy()
	return standIn, tcp
}

func (t *tenant) scaleControlPlane(n int32) {
	GinkgoHelper()
	d := t.deployment()
	orig := d.DeepCopy()
	d.Spec.Replicas = &n
	Expect(env.Client.Patch(ctx, d, client.MergeFrom(orig))).To(Succeed())
}

func (t *tenant) tcp() *kamajiv1alpha1.TenantControlPlane {
	GinkgoHelper()
	tcp := &kamajiv1alpha1.TenantControlPlane{}
	Expect(env.Client.Get(ctx, t.key(kdcv1alpha1.ControlPlaneDeploymentName(clusterName)), tcp)).To(Succeed())
	return tcp
}

func (t *tenant) setTCPAnnotation(k, v string) {
	GinkgoHelper()
	tcp := t.tcp()
	orig := tcp.DeepCopy()
	if tcp.Annotations == nil {
		tcp.Annotations = map[string]string{}
	}
	tcp.Annotations[k] = v
	Expect(env.Client.Patch(ctx, tcp, client.MergeFrom(orig))).To(Succeed())
}

var _ = Describe("Restore of a control plane owned by a Kamaji TenantControlPlane", func() {
	var t *tenant
	BeforeEach(func() {
		t = newTenant()
	})

	It("pauses the TCP before the drain, keeps the control plane down until StartingControlPlane, and resumes it", func() {
		standIn, _ := t.startKamaji(false)
		podsBefore := t.podNames(kdcv1alpha1.ControlPlaneDeploymentName(clusterName))
		tl := t.recordTimeline()
		m := startRestoreManager(engine.Timeouts{})
		DeferCleanup(m.stop)
		revertsBefore := standIn.Reverts()
		t.requestRestore(snapshotKey)
		Eventually(func(g Gomega) {
			g.Expect(t.tcp().Annotations).To(HaveKey(kamajiv1alpha1.AnnotationPaused))
		}).Should(Succeed())
		expectSucceeded(t, podsBefore)
		Expect(t.tcp().Annotations).NotTo(HaveKey(kamajiv1alpha1.AnnotationPaused), "the restore's pause is removed")
		restored := t.podNames(kdcv1alpha1.ControlPlaneDeploymentName(clusterName))
		Consistently(func(g Gomega) {
			g.Expect(t.podNames(kdcv1alpha1.ControlPlaneDeploymentName(clusterName))).To(Equal(restored), "Kamaji rolled the restored control plane out again")
		}, 3*time.Second).Should(Succeed())
		seen, phases := tl.podsWhileDown()
		Expect(phases).To(ContainElements(string(kdcv1alpha1.PhaseStoppingEtcd), string(kdcv1alpha1.PhaseStartingControlPlane)))
		Expect(seen).To(BeEmpty(), "control-plane pods existed between the drain and StartingControlPlane")
		Expect(standIn.Reverts()).To(Equal(revertsBefore), "Kamaji set the replicas back during the restore")
		Expect(eventReasons(t)).To(ContainElements("ControlPlanePaused", "ControlPlaneResumed"))
	})

	It("leaves a TCP that was paused before the restore paused", func() {
		t.startKamaji(true)
		m := startRestoreManager(engine.Timeouts{})
		DeferCleanup(m.stop)
		t.requestRestore(snapshotKey)
		expectSucceeded(t, nil)
		Expect(t.tcp().Annotations).To(HaveKeyWithValue(kamajiv1alpha1.AnnotationPaused, "maintenance"))
		Expect(eventReasons(t)).NotTo(ContainElement("ControlPlanePaused"))
	})

	It("resumes the TCP in the recovery after a failure", func() {
		t.startKamaji(false)
		m := startRestoreManager(engine.Timeouts{})
		DeferCleanup(m.stop)
		t.k.failJob(kdcv1alpha1.RestoreJobName(clusterName), 9)
		t.requestRestore(snapshotKey)
		expectFailed(t, snapshotKey, "(RestoreJobFailed)", "started again on the old data")
		Expect(t.tcp().Annotations).NotTo(HaveKey(kamajiv1alpha1.AnnotationPaused))
		t.waitHealthy()
	})

	DescribeTable("a manager killed inside a phase leaves no pause of its own behind",
		func(phase kdcv1alpha1.RestorePhase, gates []gate) {
			t.startKamaji(false)
			m1 := startRestoreManager(engine.Timeouts{})
			t.k.hold(gates...)
			t.requestRestore(snapshotKey)
			Eventually(func(g Gomega) {
				g.Expect(t.cluster().Annotations).To(HaveKeyWithValue(kdcv1alpha1.AnnotationRestoreState, string(phase)))
			}).Should(Succeed())
			m1.stop()
			m2 := startRestoreManager(engine.Timeouts{})
			DeferCleanup(m2.stop)
			t.k.release(gates...)
			expectSucceeded(t, nil)
			Expect(t.tcp().Annotations).NotTo(HaveKey(kamajiv1alpha1.AnnotationPaused))
		},
		Entry("DrainingControlPlane", kdcv1alpha1.PhaseDrainingControlPlane, []gate{gateCPDelete}),
		Entry("StoppingEtcd", kdcv1alpha1.PhaseStoppingEtcd, []gate{gateEtcdDelete}),
		Entry("RestoringSnapshot", kdcv1alpha1.PhaseRestoringSnapshot, []gate{gateRestore}),
		Entry("StartingControlPlane", kdcv1alpha1.PhaseStartingControlPlane, []gate{gateCPReady}),
	)
})

// eventReasons are the reasons of the Events on the cluster.
func eventReasons(t *tenant) []string {
	GinkgoHelper()
	var list corev1.EventList
	Expect(env.Client.List(ctx, &list, client.InNamespace(t.ns))).To(Succeed())
	var reasons []string
	for _, e := range list.Items {
		if e.InvolvedObject.Name == clusterName {
			reasons = append(reasons, e.Reason)
		}
	}
	return reasons
}
