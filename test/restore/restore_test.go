package restore

import (
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/engine"
)

// fullWalk is the restore-state sequence of a successful restore ("" at the end: cleared).
var fullWalk = []string{
	string(kdcv1alpha1.PhaseValidating), string(kdcv1alpha1.PhaseDrainingControlPlane), string(kdcv1alpha1.PhaseStoppingEtcd),
	string(kdcv1alpha1.PhaseRestoringSnapshot), string(kdcv1alpha1.PhaseStartingEtcd), string(kdcv1alpha1.PhaseStartingControlPlane), "",
}

var succeeded = metav1.Condition{Type: kdcv1alpha1.ConditionRestoreReady, Status: metav1.ConditionTrue,
	Reason: kdcv1alpha1.ReasonRestoreSucceeded, Message: `Restore from "` + snapshotKey + `" complete`, ObservedGeneration: 1}

// expectSucceeded waits for the end of a successful restore and checks everything docs/restore.md
// promises about it.
func expectSucceeded(t *tenant, podsBefore []string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		c := t.cluster()
		g.Expect(restoreReady(c)).To(BeComparableTo(succeeded))
		g.Expect(restoreAnnotations(c)).To(BeEmpty())
		g.Expect(c.Status.LatestRestoreKey).To(Equal(snapshotKey))
		g.Expect(c.Status.LatestRestoreTime).NotTo(BeNil())
	}).Should(Succeed())
	// The restore Job is deleted; a fresh backup Job from the CronJob runs.
	Eventually(func(g Gomega) {
		var names []string
		for _, j := range t.jobs() {
			if j.DeletionTimestamp.IsZero() {
				names = append(names, j.Name)
			}
		}
		g.Expect(names).NotTo(ContainElement(kdcv1alpha1.RestoreJobName(clusterName)))
		g.Expect(names).To(ContainElement(HavePrefix(kdcv1alpha1.BackupCronJobName(clusterName) + "-r")))
	}).Should(Succeed())
	// Etcd and the control plane run as before, the control plane with fresh pods.
	d := t.deployment()
	Expect(*d.Spec.Replicas).To(BeEquivalentTo(cpReplicas))
	if metav1.GetControllerOf(d) == nil {
		// Under Kamaji the scale-up after the drain alone makes the fresh pods (docs/restore.md).
		Expect(d.Spec.Template.Annotations).To(HaveKey(kdcv1alpha1.AnnotationRestartedAt))
	}
	Expect(*t.statefulSet().Spec.Replicas).To(BeEquivalentTo(1))
	t.waitHealthy()
	if podsBefore != nil {
		Eventually(func(g Gomega) {
			now := t.podNames(kdcv1alpha1.ControlPlaneDeploymentName(clusterName))
			g.Expect(now).To(HaveLen(cpReplicas))
			for _, p := range now {
				g.Expect(podsBefore).NotTo(ContainElement(p), "a control-plane pod survived the restore")
			}
		}).Should(Succeed())
	}
}

var _ = Describe("Restore", func() {
	var t *tenant
	BeforeEach(func() {
		t = newTenant()
	})

	It("walks every phase, changing exactly what each phase says", func() {
		m := startRestoreManager(engine.Timeouts{})
		DeferCleanup(m.stop)
		phases := t.recordPhases()
		podsBefore := t.podNames(kdcv1alpha1.ControlPlaneDeploymentName(clusterName))
		t.k.hold(gateRestore)
		t.requestRestore(snapshotKey)

		By("holding the restore Job, everything before it has happened and is recorded")
		Eventually(func(g Gomega) {
			g.Expect(t.cluster().Annotations).To(HaveKeyWithValue(kdcv1alpha1.AnnotationRestoreState, string(kdcv1alpha1.PhaseRestoringSnapshot)))
			g.Expect(t.cluster().Annotations).To(HaveKey(kdcv1alpha1.AnnotationRestoreJobUID))
		}).Should(Succeed())
		c := t.cluster()
		Expect(c.Annotations).To(HaveKeyWithValue(kdcv1alpha1.AnnotationRestoreControlPlaneReplicas, "2"))
		Expect(c.Annotations).To(HaveKeyWithValue(kdcv1alpha1.AnnotationRestoreEtcdReplicas, "1"))
		Expect(c.Annotations).To(HaveKey(kdcv1alpha1.AnnotationRestoreStartedAt))
		Expect(restoreReady(c).Status).To(Equal(metav1.ConditionUnknown))
		Expect(*t.deployment().Spec.Replicas).To(BeEquivalentTo(0))
		Expect(t.podNames(kdcv1alpha1.ControlPlaneDeploymentName(clusterName))).To(BeEmpty())
		Expect(*t.statefulSet().Spec.Replicas).To(BeEquivalentTo(0))
		Expect(t.podNames(kdcv1alpha1.EtcdStatefulSetName(dsName))).To(BeEmpty())
		// The controller takes the verify Job's outcome from its pod; kube-controller-manager
		// counts it on the Job a moment later.
		Eventually(func(g Gomega) {
			verify := &batchv1.Job{}
			g.Expect(env.Client.Get(ctx, t.key(kdcv1alpha1.VerifyJobName(clusterName)), verify)).To(Succeed())
			g.Expect(verify.Status.Succeeded).To(BeEquivalentTo(1))
		}).Should(Succeed())
		restore := &batchv1.Job{}
		Expect(env.Client.Get(ctx, t.key(kdcv1alpha1.RestoreJobName(clusterName)), restore)).To(Succeed())
		Expect(string(restore.UID)).To(Equal(c.Annotations[kdcv1alpha1.AnnotationRestoreJobUID]))
		ctr := restore.Spec.Template.Spec.Containers[0]
		Expect(ctr.Image).To(Equal(testImage))
		Expect(ctr.Args).To(ContainElements(
			"--key="+snapshotKey, "--name=ds-etcd-0", "--initial-cluster-token=kamaji",
			"--initial-advertise-peer-urls=https://ds-etcd-0.ds-etcd."+t.ns+".svc:2380",
			"--initial-cluster=ds-etcd-0=https://ds-etcd-0.ds-etcd."+t.ns+".svc:2380",
			"--bump-revision=1000000000", "--mark-compacted=true", "--data-dir="+kdcv1alpha1.EtcdDataDir,
			"--bucket="+t.ns+"-managed-k8s-backups", "--s3-endpoint=http://rgw.rook-ceph.svc"))
		Expect(restore.Spec.Template.Spec.Volumes).To(ContainElement(HaveField("VolumeSource.PersistentVolumeClaim.ClaimName", kdcv1alpha1.EtcdDataPVCName(dsName))))
		Expect(*ctr.SecurityContext.ReadOnlyRootFilesystem).To(BeTrue())
		Expect(*restore.Spec.Template.Spec.SecurityContext.RunAsNonRoot).To(BeTrue())

		By("releasing the restore Job, the restore completes")
		t.k.release(gateRestore)
		expectSucceeded(t, podsBefore)
		Eventually(phases.get).Should(Equal(fullWalk))

		By("a second annotation runs a second restore")
		t.requestRestore(snapshotKey)
		Eventually(func(g Gomega) {
			g.Expect(t.cluster().Annotations).To(HaveKey(kdcv1alpha1.AnnotationRestoreStartedAt))
		}).Should(Succeed())
		expectSucceeded(t, nil)
		Eventually(phases.get).Should(Equal(slices.Concat(fullWalk, fullWalk)))
	})
})

// expectFailed waits for the RestoreReady of a failed restore whose message contains all of parts.
func expectFailed(t *tenant, key string, parts ...string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		c := t.cluster()
		cond := restoreReady(c)
		g.Expect(cond.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(cond.Reason).To(Equal(kdcv1alpha1.ReasonRestoreFailed))
		g.Expect(cond.Message).To(HavePrefix(`Restore from "` + key + `" failed (`))
		for _, p := range parts {
			g.Expect(cond.Message).To(ContainSubstring(p))
		}
		g.Expect(restoreAnnotations(c)).To(BeEmpty())
		g.Expect(c.Status.LatestRestoreKey).To(BeEmpty())
	}).Should(Succeed())
}

var _ = Describe("Restore failures", func() {
	var t *tenant
	BeforeEach(func() {
		t = newTenant()
	})

	// short makes the deadlines of the phases a failure case waits out short.
	short := engine.Timeouts{EtcdStart: 3 * time.Second, ControlPlaneStart: 3 * time.Second, Recovery: 30 * time.Second}

	DescribeTable("each reason brings the cluster back and says what happened to the data",
		func(setup func(t *tenant), key string, wantTouched bool, wantJobs []string, parts ...string) {
			if setup != nil {
				setup(t)
			}
			m := startRestoreManager(short)
			DeferCleanup(m.stop)
			phases := t.recordPhases()
			t.requestRestore(key)
			expectFailed(t, key, parts...)
			// The kubelet stops holding the rollout (ControlPlaneStartFailed): it comes up.
			t.k.release(gateCPReady)
			t.waitHealthy()
			Expect(*t.deployment().Spec.Replicas).To(BeEquivalentTo(cpReplicas))
			Expect(*t.statefulSet().Spec.Replicas).To(BeEquivalentTo(1))
			// An untouched cluster never left Validating and its control plane was not rolled.
			if !wantTouched {
				Expect(phases.get()).To(Equal([]string{string(kdcv1alpha1.PhaseValidating), ""}))
				Expect(t.deployment().Spec.Template.Annotations).NotTo(HaveKey(kdcv1alpha1.AnnotationRestartedAt))
			}
			var names []string
			for _, j := range t.jobs() {
				if j.DeletionTimestamp.IsZero() {
					names = append(names, j.Name)
				}
			}
			Expect(names).To(ConsistOf(wantJobs))
		},
		Entry("ForeignKey (admitted while the webhook was absent)", nil, "other/other-20260101T020000Z.db", false, nil,
			"(ForeignKey)", "nothing was changed"),
		Entry("MultiReplicaUnsupported", func(t *tenant) {
			ds := &kdcv1alpha1.KdcClusterDatastore{}
			Expect(env.Client.Get(ctx, t.key(dsName), ds)).To(Succeed())
			ds.Spec.Etcd.Replicas = 3
			Expect(env.Client.Update(ctx, ds)).To(Succeed())
		}, snapshotKey, false, nil, "(MultiReplicaUnsupported)", "nothing was changed"),
		Entry("SnapshotUnavailable: the verify Job finds the snapshot corrupt", func(t *tenant) {
			t.k.failJob(kdcv1alpha1.VerifyJobName(clusterName), 9)
		}, snapshotKey, false, []string{"prod-etcd-verify"}, "(SnapshotUnavailable)", "scripted failure of prod-etcd-verify", "nothing was changed"),
		Entry("RestoreJobFailed: the old data comes back", func(t *tenant) {
			t.k.failJob(kdcv1alpha1.RestoreJobName(clusterName), 9)
		}, snapshotKey, true, []string{"prod-etcd-verify", "prod-etcd-restore"}, "(RestoreJobFailed)", "started again on the old data"),
		Entry("EtcdStartFailed: rollback to the previous data", func(t *tenant) {
			t.k.etcdBad = true
		}, snapshotKey, true, []string{"prod-etcd-verify", "prod-etcd-restore", "prod-etcd-rollback"},
			"(EtcdStartFailed)", "swapped back (rollback)"),
		Entry("ControlPlaneStartFailed: the restored data is kept", func(t *tenant) {
			t.k.hold(gateCPReady)
		}, snapshotKey, true, []string{"prod-etcd-verify", "prod-etcd-restore"}, "(ControlPlaneStartFailed)", "no rollback"),
	)
})

var _ = Describe("Restore across manager restarts", func() {
	var t *tenant
	BeforeEach(func() {
		t = newTenant()
	})

	// inPhase waits until the restore is in phase (and, with failure, recovering from one).
	inPhase := func(phase kdcv1alpha1.RestorePhase, failure bool) func(g Gomega) {
		return func(g Gomega) {
			a := t.cluster().Annotations
			g.Expect(a).To(HaveKeyWithValue(kdcv1alpha1.AnnotationRestoreState, string(phase)))
			if failure {
				g.Expect(a).To(HaveKey(kdcv1alpha1.AnnotationRestoreFailure))
			}
		}
	}

	DescribeTable("a manager killed inside a phase is replaced by one that finishes the restore",
		func(phase kdcv1alpha1.RestorePhase, gates []gate, extra func(g Gomega)) {
			m1 := startRestoreManager(engine.Timeouts{})
			podsBefore := t.podNames(kdcv1alpha1.ControlPlaneDeploymentName(clusterName))
			t.k.hold(gates...)
			t.requestRestore(snapshotKey)
			Eventually(inPhase(phase, false)).Should(Succeed())
			if extra != nil {
				Eventually(extra).Should(Succeed())
			}
			m1.stop()
			m2 := startRestoreManager(engine.Timeouts{})
			DeferCleanup(m2.stop)
			t.k.release(gates...)
			expectSucceeded(t, podsBefore)
		},
		Entry("Validating", kdcv1alpha1.PhaseValidating, []gate{gateVerify}, func(g Gomega) {
			g.Expect(env.Client.Get(ctx, t.key(kdcv1alpha1.VerifyJobName(clusterName)), &batchv1.Job{})).To(Succeed())
		}),
		Entry("DrainingControlPlane", kdcv1alpha1.PhaseDrainingControlPlane, []gate{gateCPDelete}, func(g Gomega) {
			g.Expect(*t.deployment().Spec.Replicas).To(BeEquivalentTo(0))
		}),
		Entry("StoppingEtcd", kdcv1alpha1.PhaseStoppingEtcd, []gate{gateEtcdDelete}, func(g Gomega) {
			g.Expect(*t.statefulSet().Spec.Replicas).To(BeEquivalentTo(0))
		}),
		Entry("RestoringSnapshot", kdcv1alpha1.PhaseRestoringSnapshot, []gate{gateRestore}, func(g Gomega) {
			g.Expect(t.cluster().Annotations).To(HaveKey(kdcv1alpha1.AnnotationRestoreJobUID))
		}),
		Entry("StartingEtcd", kdcv1alpha1.PhaseStartingEtcd, []gate{gateEtcdReady}, func(g Gomega) {
			g.Expect(*t.statefulSet().Spec.Replicas).To(BeEquivalentTo(1))
		}),
		Entry("StartingControlPlane", kdcv1alpha1.PhaseStartingControlPlane, []gate{gateCPReady}, func(g Gomega) {
			g.Expect(*t.deployment().Spec.Replicas).To(BeEquivalentTo(cpReplicas))
		}),
	)

	It("Succeeded: a manager restarted after a restore changes nothing", func() {
		m1 := startRestoreManager(engine.Timeouts{})
		t.requestRestore(snapshotKey)
		expectSucceeded(t, nil)
		before := t.cluster()
		jobs := len(t.jobs())
		m1.stop()
		m2 := startRestoreManager(engine.Timeouts{})
		DeferCleanup(m2.stop)
		Consistently(func(g Gomega) {
			c := t.cluster()
			g.Expect(restoreAnnotations(c)).To(BeEmpty())
			g.Expect(c.Status.LatestRestoreTime).To(Equal(before.Status.LatestRestoreTime))
			g.Expect(t.jobs()).To(HaveLen(jobs))
		}, 3*time.Second).Should(Succeed())
	})

	It("Failed: a manager killed while bringing the cluster back finishes the recovery", func() {
		m1 := startRestoreManager(engine.Timeouts{})
		t.k.failJob(kdcv1alpha1.RestoreJobName(clusterName), 9)
		t.k.hold(gateEtcdReady)
		t.requestRestore(snapshotKey)
		Eventually(inPhase(kdcv1alpha1.PhaseRestoringSnapshot, true)).Should(Succeed())
		Eventually(func(g Gomega) { g.Expect(*t.statefulSet().Spec.Replicas).To(BeEquivalentTo(1)) }).Should(Succeed())
		m1.stop()
		m2 := startRestoreManager(engine.Timeouts{})
		DeferCleanup(m2.stop)
		t.k.release(gateEtcdReady)
		expectFailed(t, snapshotKey, "(RestoreJobFailed)", "started again on the old data")
		t.waitHealthy()
		Expect(*t.deployment().Spec.Replicas).To(BeEquivalentTo(cpReplicas))
	})
})
