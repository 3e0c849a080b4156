package backup

import (
	"fmt"
	"strings"
	"time"

	"github.com/google/go-cmp/cmp/cmpopts"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	obcv1alpha1 "kube-dc.com/etcd-backup/api/objectbucket/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/test/framework"
)

// ignoreVolatile compares a condition by type, status and reason.
var ignoreVolatile = cmpopts.IgnoreFields(metav1.Condition{}, "Message", "LastTransitionTime", "ObservedGeneration")

func condition(status metav1.ConditionStatus, reason string) metav1.Condition {
	return metav1.Condition{Type: kdcv1alpha1.ConditionBackupReady, Status: status, Reason: reason}
}

var _ = Describe("Backup controller", func() {
	var ns string

	BeforeEach(func() {
		var err error
		ns, err = env.NewNamespace(ctx, "backup")
		Expect(err).NotTo(HaveOccurred())
	})

	It("keeps the CronJob present exactly while every gate is open", func() {
		c := createCluster(ns, func(c *kdcv1alpha1.KdcCluster) { c.Spec.Backup.Schedule = "*/30 * * * *" })
		expectGate := func(reason, msg string) {
			GinkgoHelper()
			Eventually(func(g Gomega) {
				cond := backupReady(g, c)
				g.Expect(cond).To(BeComparableTo(condition(metav1.ConditionFalse, reason), ignoreVolatile))
				g.Expect(cond.Message).To(ContainSubstring(msg))
				err := env.Client.Get(ctx, framework.BackupCronJobKey(c), &batchv1.CronJob{})
				g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "CronJob exists: %v", err)
			}).Should(Succeed())
		}
		expectCronJob := func() *batchv1.CronJob {
			GinkgoHelper()
			cj := &batchv1.CronJob{}
			Eventually(func(g Gomega) {
				g.Expect(env.Client.Get(ctx, framework.BackupCronJobKey(c), cj)).To(Succeed())
				g.Expect(cj.DeletionTimestamp).To(BeNil())
				g.Expect(backupReady(g, c)).To(BeComparableTo(condition(metav1.ConditionTrue, kdcv1alpha1.ReasonBackupScheduled), ignoreVolatile))
			}).Should(Succeed())
			return cj
		}

		By("no ObjectBucketClaim")
		expectGate(kdcv1alpha1.ReasonS3NotAvailable, "does not exist")
		By("a pending ObjectBucketClaim")
		createOBC(ns, obcv1alpha1.PhasePending)
		expectGate(kdcv1alpha1.ReasonS3NotAvailable, `is "Pending", not Bound`)
		By("a bound claim but no status.dataStoreName")
		setOBCPhase(ns, obcv1alpha1.PhaseBound)
		expectGate(kdcv1alpha1.ReasonDataStoreUnknown, "status.dataStoreName is not set")
		By("status.dataStoreName set, but its etcd StatefulSet missing")
		setDataStoreName(c, testDataStore)
		expectGate(kdcv1alpha1.ReasonDataStoreUnknown, `ds1-etcd of datastore "ds1" does not exist`)

		By("every gate open: the CronJob appears, built from the claim's ConfigMap and the StatefulSet")
		Expect(env.Client.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: kdcv1alpha1.ObjectBucketClaimName, Namespace: ns},
			Data:       map[string]string{"BUCKET_NAME": "backups-1234", "BUCKET_HOST": "rgw.rook-ceph.svc", "BUCKET_PORT": "8080"},
		})).To(Succeed())
		createEtcdStatefulSet(ns, testDataStore)
		cj := expectCronJob()
		Expect(metav1.IsControlledBy(cj, c) || cj.OwnerReferences[0].Name == c.Name).To(BeTrue())
		Expect(cj.Labels).To(HaveKeyWithValue(kdcv1alpha1.LabelCluster, "prod"))
		Expect(cj.Spec.Schedule).To(Equal("*/30 * * * *"))
		Expect(cj.Spec.TimeZone).To(Equal(ptr.To("Etc/UTC")))
		Expect(cj.Spec.ConcurrencyPolicy).To(Equal(batchv1.ForbidConcurrent))
		ctr := cj.Spec.JobTemplate.Spec.Template.Spec.Containers[0]
		Expect(ctr.Image).To(Equal(testImage))
		Expect(ctr.Args).To(ContainElements(
			"--endpoints=https://ds1-etcd-0.ds1-etcd."+ns+".svc:2379",
			"--bucket=backups-1234",
			"--s3-endpoint=http://rgw.rook-ceph.svc:8080",
		))
		for _, e := range ctr.Env {
			Expect(e.Value).To(BeEmpty(), "credential %s copied into the spec", e.Name)
			Expect(e.ValueFrom.SecretKeyRef.Name).To(Equal(kdcv1alpha1.ObjectBucketClaimName))
		}

		By("backups disabled: the CronJob goes")
		patchCluster(c, func(c *kdcv1alpha1.KdcCluster) { c.Spec.Backup.Enabled = ptr.To(false) })
		expectGate(kdcv1alpha1.ReasonDisabled, "spec.backup.enabled=false")
		By("enabled again: it comes back")
		patchCluster(c, func(c *kdcv1alpha1.KdcCluster) { c.Spec.Backup.Enabled = ptr.To(true) })
		expectCronJob()
		By("the claim loses its bucket: it goes again")
		setOBCPhase(ns, obcv1alpha1.PhaseReleased)
		expectGate(kdcv1alpha1.ReasonS3NotAvailable, `is "Released"`)
	})

	It("records a successful backup of a Job created from the CronJob", func() {
		c := createScheduledCluster(ns)
		By("the restore reconciler's condition, which backup status writes must leave alone")
		restoreReady := metav1.Condition{Type: kdcv1alpha1.ConditionRestoreReady, Status: metav1.ConditionTrue,
			Reason: kdcv1alpha1.ReasonRestoreSucceeded, Message: `Restore from "prod/prod-20250101T000000Z.db" complete`}
		Eventually(func(g Gomega) {
			got := &kdcv1alpha1.KdcCluster{}
			g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(c), got)).To(Succeed())
			meta.SetStatusCondition(&got.Status.Conditions, restoreReady)
			g.Expect(env.Client.Status().Update(ctx, got)).To(Succeed())
		}).Should(Succeed())

		By("kubectl create job --from=cronjob/prod-etcd-backup")
		out, err := env.Kubectl(ctx, "create", "job", "-n", ns, "--from=cronjob/prod-etcd-backup", "manual-1")
		Expect(err).NotTo(HaveOccurred(), out)
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "manual-1", Namespace: ns}}

		key := "prod/prod-20250107T020000Z.db"
		msg := fmt.Sprintf(`{"key":%q,"objectKey":%q,"bucket":"%s-managed-k8s-backups","size":20971552,"sha256":"%s","parts":3,"revision":123456,"etcdVersion":"3.5.21","durationSeconds":1.84,"lifecycle":"applied"}`,
			key, key, ns, strings.Repeat("ab", 32))
		By("the pod exits 0 with the termination message")
		Eventually(func(g Gomega) { g.Expect(finishJobPods(g, job, 0, msg)).To(Equal(1)) }).Should(Succeed())

		Eventually(func(g Gomega) {
			got := &kdcv1alpha1.KdcCluster{}
			g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(c), got)).To(Succeed())
			g.Expect(got.Status.LatestBackupKey).To(Equal(key))
			g.Expect(got.Status.LatestBackupTime).NotTo(BeNil())
			g.Expect(got.Status.BackupBucket).To(Equal(ns + "-managed-k8s-backups"))
			g.Expect(got.Status.BackupDestinationPath).To(Equal("s3://" + ns + "-managed-k8s-backups"))
			g.Expect(backupReady(g, c)).To(BeComparableTo(condition(metav1.ConditionTrue, kdcv1alpha1.ReasonBackupSucceeded), ignoreVolatile))
			g.Expect(meta.FindStatusCondition(got.Status.Conditions, kdcv1alpha1.ConditionRestoreReady)).To(
				PointTo(BeComparableTo(restoreReady, cmpopts.IgnoreFields(metav1.Condition{}, "LastTransitionTime"))))
		}).Should(Succeed())

		By("an Event with size, checksum and revision")
		Eventually(func(g Gomega) {
			events := &eventsv1.EventList{}
			g.Expect(env.Client.List(ctx, events, client.InNamespace(ns))).To(Succeed())
			var notes []string
			for _, e := range events.Items {
				if e.Regarding.Kind == "KdcCluster" && e.Regarding.Name == c.Name && e.Reason == kdcv1alpha1.ReasonBackupSucceeded {
					notes = append(notes, e.Note)
				}
			}
			g.Expect(notes).To(ContainElement(SatisfyAll(
				ContainSubstring(key), ContainSubstring("20971552 bytes"),
				ContainSubstring("sha256 "+strings.Repeat("ab", 32)), ContainSubstring("etcd revision 123456"))))
		}).Should(Succeed())

		By("the metrics")
		Eventually(func(g Gomega) {
			size, ok := gaugeValue(g, "kdc_etcd_backup_last_size_bytes", map[string]string{"namespace": ns, "cluster": c.Name})
			g.Expect(ok).To(BeTrue())
			g.Expect(size).To(Equal(20971552.0))
			last, ok := gaugeValue(g, "kdc_etcd_backup_last_success_timestamp_seconds", map[string]string{"namespace": ns, "cluster": c.Name})
			g.Expect(ok).To(BeTrue())
			g.Expect(last).To(BeNumerically(">", time.Now().Add(-time.Hour).Unix()))
			n, ok := gaugeValue(g, "kdc_etcd_backup_clusters", map[string]string{"reason": kdcv1alpha1.ReasonBackupSucceeded})
			g.Expect(ok).To(BeTrue())
			g.Expect(n).To(BeNumerically(">=", 1))
		}).Should(Succeed())
	})

	DescribeTable("reports the failure of the newest backup Job",
		func(exitCode int32, msg, reason string, wantMessage []string) {
			c := createScheduledCluster(ns)
			cj := &batchv1.CronJob{}
			Expect(env.Client.Get(ctx, framework.BackupCronJobKey(c), cj)).To(Succeed())
			job := jobFromCronJob(cj, "manual-fail", func(j *batchv1.Job) { j.Spec.BackoffLimit = ptr.To[int32](0) })
			Expect(env.Client.Create(ctx, job)).To(Succeed())
			Eventually(func(g Gomega) { g.Expect(finishJobPods(g, job, exitCode, msg)).To(Equal(1)) }).Should(Succeed())
			Eventually(func(g Gomega) {
				cond := backupReady(g, c)
				g.Expect(cond).To(BeComparableTo(condition(metav1.ConditionFalse, reason), ignoreVolatile))
				for _, m := range wantMessage {
					g.Expect(cond.Message).To(ContainSubstring(m))
				}
			}).Should(Succeed())
			Eventually(func(g Gomega) {
				events := &eventsv1.EventList{}
				g.Expect(env.Client.List(ctx, events, client.InNamespace(ns))).To(Succeed())
				g.Expect(events.Items).To(ContainElement(SatisfyAll(
					HaveField("Reason", reason), HaveField("Type", corev1.EventTypeWarning))))
			}).Should(Succeed())
		},
		Entry("exit code 2 is SnapshotTooSmall", int32(2),
			`{"error":"etcd snapshot is 0 bytes, less than --min-size 16384","reason":"SnapshotTooSmall","exitCode":2}`,
			kdcv1alpha1.ReasonSnapshotTooSmall,
			[]string{"snapshot too small", "manual-fail", "less than --min-size", "ds1-etcd-certs"}),
		Entry("exit code 6 is BackupFailed naming the credentials", int32(6),
			`{"error":"access denied to bucket","reason":"AccessDenied","exitCode":6}`,
			kdcv1alpha1.ReasonBackupFailed,
			[]string{"exit code 6 (AccessDenied)", "Secret", "managed-k8s-backups"}),
	)

	It("reports a backup older than twice the schedule interval as stale", func() {
		c := createScheduledCluster(ns, func(c *kdcv1alpha1.KdcCluster) { c.Spec.Backup.Schedule = "0 * * * *" })
		By("the last success was three hours ago (the manager was down, say)")
		Eventually(func(g Gomega) {
			got := &kdcv1alpha1.KdcCluster{}
			g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(c), got)).To(Succeed())
			got.Status.LatestBackupKey = "prod/prod-20250101T000000Z.db"
			got.Status.LatestBackupTime = ptr.To(metav1.NewTime(time.Now().Add(-3 * time.Hour)))
			g.Expect(env.Client.Status().Update(ctx, got)).To(Succeed())
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			cond := backupReady(g, c)
			g.Expect(cond).To(BeComparableTo(condition(metav1.ConditionFalse, kdcv1alpha1.ReasonBackupStale), ignoreVolatile))
			g.Expect(cond.Message).To(ContainSubstring("twice the schedule interval (1h0m0s)"))
		}).Should(Succeed())
	})

	It("reverts a hand edit of a managed field and leaves unmanaged fields alone", func() {
		c := createScheduledCluster(ns)
		out, err := env.Kubectl(ctx, "patch", "cronjob", "-n", ns, kdcv1alpha1.BackupCronJobName(c.Name), "--type=merge", "-p",
			`{"metadata":{"labels":{"team":"db","app.kubernetes.io/managed-by":"someone"}},"spec":{"schedule":"5 5 * * *","suspend":true,"successfulJobsHistoryLimit":50}}`)
		Expect(err).NotTo(HaveOccurred(), out)
		Eventually(func(g Gomega) {
			cj := &batchv1.CronJob{}
			g.Expect(env.Client.Get(ctx, framework.BackupCronJobKey(c), cj)).To(Succeed())
			g.Expect(cj.Spec.Schedule).To(Equal("0 2 * * *"))
			g.Expect(cj.Spec.SuccessfulJobsHistoryLimit).To(Equal(ptr.To[int32](3)))
			g.Expect(cj.Labels).To(HaveKeyWithValue("app.kubernetes.io/managed-by", "kdc-etcd-backup"))
			g.Expect(cj.Labels).To(HaveKeyWithValue("team", "db"))
			g.Expect(cj.Spec.Suspend).To(Equal(ptr.To(true)))
		}).Should(Succeed())
	})
})

// patchCluster changes the cluster's spec with a merge patch.
func patchCluster(c *kdcv1alpha1.KdcCluster, mutate func(*kdcv1alpha1.KdcCluster)) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		got := &kdcv1alpha1.KdcCluster{}
		g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(c), got)).To(Succeed())
		orig := got.DeepCopy()
		mutate(got)
		g.Expect(env.Client.Patch(ctx, got, client.MergeFrom(orig))).To(Succeed())
	}).Should(Succeed())
}
