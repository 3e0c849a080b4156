package restore

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"kube-dc.com/etcd-backup/controller/restore"
	"kube-dc.com/etcd-backup/engine"
	"kube-dc.com/etcd-backup/test/framework"
)

const (
	testImage      = "kdc-etcd-backup:test"
	testS3Endpoint = "http://s3.example.com:9000"
)

var (
	env *framework.Env
	kcm *framework.ControllerManager
	ctx context.Context
)

func TestRestore(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Restore controller suite")
}

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	SetDefaultEventuallyTimeout(60 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	var cancel context.CancelFunc
	ctx, cancel = context.WithCancel(context.Background())
	DeferCleanup(cancel)
	var err error
	env, err = framework.Start(framework.Options{})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(env.Stop()).To(Succeed()) })
	kcm, err = env.StartControllerManager()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		GinkgoWriter.Println("kube-controller-manager log:", kcm.LogPath())
		Expect(kcm.Stop()).To(Succeed())
	})
})

// restoreManager is one run of the manager with the restore controller; stop kills it as a
// crash would (no cleanup of its own state), a new one resumes from the KdcCluster.
type restoreManager struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startRestoreManager starts a manager running only the restore controller.
func startRestoreManager(timeouts engine.Timeouts) *restoreManager {
	mgr, err := ctrl.NewManager(env.Config, framework.ManagerOptions())
	Expect(err).NotTo(HaveOccurred())
	Expect(restore.Setup(mgr, restore.Options{
		Image: testImage, S3Endpoint: testS3Endpoint, Timeouts: timeouts,
	})).To(Succeed())
	return startManager(mgr)
}

// startManager starts mgr until stop.
func startManager(mgr ctrl.Manager) *restoreManager {
	mctx, cancel := context.WithCancel(ctx)
	m := &restoreManager{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer GinkgoRecover()
		defer close(m.done)
		Expect(mgr.Start(mctx)).To(Succeed())
	}()
	return m
}

// stop stops the manager and waits until it has returned.
func (m *restoreManager) stop() {
	m.cancel()
	Eventually(m.done).Should(BeClosed())
}
