package nodeagent_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"kube-dc.com/etcd-backup/test/framework"
	"kube-dc.com/etcd-backup/test/nodeagent"
)

var (
	env   *framework.Env
	cm    *framework.ControllerManager
	agent *nodeagent.Agent
	ctx   context.Context
)

func TestNodeAgent(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Node agent suite")
}

var _ = BeforeSuite(func() {
	if os.Geteuid() != 0 {
		Fail("the node agent needs root: containers run in their own mount namespace (CLONE_NEWNS)")
	}
	var cancel context.CancelFunc
	ctx, cancel = context.WithCancel(context.Background())
	DeferCleanup(cancel)
	var err error
	// Service ClusterIPs on loopback: the agent proxies them like kube-proxy.
	env, err = framework.Start(framework.Options{APIServerFlags: map[string]string{"service-cluster-ip-range": nodeagent.ServiceCIDR()}})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(env.Stop()).To(Succeed()) })
	cm, err = env.StartControllerManager()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(cm.Stop()).To(Succeed()) })
	GinkgoWriter.Printf("kube-controller-manager log: %s\n", cm.LogPath())
	log := zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true))
	stateDir, err := os.MkdirTemp("", "kdc-nodeagent-test-")
	Expect(err).NotTo(HaveOccurred())
	// The product's image, built from the working tree.
	archive, err := framework.BuildImage(filepath.Join(stateDir, "image"))
	Expect(err).NotTo(HaveOccurred())
	agent = nodeagent.New(env.Config, nodeagent.Options{Logger: &log, StateDir: stateDir,
		ImageArchives: map[string]string{"kdc-etcd-backup": archive}})
	Expect(agent.Start(ctx)).To(Succeed())
	DeferCleanup(agent.Stop)
	GinkgoWriter.Printf("node agent state and logs: %s\n", agent.StateDir())
})

// The state dir (volumes, etcd data, logs) is removed when every spec passed, kept otherwise.
var _ = ReportAfterSuite("remove the node agent's state", func(r Report) {
	if r.SuiteSucceeded && agent != nil {
		_ = os.RemoveAll(agent.StateDir())
	}
})
