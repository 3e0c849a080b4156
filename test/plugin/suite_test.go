package plugin

import (
	"context"
	"os"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"kube-dc.com/etcd-backup/controller/backup"
	"kube-dc.com/etcd-backup/test/framework"
)

// testImage is the manager image the backup CronJob's container runs.
const testImage = "kdc-etcd-backup:test"

var (
	env    *framework.Env
	kcm    *framework.ControllerManager
	minio  *framework.MinIO
	etcd   *framework.EtcdServer
	ctx    context.Context
	cancel context.CancelFunc
)

func TestPlugin(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "kubectl-kdc backups and backup suite")
}

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	ctx, cancel = context.WithCancel(context.Background())

	dir, err := os.MkdirTemp("", "kdc-plugin-test-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	minio, err = framework.RunMinIO(ctx, dir, framework.MinIOOptions{})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(minio.Stop)
	etcd = framework.StartEtcd(GinkgoTB(), framework.EtcdOptions{})

	env, err = framework.Start(framework.Options{})
	Expect(err).NotTo(HaveOccurred())
	kcm, err = env.StartControllerManager()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { GinkgoWriter.Println("kube-controller-manager log:", kcm.LogPath()) })

	mgr, err := ctrl.NewManager(env.Config, framework.ManagerOptions())
	Expect(err).NotTo(HaveOccurred())
	// The manager's --s3-endpoint is MinIO: the CronJob carries it, and the plugin finds it there.
	Expect(backup.Setup(mgr, backup.Options{Image: testImage, S3Endpoint: minio.Endpoint})).To(Succeed())
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
