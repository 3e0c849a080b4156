package backup

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"kube-dc.com/etcd-backup/controller/backup"
	"kube-dc.com/etcd-backup/test/framework"
)

const (
	// testImage is the manager image the CronJob's container must run.
	testImage = "kdc-etcd-backup:test"
	// testS3Endpoint is the manager's --s3-endpoint.
	testS3Endpoint = "http://s3.example.com:9000"
)

var (
	env    *framework.Env
	kcm    *framework.ControllerManager
	ctx    context.Context
	cancel context.CancelFunc
)

func TestBackup(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Backup controller suite")
}

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	ctx, cancel = context.WithCancel(context.Background())
	var err error
	env, err = framework.Start(framework.Options{})
	Expect(err).NotTo(HaveOccurred())
	kcm, err = env.StartControllerManager()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { GinkgoWriter.Println("kube-controller-manager log:", kcm.LogPath()) })

	mgr, err := ctrl.NewManager(env.Config, framework.ManagerOptions())
	Expect(err).NotTo(HaveOccurred())
	Expect(backup.Setup(mgr, backup.Options{Image: testImage, S3Endpoint: testS3Endpoint, MaxConcurrentBackups: testMaxConcurrentBackups})).To(Succeed())
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
})

var _ = AfterSuite(func() {
	if cancel != nil {
		cancel()
	}
	if kcm != nil {
		Expect(kcm.Stop()).To(Succeed())
	}
	if env != nil {
		Expect(env.Stop()).To(Succeed())
	}
})
