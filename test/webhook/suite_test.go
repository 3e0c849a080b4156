package webhook

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/test/framework"
)

var (
	env *framework.Env
	ctx context.Context
	// alice is an operator; controller is the controller's identity. Both are in system:masters,
	// so only the webhooks decide.
	alice, controller client.Client
)

func TestWebhook(t *testing.T) {
	RegisterFailHandler(Fail)
	// The API server picks up webhook configurations and RBAC asynchronously; on a loaded
	// machine that takes more than Gomega's default second.
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	RunSpecs(t, "Webhook suite")
}

var _ = BeforeSuite(func() {
	var cancel context.CancelFunc
	ctx, cancel = context.WithCancel(context.Background())
	DeferCleanup(cancel)

	// Fails (never skips) with "run `make bins`" when a binary is missing.
	_, err := framework.RequireBinary(framework.Kubectl())
	Expect(err).NotTo(HaveOccurred())
	env, err = framework.Start(framework.Options{Webhooks: webhookInstallOptions()})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(env.Stop()).To(Succeed()) })

	wh := env.WebhookInstallOptions
	m, err := startWebhooks(ctx, env.Config, wh.LocalServingHost, wh.LocalServingPort, wh.LocalServingCertDir)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		cancel()
		Expect(<-m.done).To(Succeed())
	})
	Eventually(m.serving).Should(Succeed())

	alice, err = userClient(env, "alice")
	Expect(err).NotTo(HaveOccurred())
	controller, err = userClient(env, controllerUser)
	Expect(err).NotTo(HaveOccurred())

	By("waiting until the API server calls the webhooks")
	ns, err := env.NewNamespace(ctx, "ready")
	Expect(err).NotTo(HaveOccurred())
	probe := newCluster(ns, "probe", "ds")
	probe.Spec.Backup.Schedule = "61 * * * *"
	Eventually(func(g Gomega) {
		err := alice.Create(ctx, probe.DeepCopy(), client.DryRunAll)
		g.Expect(err).To(MatchError(ContainSubstring(kdcv1alpha1.ReasonInvalidBackupSpec)))
	}).Should(Succeed())
})
