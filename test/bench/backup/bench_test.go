package backup

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	obcv1alpha1 "kube-dc.com/etcd-backup/api/objectbucket/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/test/framework"
)

// benchClusters is the number of clusters; BACKUP_BENCH_CLUSTERS overrides it for quick runs.
func benchClusters(b *testing.B) int {
	n := 1000
	if v := os.Getenv("BACKUP_BENCH_CLUSTERS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("BACKUP_BENCH_CLUSTERS=%q is not a positive number", v)
		}
	}
	return n
}

// BenchmarkBackupClusters runs the whole scenario once per iteration (one iteration takes far
// longer than the default -benchtime, so `go test -bench` runs exactly one).
func BenchmarkBackupClusters(b *testing.B) {
	n := benchClusters(b)
	bin := buildManager(b)
	for i := 0; i < b.N; i++ {
		runBackupBench(b, bin, n)
	}
}

func buildManager(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "kdc-etcd-backup-manager")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/kdc-etcd-backup-manager")
	cmd.Dir = framework.RootDir()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("failed to build the manager: %v\n%s", err, out)
	}
	return bin
}

func runBackupBench(b *testing.B, bin string, n int) {
	ctx := context.Background()
	ctrllog.SetLogger(logr.Discard())
	env, err := framework.Start(framework.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = env.Stop() }()

	setupStart := time.Now()
	createWorld(b, ctx, env.Client, n)
	b.Logf("created %d clusters with their claims, ConfigMaps, datastores and StatefulSets in %s", n, time.Since(setupStart).Round(time.Millisecond))

	b.ResetTimer()
	mgr := startManager(b, bin, env)
	defer mgr.stop()
	elapsed, err := waitAllReady(ctx, env.Client, n, mgr.started, 5*time.Minute)
	b.StopTimer()
	if err != nil {
		b.Fatalf("%v (manager log: %s)", err, mgr.logPath)
	}
	requests, byMethod, reconciles := scrapeManager(b, mgr.port)
	retries := countLines(b, mgr.logPath, "Reconciler error")
	maxRSSMiB := mgr.stop().maxRSSMiB

	perCluster := float64(requests) / float64(n)
	b.ReportMetric(elapsed.Seconds(), "s-to-ready")
	b.ReportMetric(maxRSSMiB, "MiB-peak-RSS")
	b.ReportMetric(perCluster, "requests/cluster")
	fmt.Printf("backup bench: %d clusters; every CronJob present and every BackupReady True %s after the manager started\n",
		n, elapsed.Round(10*time.Millisecond))
	fmt.Printf("backup bench: manager peak RSS %.1f MiB; %d API requests (%.2f per cluster: %s); %d reconciles, %d retried after an error (status conflicts with a stale cache)\n",
		maxRSSMiB, requests, perCluster, byMethod, reconciles, retries)
}

// benchManager is the manager process of a benchmark, the real binary run with `manager`.
type benchManager struct {
	cmd     *exec.Cmd
	port    int
	logPath string
	started time.Time
	usage   *managerUsage
}

type managerUsage struct {
	maxRSSMiB float64
	cpu       time.Duration
}

// startManager starts the manager against env without webhooks or leader election, with extra
// flags.
func startManager(b *testing.B, bin string, env *framework.Env, extra ...string) *benchManager {
	b.Helper()
	kubeconfig, err := env.WriteKubeconfig("bench-manager", []string{"system:masters"})
	if err != nil {
		b.Fatal(err)
	}
	m := &benchManager{port: freePort(b), logPath: filepath.Join(b.TempDir(), "manager.log")}
	logf, err := os.Create(m.logPath)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { logf.Close() })
	m.cmd = exec.Command(bin, append([]string{
		"--leader-elect=false", "--enable-webhooks=false",
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(m.port), "--health-probe-bind-address=0",
		"--image=kdc-etcd-backup:bench", "--s3-endpoint=http://s3.example.com:9000"}, extra...)...)
	m.cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	m.started = time.Now()
	if err := m.cmd.Start(); err != nil {
		b.Fatalf("failed to start the manager: %v", err)
	}
	return m
}

// stop ends the manager (once) and returns its resource usage.
func (m *benchManager) stop() managerUsage {
	if m.usage == nil {
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		_ = m.cmd.Wait()
		ru := m.cmd.ProcessState.SysUsage().(*syscall.Rusage)
		m.usage = &managerUsage{maxRSSMiB: float64(ru.Maxrss) / 1024, cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano())}
	}
	return *m.usage
}

// createWorld creates n namespaces, each with a Bound claim, its ConfigMap, a datastore, its
// etcd StatefulSet and a KdcCluster whose status.dataStoreName is set.
func createWorld(b *testing.B, ctx context.Context, c client.Client, n int) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := createTenant(ctx, c, fmt.Sprintf("bench-%04d", i)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

func createTenant(ctx context.Context, c client.Client, ns string) error {
	const ds = "ds"
	labels := map[string]string{"app": "ds-etcd"}
	obc := &obcv1alpha1.ObjectBucketClaim{ObjectMeta: metav1.ObjectMeta{Name: kdcv1alpha1.ObjectBucketClaimName, Namespace: ns},
		Spec: obcv1alpha1.ObjectBucketClaimSpec{GenerateBucketName: "backups"}}
	cluster := &kdcv1alpha1.KdcCluster{ObjectMeta: metav1.ObjectMeta{Name: "tenant", Namespace: ns},
		Spec: kdcv1alpha1.KdcClusterSpec{DataStore: kdcv1alpha1.DataStoreRef{Name: ds}}}
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		obc,
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: kdcv1alpha1.ObjectBucketClaimName, Namespace: ns}, Data: map[string]string{
			"BUCKET_NAME": ns + "-backups", "BUCKET_HOST": "rgw.rook-ceph.svc", "BUCKET_PORT": "80"}},
		&kdcv1alpha1.KdcClusterDatastore{ObjectMeta: metav1.ObjectMeta{Name: ds, Namespace: ns},
			Spec: kdcv1alpha1.KdcClusterDatastoreSpec{Etcd: kdcv1alpha1.EtcdSpec{Replicas: 1}}},
		&appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: kdcv1alpha1.EtcdStatefulSetName(ds), Namespace: ns},
			Spec: appsv1.StatefulSetSpec{
				ServiceName: "ds-etcd", Replicas: ptr.To[int32](1),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
					Containers: []corev1.Container{{Name: "etcd", Image: "etcd:3.5.21-0"}},
				}},
			},
		},
		cluster,
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			return fmt.Errorf("failed to create %T %s/%s: %w", o, ns, o.GetName(), err)
		}
	}
	obc.Status.Phase = obcv1alpha1.PhaseBound
	if err := c.Status().Update(ctx, obc); err != nil {
		return fmt.Errorf("failed to bind the claim in %s: %w", ns, err)
	}
	cluster.Status.DataStoreName = ds
	if err := c.Status().Update(ctx, cluster); err != nil {
		return fmt.Errorf("failed to set status.dataStoreName in %s: %w", ns, err)
	}
	return nil
}

// waitAllReady polls (every second, a list of KdcClusters only, so the poller does not compete
// with the manager for the API server) until n KdcClusters have BackupReady True, then checks
// that n backup CronJobs exist (metadata only). The controller sets True only after the CronJob
// is applied, so the time is the time until both hold.
func waitAllReady(ctx context.Context, c client.Client, n int, start time.Time, timeout time.Duration) (time.Duration, error) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	deadline := time.After(timeout)
	for {
		clusters := &kdcv1alpha1.KdcClusterList{}
		if err := c.List(ctx, clusters); err != nil {
			return 0, err
		}
		ready := 0
		for i := range clusters.Items {
			if meta.IsStatusConditionTrue(clusters.Items[i].Status.Conditions, kdcv1alpha1.ConditionBackupReady) {
				ready++
			}
		}
		if ready == n {
			elapsed := time.Since(start)
			cjs := &metav1.PartialObjectMetadataList{}
			cjs.SetGroupVersionKind(batchv1.SchemeGroupVersion.WithKind("CronJobList"))
			if err := c.List(ctx, cjs, client.MatchingLabels{kdcv1alpha1.LabelComponent: kdcv1alpha1.ComponentBackup}); err != nil {
				return 0, err
			}
			if len(cjs.Items) != n {
				return 0, fmt.Errorf("every BackupReady is True but %d of %d CronJobs exist", len(cjs.Items), n)
			}
			return elapsed, nil
		}
		select {
		case <-tick.C:
		case <-deadline:
			return 0, fmt.Errorf("after %s only %d of %d BackupReady are True", timeout, ready, n)
		}
	}
}

// scrapeManager reads the manager's own client metrics: total API requests, by method, and the
// backup controller's reconciles.
func scrapeManager(b *testing.B, port int) (total int, byMethod string, reconciles int) {
	b.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		b.Fatalf("failed to scrape the manager's metrics: %v", err)
	}
	defer resp.Body.Close()
	methods := map[string]int{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "rest_client_requests_total{"):
			v := metricValue(line)
			total += v
			methods[labelValue(line, "method")] += v
		case strings.HasPrefix(line, "controller_runtime_reconcile_total{") && strings.Contains(line, `controller="kdccluster-backup"`):
			reconciles += metricValue(line)
		}
	}
	keys := make([]string, 0, len(methods))
	for k := range methods {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, methods[k]))
	}
	return total, strings.Join(parts, ", "), reconciles
}

func metricValue(line string) int {
	f := strings.Fields(line)
	v, _ := strconv.ParseFloat(f[len(f)-1], 64)
	return int(v)
}

func labelValue(line, label string) string {
	i := strings.Index(line, label+`="`)
	if i < 0 {
		return "?"
	}
	rest := line[i+len(label)+2:]
	return rest[:strings.IndexByte(rest, '"')]
}

// countLines counts the lines of a file containing s.
func countLines(b *testing.B, path, s string) int {
	b.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return strings.Count(string(data), s)
}

func freePort(b *testing.B) int {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
