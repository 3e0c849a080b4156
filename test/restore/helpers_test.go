package restore

import (
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	obcv1alpha1 "kube-dc.com/etcd-backup/api/objectbucket/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	et "kube-dc.com/etcd-backup/engine/enginetest"
	"kube-dc.com/etcd-backup/test/framework"
)

const (
	clusterName = "prod"
	dsName      = "ds"
	snapshotKey = "prod/prod-20260101T020000Z.db"
	cpReplicas  = 2
)

// tenant is one tenant cluster in its own namespace: KdcCluster prod, datastore ds, C-cp with
// two replicas, DS-etcd with one, the OBC's ConfigMap and the backup CronJob.
type tenant struct {
	ns string
	k  *kubelet
}

func newTenant() *tenant {
	ns, err := env.NewNamespace(ctx, "restore")
	Expect(err).NotTo(HaveOccurred())
	t := &tenant{ns: ns}
	t.k = startKubelet(ns, clusterName)
	c := env.Client
	Expect(c.Create(ctx, &kdcv1alpha1.KdcClusterDatastore{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: dsName},
		Spec: kdcv1alpha1.KdcClusterDatastoreSpec{Etcd: kdcv1alpha1.EtcdSpec{Replicas: 1, Version: "3.5.21"}}})).To(Succeed())
	cl := &kdcv1alpha1.KdcCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: clusterName},
		Spec: kdcv1alpha1.KdcClusterSpec{DataStore: kdcv1alpha1.DataStoreRef{Name: dsName}}}
	Expect(c.Create(ctx, cl)).To(Succeed())
	cl.Status.DataStoreName = dsName
	Expect(c.Status().Update(ctx, cl)).To(Succeed())

	cpLabels := map[string]string{"app": kdcv1alpha1.ControlPlaneDeploymentName(clusterName)}
	Expect(c.Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: kdcv1alpha1.ControlPlaneDeploymentName(clusterName)},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](cpReplicas),
			Selector: &metav1.LabelSelector{MatchLabels: cpLabels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: cpLabels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "kube-apiserver", Image: "kube-apiserver:v1.33.0"}}}},
		},
	})).To(Succeed())
	sts := et.EtcdStatefulSet(ns, dsName, 1)
	sts.Spec.VolumeClaimTemplates[0].Spec = corev1.PersistentVolumeClaimSpec{
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: *resourceQuantity("1Gi")}},
	}
	Expect(c.Create(ctx, sts)).To(Succeed())
	Expect(c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: kdcv1alpha1.ObjectBucketClaimName},
		Data: map[string]string{obcv1alpha1.ConfigMapKeyBucketName: ns + "-managed-k8s-backups", obcv1alpha1.ConfigMapKeyBucketHost: "rgw.rook-ceph.svc", obcv1alpha1.ConfigMapKeyBucketPort: "80"}})).To(Succeed())
	backupLabels := map[string]string{kdcv1alpha1.LabelComponent: kdcv1alpha1.ComponentBackup, kdcv1alpha1.LabelCluster: clusterName}
	Expect(c.Create(ctx, &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: kdcv1alpha1.BackupCronJobName(clusterName)},
		Spec: batchv1.CronJobSpec{Schedule: "0 2 * * *", Suspend: ptr.To(true), JobTemplate: batchv1.JobTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: backupLabels},
			Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: backupLabels},
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{Name: "backup", Image: testImage, Args: []string{"backup"}}}}}},
		}}})).To(Succeed())
	t.waitHealthy()
	return t
}

// waitHealthy waits until the control plane and etcd run ready.
func (t *tenant) waitHealthy() {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		d, sts := t.deployment(), t.statefulSet()
		g.Expect(d.Status.ReadyReplicas).To(BeEquivalentTo(cpReplicas))
		g.Expect(d.Status.UpdatedReplicas).To(BeEquivalentTo(cpReplicas))
		g.Expect(d.Status.Replicas).To(BeEquivalentTo(cpReplicas))
		g.Expect(sts.Status.ReadyReplicas).To(BeEquivalentTo(1))
	}).Should(Succeed())
}

func (t *tenant) key(name string) client.ObjectKey {
	return client.ObjectKey{Namespace: t.ns, Name: name}
}

func (t *tenant) cluster() *kdcv1alpha1.KdcCluster {
	GinkgoHelper()
	c := &kdcv1alpha1.KdcCluster{}
	Expect(env.Client.Get(ctx, t.key(clusterName), c)).To(Succeed())
	return c
}

func (t *tenant) deployment() *appsv1.Deployment {
	GinkgoHelper()
	d := &appsv1.Deployment{}
	Expect(env.Client.Get(ctx, t.key(kdcv1alpha1.ControlPlaneDeploymentName(clusterName)), d)).To(Succeed())
	return d
}

func (t *tenant) statefulSet() *appsv1.StatefulSet {
	GinkgoHelper()
	s := &appsv1.StatefulSet{}
	Expect(env.Client.Get(ctx, t.key(kdcv1alpha1.EtcdStatefulSetName(dsName)), s)).To(Succeed())
	return s
}

// podNames lists the pods with app=app.
func (t *tenant) podNames(app string) []string {
	GinkgoHelper()
	var pods corev1.PodList
	Expect(env.Client.List(ctx, &pods, client.InNamespace(t.ns), client.MatchingLabels{"app": app})).To(Succeed())
	var names []string
	for _, p := range pods.Items {
		names = append(names, p.Name)
	}
	return names
}

func (t *tenant) jobs() []batchv1.Job {
	GinkgoHelper()
	var jobs batchv1.JobList
	Expect(env.Client.List(ctx, &jobs, client.InNamespace(t.ns))).To(Succeed())
	return jobs.Items
}

// requestRestore annotates the cluster with restore-from, like `kubectl annotate` (no webhook
// in this suite: the controller stamps Validating itself).
func (t *tenant) requestRestore(key string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		c := t.cluster()
		orig := c.DeepCopy()
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		c.Annotations[kdcv1alpha1.AnnotationRestoreFrom] = key
		g.Expect(env.Client.Patch(ctx, c, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))).To(Succeed())
	}).Should(Succeed())
}

// phases records every restore-state value the cluster goes through, from a watch.
type phaseRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (t *tenant) recordPhases() *phaseRecorder {
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: framework.Scheme})
	Expect(err).NotTo(HaveOccurred())
	w, err := wc.Watch(ctx, &kdcv1alpha1.KdcClusterList{}, client.InNamespace(t.ns))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(w.Stop)
	r := &phaseRecorder{}
	go func() {
		for ev := range w.ResultChan() {
			c, ok := ev.Object.(*kdcv1alpha1.KdcCluster)
			if !ok || c.Name != clusterName {
				continue
			}
			p := c.Annotations[kdcv1alpha1.AnnotationRestoreState]
			if c.Annotations[kdcv1alpha1.AnnotationRestoreFailure] != "" {
				p += "+failure"
			}
			r.mu.Lock()
			if (len(r.seen) == 0 && p != "") || (len(r.seen) > 0 && r.seen[len(r.seen)-1] != p) {
				r.seen = append(r.seen, p)
			}
			r.mu.Unlock()
		}
	}()
	return r
}

func (r *phaseRecorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// restoreReady returns RestoreReady without its transition time, for BeComparableTo.
func restoreReady(c *kdcv1alpha1.KdcCluster) metav1.Condition {
	for _, cond := range c.Status.Conditions {
		if cond.Type == kdcv1alpha1.ConditionRestoreReady {
			cond.LastTransitionTime = metav1.Time{}
			return cond
		}
	}
	return metav1.Condition{}
}

// restoreAnnotations are the cluster's restore-* annotations.
func restoreAnnotations(c *kdcv1alpha1.KdcCluster) map[string]string {
	out := map[string]string{}
	for k, v := range c.Annotations {
		if k == kdcv1alpha1.AnnotationRestoreFrom || kdcv1alpha1.IsRestoreBookkeeping(k) {
			out[k] = v
		}
	}
	return out
}

func resourceQuantity(s string) *resource.Quantity {
	q := resource.MustParse(s)
	return &q
}
