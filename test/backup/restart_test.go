package backup

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	batchv1 "k8s.io/api/batch/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/test/framework"
)

// A manager that starts after a backup (a restart, or a new leader) serves the backup's size
// and duration at once, read from the Job that status.latestBackupTime records, instead of
// leaving them empty until the next backup. The restarted manager is the real binary in its own
// process, so none of the suite manager's in-memory metrics can stand in for it.
var _ = Describe("Backup metrics after a manager restart", func() {
	It("serves the last backup's size and duration from the Job that status records", func() {
		ns, err := env.NewNamespace(ctx, "restart")
		Expect(err).NotTo(HaveOccurred())
		c := createScheduledCluster(ns)
		cj := &batchv1.CronJob{}
		Expect(env.Client.Get(ctx, framework.BackupCronJobKey(c), cj)).To(Succeed())
		job := jobFromCronJob(cj, "before-restart")
		Expect(env.Client.Create(ctx, job)).To(Succeed())
		key := "prod/prod-20250108T020000Z.db"
		msg := fmt.Sprintf(`{"key":%q,"objectKey":%q,"bucket":"%s-managed-k8s-backups","size":31457312,"sha256":"%s","parts":6,"revision":42,"etcdVersion":"3.5.21","durationSeconds":2.75,"lifecycle":"unchanged"}`,
			key, key, ns, strings.Repeat("cd", 32))
		Eventually(func(g Gomega) { g.Expect(finishJobPods(g, job, 0, msg)).To(Equal(1)) }).Should(Succeed())
		Eventually(func(g Gomega) {
			got := &kdcv1alpha1.KdcCluster{}
			g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(c), got)).To(Succeed())
			g.Expect(got.Status.LatestBackupKey).To(Equal(key))
		}).Should(Succeed())

		By("a manager process started afterwards")
		metricsURL := startManagerProcess()
		labels := map[string]string{"namespace": ns, "cluster": c.Name}
		Eventually(func(g Gomega) {
			families := scrape(g, metricsURL)
			size, ok := familyGauge(families["kdc_etcd_backup_last_size_bytes"], labels)
			g.Expect(ok).To(BeTrue(), "kdc_etcd_backup_last_size_bytes of %s/%s not served", ns, c.Name)
			g.Expect(size).To(Equal(31457312.0))
			d, ok := familyGauge(families["kdc_etcd_backup_last_duration_seconds"], labels)
			g.Expect(ok).To(BeTrue())
			g.Expect(d).To(Equal(2.75))
		}).Should(Succeed())
	})
})

// startManagerProcess builds and starts `kdc-etcd-backup-manager` (controllers only, no leader
// election) against the suite's API server as the admin user, and returns its metrics URL on
// loopback. The process is stopped by its PID when the spec ends.
func startManagerProcess() string {
	dir := GinkgoT().TempDir()
	bin := filepath.Join(dir, "kdc-etcd-backup-manager")
	build := exec.Command("go", "build", "-o", bin, "./cmd/kdc-etcd-backup-manager")
	build.Dir = framework.RootDir()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "go build: %s", out)

	port, err := framework.FreePort()
	Expect(err).NotTo(HaveOccurred())
	logPath := filepath.Join(dir, "manager.log")
	logFile, err := os.Create(logPath)
	Expect(err).NotTo(HaveOccurred())
	cmd := exec.Command(bin, "--enable-webhooks=false", "--leader-elect=false",
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", port), "--health-probe-bind-address=0",
		"--image", testImage, "--s3-endpoint", testS3Endpoint)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	Expect(cmd.Start()).To(Succeed())
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	DeferCleanup(func() {
		Expect(cmd.Process.Signal(syscall.SIGTERM)).To(Succeed())
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			Expect(cmd.Process.Kill()).To(Succeed())
			<-exited
		}
		if CurrentSpecReport().Failed() {
			log, _ := os.ReadFile(logPath)
			GinkgoWriter.Printf("manager log:\n%s\n", log)
		}
	})
	return fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
}

// scrape reads the metric families a metrics endpoint serves.
func scrape(g Gomega, url string) map[string]*dto.MetricFamily {
	resp, err := http.Get(url)
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	return families
}

// familyGauge is the value of the gauge in f whose labels include labels.
func familyGauge(f *dto.MetricFamily, labels map[string]string) (float64, bool) {
	if f == nil {
		return 0, false
	}
metric:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue metric
			}
		}
		return m.GetGauge().GetValue(), true
	}
	return 0, false
}
