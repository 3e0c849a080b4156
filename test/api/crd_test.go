package api

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/test/framework"
)

var _ = Describe("KdcCluster CRD", func() {
	var ns string

	BeforeEach(func() {
		var err error
		ns, err = env.NewNamespace(ctx, "api")
		Expect(err).NotTo(HaveOccurred())
	})

	It("fills in the documented defaults", func() {
		c := &kdcv1alpha1.KdcCluster{ObjectMeta: metav1.ObjectMeta{Name: "tenant", Namespace: ns}}
		Expect(env.Client.Create(ctx, c)).To(Succeed())

		got := &kdcv1alpha1.KdcCluster{}
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(c), got)).To(Succeed())
		Expect(got.Spec.Backup).To(Equal(kdcv1alpha1.BackupSpec{
			Enabled:       ptr.To(true),
			Schedule:      "0 2 * * *",
			RetentionDays: 7,
		}))
		Expect(got.Spec.DataStore.Dedicated).To(BeFalse())
	})

	DescribeTable("rejects values out of bounds",
		func(mutate func(*kdcv1alpha1.KdcCluster), field string) {
			c := &kdcv1alpha1.KdcCluster{ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: ns}}
			mutate(c)
			err := env.Client.Create(ctx, c)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
			Expect(err.Error()).To(ContainSubstring(field))
		},
		Entry("retentionDays -1", func(c *kdcv1alpha1.KdcCluster) { c.Spec.Backup.RetentionDays = -1 }, "spec.backup.retentionDays"),
		Entry("retentionDays 366", func(c *kdcv1alpha1.KdcCluster) { c.Spec.Backup.RetentionDays = 366 }, "spec.backup.retentionDays"),
		Entry("destinationPath not s3://", func(c *kdcv1alpha1.KdcCluster) { c.Spec.Backup.DestinationPath = "https://bucket/x" }, "spec.backup.destinationPath"),
		Entry("negative control plane replicas", func(c *kdcv1alpha1.KdcCluster) { c.Spec.ControlPlane.Replicas = ptr.To[int32](-1) }, "spec.controlPlane.replicas"),
	)

	It("rejects retentionDays 0 sent as an explicit value", func() {
		// The Go type omits a zero retentionDays, so send the raw object as an operator would.
		manifest := `apiVersion: k8s.kube-dc.com/v1alpha1
kind: KdcCluster
metadata:
  name: zero
  namespace: ` + ns + `
spec:
  backup:
    retentionDays: 0
`
		out, err := env.KubectlInput(ctx, manifest, "apply", "-f", "-")
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("spec.backup.retentionDays: Invalid value: 0: spec.backup.retentionDays in body should be greater than or equal to 1"))
	})

	It("prints backup, last backup, restore phase, last restore and age in kubectl get", func() {
		c := &kdcv1alpha1.KdcCluster{ObjectMeta: metav1.ObjectMeta{
			Name: "shown", Namespace: ns,
			Annotations: map[string]string{kdcv1alpha1.AnnotationRestoreState: string(kdcv1alpha1.PhaseStoppingEtcd)},
		}}
		Expect(env.Client.Create(ctx, c)).To(Succeed())
		c.Status.Conditions = []metav1.Condition{{
			Type: kdcv1alpha1.ConditionBackupReady, Status: metav1.ConditionTrue,
			Reason: kdcv1alpha1.ReasonBackupSucceeded, Message: "ok", LastTransitionTime: metav1.Now(),
		}}
		c.Status.LatestBackupTime = ptr.To(metav1.Now())
		Expect(env.Client.Status().Update(ctx, c)).To(Succeed())

		out, err := env.Kubectl(ctx, "get", "kdc-cl", "-n", ns)
		Expect(err).NotTo(HaveOccurred(), out)
		row := framework.ParseTable(out)
		Expect(row).To(HaveLen(1), out)
		Expect(row[0]).To(HaveKeyWithValue("NAME", "shown"))
		Expect(row[0]).To(HaveKeyWithValue("BACKUP", kdcv1alpha1.ReasonBackupSucceeded))
		Expect(row[0]).To(HaveKeyWithValue("LAST BACKUP", MatchRegexp(`^\d+s$`)))
		Expect(row[0]).To(HaveKeyWithValue("RESTORE", string(kdcv1alpha1.PhaseStoppingEtcd)))
		Expect(row[0]).To(HaveKeyWithValue("LAST RESTORE", ""), "no restore yet")
		Expect(row[0]).To(HaveKeyWithValue("AGE", MatchRegexp(`^\d+s$`)))
	})
})

var _ = Describe("KdcClusterDatastore CRD", func() {
	It("defaults replicas to 3 and accepts only 1, 3, 5, 7 or 9", func() {
		ns, err := env.NewNamespace(ctx, "api-ds")
		Expect(err).NotTo(HaveOccurred())
		ds := &kdcv1alpha1.KdcClusterDatastore{ObjectMeta: metav1.ObjectMeta{Name: "ds", Namespace: ns}}
		Expect(env.Client.Create(ctx, ds)).To(Succeed())
		Expect(ds.Spec.Etcd.Replicas).To(Equal(int32(3)))

		bad := &kdcv1alpha1.KdcClusterDatastore{ObjectMeta: metav1.ObjectMeta{Name: "two", Namespace: ns}}
		bad.Spec.Etcd.Replicas = 2
		err = env.Client.Create(ctx, bad)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
		Expect(err.Error()).To(ContainSubstring(`spec.etcd.replicas: Unsupported value: 2: supported values: "1", "3", "5", "7", "9"`))
	})
})
