package restore

import (
	"bytes"
	"context"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/plugin"
	"kube-dc.com/etcd-backup/test/framework"
)

// The manual restore (`kubectl kdc restore --manual`) runs the controller's steps from the
// operator's machine while the manager is down: these specs never start the manager. The plugin
// runs in-process against envtest with the admin kubeconfig; the fake kubelet runs the Jobs' and
// the workloads' pods, kube-controller-manager everything else.

// manualResult is one run of the plugin.
type manualResult struct {
	out, errOut string
	err         error
}

// runManual runs `kubectl kdc restore prod -n NS --from key --manual ARGS...` in-process.
func runManual(t *tenant, key string, args ...string) manualResult {
	return runManualCtx(ctx, t, key, args...)
}

// runManualCtx is runManual with the command's context (cancelling it is Ctrl-C).
func runManualCtx(ctx context.Context, t *tenant, key string, args ...string) manualResult {
	var out, errOut bytes.Buffer
	cmd := plugin.NewCommand(genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: &out, ErrOut: &errOut})
	cmd.SetArgs(append([]string{"restore", clusterName, "-n", t.ns, "--from", key, "--manual", "--kubeconfig", env.Kubeconfig}, args...))
	err := cmd.ExecuteContext(ctx)
	GinkgoWriter.Printf("kubectl kdc restore --manual:\n%s%s", out.String(), errOut.String())
	return manualResult{out: out.String(), errOut: errOut.String(), err: err}
}

// startManual runs runManualCtx in the background; the channel delivers its result.
func startManual(ctx context.Context, t *tenant, key string, args ...string) <-chan manualResult {
	ch := make(chan manualResult, 1)
	go func() {
		defer GinkgoRecover()
		ch <- runManualCtx(ctx, t, key, args...)
	}()
	return ch
}

// phaseOrder returns the phases in the order the output's lines first name them.
func phaseOrder(out string) []string {
	var seen []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || !kdcv1alpha1.RestorePhase(f[2]).Valid() {
			continue
		}
		if len(seen) == 0 || seen[len(seen)-1] != f[2] {
			seen = append(seen, f[2])
		}
	}
	return seen
}

// untouched records what a refused or pre-flight-failed manual restore must not change.
type untouched struct {
	cpGeneration, etcdGeneration int64
	cpPods, etcdPods             []string
	annotations                  map[string]string
}

func (t *tenant) snapshotUntouched() untouched {
	GinkgoHelper()
	return untouched{
		cpGeneration:   t.deployment().Generation,
		etcdGeneration: t.statefulSet().Generation,
		cpPods:         t.podNames(kdcv1alpha1.ControlPlaneDeploymentName(clusterName)),
		etcdPods:       t.podNames(kdcv1alpha1.EtcdStatefulSetName(dsName)),
		annotations:    t.cluster().Annotations,
	}
}

func (t *tenant) expectUntouched(u untouched) {
	GinkgoHelper()
	d, sts := t.deployment(), t.statefulSet()
	Expect(d.Generation).To(Equal(u.cpGeneration), "C-cp was changed")
	Expect(*d.Spec.Replicas).To(BeEquivalentTo(cpReplicas))
	Expect(d.Spec.Template.Annotations).NotTo(HaveKey(kdcv1alpha1.AnnotationRestartedAt))
	Expect(sts.Generation).To(Equal(u.etcdGeneration), "DS-etcd was changed")
	Expect(*sts.Spec.Replicas).To(BeEquivalentTo(1))
	Expect(t.podNames(kdcv1alpha1.ControlPlaneDeploymentName(clusterName))).To(ConsistOf(u.cpPods))
	Expect(t.podNames(kdcv1alpha1.EtcdStatefulSetName(dsName))).To(ConsistOf(u.etcdPods))
	Expect(t.cluster().Annotations).To(Equal(u.annotations))
}

// jobNames are the names of the namespace's Jobs not being deleted.
func (t *tenant) jobNames() []string {
	GinkgoHelper()
	var names []string
	for _, j := range t.jobs() {
		if j.DeletionTimestamp.IsZero() {
			names = append(names, j.Name)
		}
	}
	return names
}

// createLease creates the leader-election Lease ns/name held by holder, renewed at renewed.
func createLease(ns, name, holder string, renewed time.Time) {
	GinkgoHelper()
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(holder),
			LeaseDurationSeconds: ptr.To[int32](15),
			AcquireTime:          &metav1.MicroTime{Time: renewed},
			RenewTime:            &metav1.MicroTime{Time: renewed},
		},
	}
	Expect(env.Client.Create(ctx, lease)).To(Succeed())
	DeferCleanup(func() { Expect(client.IgnoreNotFound(env.Client.Delete(ctx, lease))).To(Succeed()) })
}

var _ = Describe("Manual restore", func() {
	var t *tenant
	BeforeEach(func() {
		t = newTenant()
	})

	It("restores without the manager, printing every phase, and brings everything back with fresh pods", func() {
		// The manager ran once and is gone: its Lease (default namespace and name) expired.
		Expect(client.IgnoreAlreadyExists(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kdc-etcd-backup-system"}}))).To(Succeed())
		createLease("kdc-etcd-backup-system", "kdc-etcd-backup-manager", "manager-7d9f_0b1c", time.Now().Add(-time.Hour))
		By("as a user with only the operator and manual-restore ClusterRoles of manifests/rbac")
		Expect(env.ApplyOperatorRoles(ctx)).To(Succeed())
		for _, b := range []struct{ role, ns string }{
			{framework.OperatorClusterRole, t.ns}, {framework.ManualRestoreClusterRole, t.ns},
			{framework.ManualRestoreClusterRole, "kdc-etcd-backup-system"},
		} {
			Expect(env.BindClusterRole(ctx, "mallory", b.role, b.ns)).To(Succeed())
		}
		mallory, err := env.WriteKubeconfig("mallory", nil)
		Expect(err).NotTo(HaveOccurred())
		malloryCfg, err := env.UserConfig("mallory", nil)
		Expect(err).NotTo(HaveOccurred())
		malloryClient, err := client.New(malloryCfg, client.Options{Scheme: framework.Scheme})
		Expect(err).NotTo(HaveOccurred())
		// RBAC is eventually consistent in the API server's authorizer cache.
		Eventually(func() error {
			return malloryClient.Get(ctx, client.ObjectKey{Namespace: "kdc-etcd-backup-system", Name: "kdc-etcd-backup-manager"}, &coordinationv1.Lease{})
		}).Should(Succeed())
		podsBefore := t.podNames(kdcv1alpha1.ControlPlaneDeploymentName(clusterName))
		annotationsBefore := t.cluster().Annotations
		t.k.hold(gateRestore)
		done := startManual(ctx, t, snapshotKey, "--timeout=60s", "--kubeconfig", mallory)

		By("holding the restore Job, the control plane and etcd are down and the Job is the controller's")
		restore := &batchv1.Job{}
		Eventually(func(g Gomega) {
			g.Expect(env.Client.Get(ctx, t.key(kdcv1alpha1.RestoreJobName(clusterName)), restore)).To(Succeed())
		}).Should(Succeed())
		Expect(*t.deployment().Spec.Replicas).To(BeEquivalentTo(0))
		Expect(t.podNames(kdcv1alpha1.ControlPlaneDeploymentName(clusterName))).To(BeEmpty())
		Expect(*t.statefulSet().Spec.Replicas).To(BeEquivalentTo(0))
		Expect(t.podNames(kdcv1alpha1.EtcdStatefulSetName(dsName))).To(BeEmpty())
		ctr := restore.Spec.Template.Spec.Containers[0]
		Expect(ctr.Image).To(Equal(testImage), "the image of the backup CronJob")
		Expect(ctr.Args).To(ContainElements(
			"restore", "--key="+snapshotKey, "--name=ds-etcd-0", "--initial-cluster-token=kamaji",
			"--bump-revision=1000000000", "--mark-compacted=true", "--data-dir="+kdcv1alpha1.EtcdDataDir,
			"--bucket="+t.ns+"-managed-k8s-backups", "--s3-endpoint=http://rgw.rook-ceph.svc"))
		Expect(restore.Spec.Template.Spec.Volumes).To(ContainElement(HaveField("VolumeSource.PersistentVolumeClaim.ClaimName", kdcv1alpha1.EtcdDataPVCName(dsName))))
		Expect(restore.Annotations).To(HaveKey(kdcv1alpha1.AnnotationRestoreAttempt))
		verify := &batchv1.Job{}
		Expect(env.Client.Get(ctx, t.key(kdcv1alpha1.VerifyJobName(clusterName)), verify)).To(Succeed())
		Expect(verify.Spec.Template.Spec.Containers[0].Args).To(ContainElements("verify", "--key="+snapshotKey))
		Expect(verify.Annotations[kdcv1alpha1.AnnotationRestoreAttempt]).To(Equal(restore.Annotations[kdcv1alpha1.AnnotationRestoreAttempt]))

		By("the manual restore holds the manager's Lease, so a manager started meanwhile waits")
		lease := &coordinationv1.Lease{}
		leaseKey := client.ObjectKey{Namespace: "kdc-etcd-backup-system", Name: "kdc-etcd-backup-manager"}
		Expect(env.Client.Get(ctx, leaseKey, lease)).To(Succeed())
		Expect(*lease.Spec.HolderIdentity).To(HavePrefix("kubectl-kdc-manual-restore_"))
		Expect(lease.Spec.RenewTime.Time).To(BeTemporally("~", time.Now(), 15*time.Second))

		By("releasing the restore Job, the manual restore completes")
		t.k.release(gateRestore)
		var res manualResult
		Eventually(done).Should(Receive(&res))
		Expect(res.err).NotTo(HaveOccurred())
		Expect(phaseOrder(res.out)).To(Equal([]string{
			string(kdcv1alpha1.PhaseValidating), string(kdcv1alpha1.PhaseDrainingControlPlane), string(kdcv1alpha1.PhaseStoppingEtcd),
			string(kdcv1alpha1.PhaseRestoringSnapshot), string(kdcv1alpha1.PhaseStartingEtcd), string(kdcv1alpha1.PhaseStartingControlPlane),
			string(kdcv1alpha1.PhaseSucceeded),
		}))
		Expect(res.out).To(ContainSubstring(`Lease kdc-etcd-backup-system/kdc-etcd-backup-manager of "manager-7d9f_0b1c" expired`))
		Expect(res.out).To(ContainSubstring("kubectl scale -n " + t.ns + " deployment/prod-cp --replicas=2"))
		Expect(res.out).To(ContainSubstring("kubectl scale -n " + t.ns + " statefulset/ds-etcd --replicas=1"))
		Expect(res.out).To(ContainSubstring("Job " + t.ns + "/prod-etcd-verify succeeded"))
		Expect(res.out).To(ContainSubstring("Job " + t.ns + "/prod-etcd-restore succeeded"))
		Expect(res.out).To(ContainSubstring(`Restore from "` + snapshotKey + `" complete`))
		Expect(res.out).To(ContainSubstring("Released the manager's Lease kdc-etcd-backup-system/kdc-etcd-backup-manager"))
		Expect(env.Client.Get(ctx, leaseKey, lease)).To(Succeed())
		Expect(*lease.Spec.HolderIdentity).To(BeEmpty(), "released like a leader that stops")
		// Every line starts with the time and the elapsed time.
		for _, line := range strings.Split(strings.TrimSpace(res.out), "\n") {
			if strings.HasPrefix(line, " ") {
				continue // the undo commands
			}
			Expect(line).To(MatchRegexp(`^\d\d:\d\d:\d\d +\+[0-9.hms]+ `))
		}

		By("etcd and the control plane run as before, the control plane with fresh pods")
		d := t.deployment()
		Expect(*d.Spec.Replicas).To(BeEquivalentTo(cpReplicas))
		Expect(d.Spec.Template.Annotations).To(HaveKeyWithValue(kdcv1alpha1.AnnotationRestartedAt, restore.Annotations[kdcv1alpha1.AnnotationRestoreAttempt]))
		Expect(*t.statefulSet().Spec.Replicas).To(BeEquivalentTo(1))
		t.waitHealthy()
		Eventually(func(g Gomega) {
			now := t.podNames(kdcv1alpha1.ControlPlaneDeploymentName(clusterName))
			g.Expect(now).To(HaveLen(cpReplicas))
			for _, p := range now {
				g.Expect(podsBefore).NotTo(ContainElement(p), "a control-plane pod survived the restore")
			}
		}).Should(Succeed())

		By("the outcome is recorded like the controller's, without writing the KdcCluster's metadata")
		c := t.cluster()
		Expect(restoreReady(c)).To(BeComparableTo(succeeded))
		Expect(c.Status.LatestRestoreKey).To(Equal(snapshotKey))
		Expect(c.Status.LatestRestoreTime).NotTo(BeNil())
		Expect(c.Annotations).To(Equal(annotationsBefore))
		Eventually(t.jobNames).Should(And(
			Not(ContainElement(kdcv1alpha1.RestoreJobName(clusterName))),
			Not(ContainElement(kdcv1alpha1.VerifyJobName(clusterName))),
			ContainElement(HavePrefix(kdcv1alpha1.BackupCronJobName(clusterName)+"-r"))))
	})

	It("refuses while the manager holds its leader-election Lease", func() {
		before := t.snapshotUntouched()
		createLease(t.ns, "other-manager", "kdc-etcd-backup-manager-5c6d7_1234", time.Now())
		res := runManual(t, snapshotKey, "--manager-namespace", t.ns, "--leader-election-id", "other-manager")
		Expect(res.err).To(MatchError(And(
			ContainSubstring("the manager is running"),
			ContainSubstring(`Lease `+t.ns+`/other-manager is held by "kdc-etcd-backup-manager-5c6d7_1234"`),
			ContainSubstring("kubectl annotate kdccluster -n "+t.ns+" prod kube-dc.com/restore-from="+snapshotKey),
			ContainSubstring("stop the manager"))))
		t.expectUntouched(before)
		Expect(t.jobNames()).To(BeEmpty())
	})

	DescribeTable("refuses, before touching anything, what the controller would reject",
		func(setup func(t *tenant), key string, parts ...string) {
			if setup != nil {
				setup(t)
			}
			before := t.snapshotUntouched()
			res := runManual(t, key)
			Expect(res.err).To(HaveOccurred())
			for _, p := range parts {
				Expect(res.err.Error()).To(ContainSubstring(p))
			}
			t.expectUntouched(before)
			Expect(t.jobNames()).To(BeEmpty())
			Expect(restoreReady(t.cluster())).To(BeZero(), "no RestoreReady written")
		},
		Entry("ForeignKey", nil, "other/other-20260101T020000Z.db",
			"nothing was changed", "ForeignKey", `key belongs to another cluster "other"`),
		Entry("InvalidKey", nil, "prod/../prod-20260101T020000Z.db", "nothing was changed", "InvalidKey"),
		Entry("MultiReplicaUnsupported", func(t *tenant) {
			ds := &kdcv1alpha1.KdcClusterDatastore{}
			Expect(env.Client.Get(ctx, t.key(dsName), ds)).To(Succeed())
			ds.Spec.Etcd.Replicas = 3
			Expect(env.Client.Update(ctx, ds)).To(Succeed())
		}, snapshotKey, "nothing was changed", "MultiReplicaUnsupported", "runs 3 etcd replicas"),
		Entry("no image: no backup CronJob and no --image", func(t *tenant) {
			Expect(env.Client.Delete(ctx, &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns, Name: kdcv1alpha1.BackupCronJobName(clusterName)}})).To(Succeed())
		}, snapshotKey, "no image for the restore Jobs", "pass --image"),
		Entry("RestoreInProgress: the manager's restore is recorded", func(t *tenant) {
			c := t.cluster()
			c.Annotations = map[string]string{
				kdcv1alpha1.AnnotationRestoreFrom:  snapshotKey,
				kdcv1alpha1.AnnotationRestoreState: string(kdcv1alpha1.PhaseStoppingEtcd),
			}
			Expect(env.Client.Update(ctx, c)).To(Succeed())
		}, snapshotKey, "RestoreInProgress", "in phase StoppingEtcd"),
	)

	It("leaves C-cp and DS-etcd untouched when the verify Job fails", func() {
		before := t.snapshotUntouched()
		t.k.failJob(kdcv1alpha1.VerifyJobName(clusterName), 9)
		res := runManual(t, snapshotKey)
		Expect(res.err).To(MatchError(And(
			HavePrefix(`Restore from "`+snapshotKey+`" failed (SnapshotUnavailable): `),
			ContainSubstring("scripted failure of prod-etcd-verify"),
			ContainSubstring("nothing was changed"))))
		Expect(phaseOrder(res.out)).To(Equal([]string{string(kdcv1alpha1.PhaseValidating), string(kdcv1alpha1.PhaseFailed)}))
		Expect(res.out).NotTo(ContainSubstring("Recovering"))
		t.expectUntouched(before)
		Expect(t.jobNames()).To(ConsistOf(kdcv1alpha1.VerifyJobName(clusterName)))
		cond := restoreReady(t.cluster())
		Expect(cond.Status).To(Equal(metav1.ConditionFalse))
		Expect(cond.Message).To(Equal(res.err.Error()))
	})

	It("rolls back and brings the cluster back when etcd does not start on the restored data", func() {
		t.k.hold(gateEtcdReady)
		done := startManual(ctx, t, snapshotKey, "--timeout=10s")
		// etcd on the restored data never becomes ready; once the rollback Job swapped the
		// previous data back, it does.
		Eventually(func() error {
			return env.Client.Get(ctx, t.key(kdcv1alpha1.RollbackJobName(clusterName)), &batchv1.Job{})
		}).Should(Succeed())
		t.k.release(gateEtcdReady)
		var res manualResult
		Eventually(done).Should(Receive(&res))
		Expect(res.err).To(MatchError(And(
			HavePrefix(`Restore from "`+snapshotKey+`" failed (EtcdStartFailed): `),
			ContainSubstring("did not become ready on the restored data within 10s"),
			ContainSubstring("swapped back (rollback)"))))
		Expect(res.out).To(ContainSubstring("Rolled back"))
		Expect(phaseOrder(res.out)).To(HaveExactElements(
			string(kdcv1alpha1.PhaseValidating), string(kdcv1alpha1.PhaseDrainingControlPlane), string(kdcv1alpha1.PhaseStoppingEtcd),
			string(kdcv1alpha1.PhaseRestoringSnapshot), string(kdcv1alpha1.PhaseStartingEtcd), string(kdcv1alpha1.PhaseFailed)))
		t.waitHealthy()
		Expect(*t.deployment().Spec.Replicas).To(BeEquivalentTo(cpReplicas))
		Expect(*t.statefulSet().Spec.Replicas).To(BeEquivalentTo(1))
		Expect(t.jobNames()).To(ConsistOf(kdcv1alpha1.VerifyJobName(clusterName), kdcv1alpha1.RestoreJobName(clusterName), kdcv1alpha1.RollbackJobName(clusterName)))
		Expect(restoreReady(t.cluster()).Message).To(Equal(res.err.Error()))
	})

	It("brings etcd and the control plane back on the old data when interrupted (Ctrl-C) during the restore Job", func() {
		podsBefore := t.podNames(kdcv1alpha1.ControlPlaneDeploymentName(clusterName))
		t.k.hold(gateRestore)
		rctx, interrupt := context.WithCancel(ctx)
		defer interrupt()
		done := startManual(rctx, t, snapshotKey, "--timeout=60s")
		Eventually(func() error {
			return env.Client.Get(ctx, t.key(kdcv1alpha1.RestoreJobName(clusterName)), &batchv1.Job{})
		}).Should(Succeed())
		interrupt()
		var res manualResult
		Eventually(done).Should(Receive(&res))
		Expect(res.err).To(MatchError(And(
			HavePrefix(`Restore from "`+snapshotKey+`" failed (Cancelled): interrupted in RestoringSnapshot`),
			ContainSubstring("the data was not swapped; etcd and the control plane were started again on the old data"))))
		Expect(res.out).To(ContainSubstring("Stopping the unfinished restore Job"))
		// The unfinished restore Job is gone (its pod never ran), etcd and the control plane run.
		Expect(t.jobNames()).To(ConsistOf(kdcv1alpha1.VerifyJobName(clusterName)))
		t.waitHealthy()
		Expect(*t.deployment().Spec.Replicas).To(BeEquivalentTo(cpReplicas))
		Expect(*t.statefulSet().Spec.Replicas).To(BeEquivalentTo(1))
		for _, p := range t.podNames(kdcv1alpha1.ControlPlaneDeploymentName(clusterName)) {
			Expect(podsBefore).NotTo(ContainElement(p))
		}
		Expect(restoreReady(t.cluster()).Message).To(Equal(res.err.Error()))
	})
})
