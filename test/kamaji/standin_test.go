package kamaji

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kamajiv1alpha1 "kube-dc.com/etcd-backup/api/kamaji/v1alpha1"
	"kube-dc.com/etcd-backup/test/framework"
)

// TestStandIn checks the stand-in against a real kube-apiserver: it owns the Deployment named
// after the TCP, undoes a scale at once, and leaves the Deployment alone while the TCP is paused.
func TestStandIn(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	g.SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	env, err := framework.Start(framework.Options{})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = env.Stop() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	mgr, err := ctrl.NewManager(env.Config, framework.ManagerOptions())
	g.Expect(err).NotTo(HaveOccurred())
	standIn, err := Setup(mgr)
	g.Expect(err).NotTo(HaveOccurred())
	go func() { _ = mgr.Start(ctx) }()

	ns, err := env.NewNamespace(ctx, "kamaji")
	g.Expect(err).NotTo(HaveOccurred())
	const name = "tenant-cp"
	labels := map[string]string{kamajiv1alpha1.LabelName: name}
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "kube-apiserver", Image: "kube-apiserver"}},
			}},
		},
	}
	g.Expect(env.Client.Create(ctx, deploy)).To(Succeed())
	tcp := TenantControlPlane(ns, name, 2)
	g.Expect(env.Client.Create(ctx, tcp)).To(Succeed())
	key := types.NamespacedName{Namespace: ns, Name: name}
	replicas := func(g Gomega) int32 {
		d := &appsv1.Deployment{}
		g.Expect(env.Client.Get(ctx, key, d)).To(Succeed())
		return ptr.Deref(d.Spec.Replicas, 1)
	}
	scale := func(n int32) {
		t.Helper()
		d := &appsv1.Deployment{}
		g.Expect(env.Client.Get(ctx, key, d)).To(Succeed())
		orig := d.DeepCopy()
		d.Spec.Replicas = ptr.To(n)
		g.Expect(env.Client.Patch(ctx, d, client.MergeFrom(orig))).To(Succeed())
	}

	// The TCP takes the Deployment over: its controller, with the TCP's replicas.
	g.Eventually(func(g Gomega) {
		d := &appsv1.Deployment{}
		g.Expect(env.Client.Get(ctx, key, d)).To(Succeed())
		g.Expect(metav1.IsControlledBy(d, tcp)).To(BeTrue())
		g.Expect(ptr.Deref(d.Spec.Replicas, 1)).To(Equal(int32(2)))
	}).Should(Succeed())

	// A scale to 0 is undone.
	before := standIn.Reverts()
	scale(0)
	g.Eventually(replicas).Should(Equal(int32(2)))
	g.Eventually(standIn.Reverts).Should(BeNumerically(">", before))

	// Paused, the scale sticks.
	patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"`+kamajiv1alpha1.AnnotationPaused+`":""}}}`))
	g.Expect(env.Client.Patch(ctx, tcp, patch)).To(Succeed())
	g.Eventually(func(g Gomega) {
		got := &kamajiv1alpha1.TenantControlPlane{}
		g.Expect(mgr.GetCache().Get(ctx, key, got)).To(Succeed())
		g.Expect(got.Annotations).To(HaveKey(kamajiv1alpha1.AnnotationPaused))
	}).Should(Succeed())
	scale(0)
	g.Consistently(replicas, 2*time.Second).Should(Equal(int32(0)))

	// Unpaused, the TCP's replicas come back.
	unpause := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"`+kamajiv1alpha1.AnnotationPaused+`":null}}}`))
	g.Expect(env.Client.Patch(ctx, tcp, unpause)).To(Succeed())
	g.Eventually(replicas).Should(Equal(int32(2)))
}
