package backup

import (
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	obcv1alpha1 "kube-dc.com/etcd-backup/api/objectbucket/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/test/framework"
)

// testDataStore is the datastore every fixture cluster uses.
const testDataStore = "ds1"

// createOBC creates the namespace's managed-k8s-backups claim in phase (empty: no status).
func createOBC(ns string, phase obcv1alpha1.ObjectBucketClaimPhase) {
	obc := &obcv1alpha1.ObjectBucketClaim{ObjectMeta: metav1.ObjectMeta{Name: kdcv1alpha1.ObjectBucketClaimName, Namespace: ns},
		Spec: obcv1alpha1.ObjectBucketClaimSpec{GenerateBucketName: "backups"}}
	ExpectWithOffset(1, env.Client.Create(ctx, obc)).To(Succeed())
	if phase != "" {
		setOBCPhase(ns, phase)
	}
}

// setOBCPhase plays the bucket provisioner.
func setOBCPhase(ns string, phase obcv1alpha1.ObjectBucketClaimPhase) {
	obc := &obcv1alpha1.ObjectBucketClaim{}
	ExpectWithOffset(1, env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: kdcv1alpha1.ObjectBucketClaimName}, obc)).To(Succeed())
	obc.Status.Phase = phase
	ExpectWithOffset(1, env.Client.Status().Update(ctx, obc)).To(Succeed())
}

// createEtcdStatefulSet creates DS-etcd (framework.EtcdStatefulSet).
func createEtcdStatefulSet(ns, ds string) {
	ExpectWithOffset(1, env.Client.Create(ctx, framework.EtcdStatefulSet(ns, ds))).To(Succeed())
}

// createCluster creates a KdcCluster named prod.
func createCluster(ns string, mutate ...func(*kdcv1alpha1.KdcCluster)) *kdcv1alpha1.KdcCluster {
	c := &kdcv1alpha1.KdcCluster{ObjectMeta: metav1.ObjectMeta{Name: "prod", Namespace: ns}}
	for _, m := range mutate {
		m(c)
	}
	ExpectWithOffset(1, env.Client.Create(ctx, c)).To(Succeed())
	return c
}

// setDataStoreName plays the cluster provisioner.
func setDataStoreName(c *kdcv1alpha1.KdcCluster, ds string) {
	EventuallyWithOffset(1, func(g Gomega) {
		got := &kdcv1alpha1.KdcCluster{}
		g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(c), got)).To(Succeed())
		got.Status.DataStoreName = ds
		g.Expect(env.Client.Status().Update(ctx, got)).To(Succeed())
	}).Should(Succeed())
}

// createScheduledCluster creates everything a CronJob needs: a Bound claim, the etcd
// StatefulSet and a cluster with status.dataStoreName, and waits for the CronJob.
func createScheduledCluster(ns string, mutate ...func(*kdcv1alpha1.KdcCluster)) *kdcv1alpha1.KdcCluster {
	createOBC(ns, obcv1alpha1.PhaseBound)
	createEtcdStatefulSet(ns, testDataStore)
	c := createCluster(ns, mutate...)
	setDataStoreName(c, testDataStore)
	EventuallyWithOffset(1, func(g Gomega) {
		g.Expect(env.Client.Get(ctx, framework.BackupCronJobKey(c), &batchv1.CronJob{})).To(Succeed())
		g.Expect(backupReady(g, c).Status).To(Equal(metav1.ConditionTrue))
	}).Should(Succeed())
	return c
}

// backupReady is the cluster's BackupReady condition; it fails g when there is none.
func backupReady(g Gomega, c *kdcv1alpha1.KdcCluster) metav1.Condition {
	cond, err := framework.StoredCondition(ctx, env.Client, c, kdcv1alpha1.ConditionBackupReady)
	g.Expect(err).NotTo(HaveOccurred())
	return cond
}

// jobFromCronJob is what `kubectl create job --from=cronjob/...` creates, with an optional
// change (such as a back-off limit of 0 so a failure is final at once).
func jobFromCronJob(cj *batchv1.CronJob, name string, mutate ...func(*batchv1.Job)) *batchv1.Job {
	tmpl := cj.Spec.JobTemplate
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: cj.Namespace, Labels: tmpl.Labels,
			Annotations:     map[string]string{"cronjob.kubernetes.io/instantiate": "manual"},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(cj, batchv1.SchemeGroupVersion.WithKind("CronJob"))},
		},
		Spec: *tmpl.Spec.DeepCopy(),
	}
	for _, m := range mutate {
		m(job)
	}
	return job
}

// finishJobPods is framework.FinishJobPods in a Gomega assertion.
func finishJobPods(g Gomega, job *batchv1.Job, exitCode int32, msg string) int {
	n, err := framework.FinishJobPods(ctx, env.Client, job, exitCode, msg)
	g.Expect(err).NotTo(HaveOccurred())
	return n
}

// gaugeValue reads a gauge from controller-runtime's metrics registry.
func gaugeValue(g Gomega, name string, labels map[string]string) (float64, bool) {
	families, err := metrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() == name {
			return familyGauge(f, labels)
		}
	}
	return 0, false
}
