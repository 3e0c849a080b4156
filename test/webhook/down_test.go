package webhook

import (
	"context"
	"fmt"
	"net"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// freePort is a loopback TCP port nothing listens on right now.
func freePort() int {
	GinkgoHelper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// onlyNamespace selects the namespace ns.
func onlyNamespace(ns string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}
}

// registerCopies installs copies of the generated webhook configurations (as envtest installed
// them) that call the server on port, for namespace ns only.
func registerCopies(ns string, port int) {
	GinkgoHelper()
	wh := env.WebhookInstallOptions
	retarget := func(cc *admissionregistrationv1.WebhookClientConfig) {
		*cc.URL = strings.Replace(*cc.URL, fmt.Sprintf(":%d/", wh.LocalServingPort), fmt.Sprintf(":%d/", port), 1)
	}
	for _, orig := range wh.MutatingWebhooks {
		c := orig.DeepCopy()
		c.ObjectMeta = metav1.ObjectMeta{Name: ns + "-" + orig.Name}
		for i := range c.Webhooks {
			retarget(&c.Webhooks[i].ClientConfig)
			c.Webhooks[i].NamespaceSelector = onlyNamespace(ns)
		}
		Expect(env.Client.Create(ctx, c)).To(Succeed())
		DeferCleanup(func() { Expect(env.Client.Delete(ctx, c)).To(Succeed()) })
	}
	for _, orig := range wh.ValidatingWebhooks {
		c := orig.DeepCopy()
		c.ObjectMeta = metav1.ObjectMeta{Name: ns + "-" + orig.Name}
		for i := range c.Webhooks {
			retarget(&c.Webhooks[i].ClientConfig)
			c.Webhooks[i].NamespaceSelector = onlyNamespace(ns)
		}
		Expect(env.Client.Create(ctx, c)).To(Succeed())
		DeferCleanup(func() { Expect(env.Client.Delete(ctx, c)).To(Succeed()) })
	}
}

var _ = Describe("A webhook that is down", func() {
	It("makes the API server refuse an annotate (failurePolicy Fail), not accept it silently", func() {
		ns, err := env.NewNamespace(ctx, "down")
		Expect(err).NotTo(HaveOccurred())
		Expect(env.Client.Create(ctx, newDataStore(ns, "ds", 1))).To(Succeed())
		c := newCluster(ns, "c1", "ds")
		Expect(env.Client.Create(ctx, c)).To(Succeed())

		By("serving a second copy of the webhooks for this namespace")
		port := freePort()
		wh := env.WebhookInstallOptions
		serverCtx, stop := context.WithCancel(ctx)
		DeferCleanup(stop)
		m, err := startWebhooks(serverCtx, env.Config, wh.LocalServingHost, port, wh.LocalServingCertDir)
		Expect(err).NotTo(HaveOccurred())
		Eventually(m.serving).Should(Succeed())
		registerCopies(ns, port)
		Expect(alice.Patch(ctx, c.DeepCopy(), annotationsPatch(map[string]*string{"example.com/note": set("up")}))).To(Succeed())

		By("stopping that server")
		stop()
		Expect(<-m.done).To(Succeed())
		schedule := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"backup":{"schedule":"0 3 * * *"}}}`))
		Eventually(func(g Gomega) {
			err := alice.Patch(ctx, c.DeepCopy(), schedule)
			g.Expect(err).To(MatchError(And(
				ContainSubstring(`failed calling webhook "vkdccluster.k8s.kube-dc.com"`),
				ContainSubstring("connection refused"))))
		}).Should(Succeed())

		By("accepting an update that no rule looks at: the API server does not call the webhook for it")
		Expect(alice.Patch(ctx, c.DeepCopy(), annotationsPatch(map[string]*string{"example.com/note": set("down")}))).To(Succeed())

		By("the same for the datastore: a replica change is refused, other updates are not sent to the webhook")
		ds := newDataStore(ns, "ds", 1)
		err = alice.Patch(ctx, ds.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"etcd":{"replicas":3}}}`)))
		Expect(err).To(MatchError(And(
			ContainSubstring(`failed calling webhook "vkdcclusterdatastore.k8s.kube-dc.com"`),
			ContainSubstring("connection refused"))))
		Expect(alice.Patch(ctx, ds.DeepCopy(), annotationsPatch(map[string]*string{"example.com/note": set("down")}))).To(Succeed())

		By("refusing a restore request, even a valid one")
		out, err := env.Kubectl(ctx, "-n", ns, "annotate", "kdccluster", "c1", kdcv1alpha1.AnnotationRestoreFrom+"=c1/c1-20260101T020000Z.db")
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(HavePrefix(`Error from server (InternalError): Internal error occurred: failed calling webhook "mkdccluster.k8s.kube-dc.com": failed to call webhook: Post "https://`))
		Expect(out).To(ContainSubstring("connection refused"))

		stored := &kdcv1alpha1.KdcCluster{}
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(c), stored)).To(Succeed())
		Expect(stored.Annotations).To(Equal(map[string]string{"example.com/note": "down"}), "no restore annotation was persisted while the webhook was down")
		Expect(stored.Spec.Backup.Schedule).NotTo(Equal("0 3 * * *"), "the spec change was refused")
	})
})
