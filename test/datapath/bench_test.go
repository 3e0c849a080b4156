package datapath

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"kube-dc.com/etcd-backup/snapshot"
	"kube-dc.com/etcd-backup/test/framework"
)

// benchSizes are the etcd database sizes of the benchmarks, in MB of values written.
var benchSizes = benchSizesFromEnv()

// benchEtcd starts etcd v3.7 holding about mb megabytes of values.
func benchEtcd(b *testing.B, mb int) *framework.EtcdServer {
	b.Helper()
	e := framework.StartEtcd(b, framework.EtcdOptions{ExtraArgs: []string{"--quota-backend-bytes", fmt.Sprint(int64(4) << 30)}})
	fill(b, e.Client(b), "/registry/bench/", mb*10, 100<<10)
	return e
}

func newBenchEnv(b *testing.B) *env {
	b.Helper()
	m := framework.StartMinIO(b, framework.MinIOOptions{Buckets: []string{bucket}})
	return &env{
		minio: m,
		loc:   snapshot.S3Location{Endpoint: m.Endpoint, Bucket: bucket},
		cred:  snapshot.Credentials{AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey},
		s3:    m.S3Client(),
	}
}

// etcdutlRestoreCmd is `etcdutl snapshot restore` of the tested etcd version, with the restore's
// default revision bump.
func etcdutlRestoreCmd(snapshotFile, dataDir string) *exec.Cmd {
	return exec.Command(filepath.Join(framework.EtcdDir(framework.EtcdVersion), "etcdutl"), "snapshot", "restore", snapshotFile,
		"--data-dir", dataDir, "--bump-revision", "1000000000", "--mark-compacted")
}

// deleteObject removes an object a benchmark run uploaded, as the reference run's local file is
// removed: neither side's output stays in the page cache for the next run to find memory behind.
func (en *env) deleteObject(b *testing.B, key string) {
	b.Helper()
	if _, err := en.s3.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err != nil {
		b.Fatalf("failed to delete %s: %v", key, err)
	}
}

// etcdctlCmd is etcdctl of the tested etcd version with e's endpoint and client TLS files.
func etcdctlCmd(e *framework.EtcdServer, args ...string) *exec.Cmd {
	return exec.Command(filepath.Join(framework.EtcdDir(framework.EtcdVersion), "etcdctl"), append([]string{
		"--endpoints", e.ClientURL, "--cacert", e.Certs.CAFile, "--cert", e.Certs.ClientCert, "--key", e.Certs.ClientKey,
	}, args...)...)
}

// benchRun runs the binary, fails the benchmark if it did not succeed and, with KDC_BENCH_LOG
// set, logs what it printed.
func (en *env) benchRun(b *testing.B, args ...string) runResult {
	b.Helper()
	r := en.run(b, args...)
	if r.code != 0 {
		b.Fatalf("%s exited %d: %s", args[0], r.code, r.stderr)
	}
	if os.Getenv("KDC_BENCH_LOG") != "" {
		b.Log(r.stdout + r.stderr)
	}
	return r
}

func etcdctl(b testing.TB, e *framework.EtcdServer, args ...string) (time.Duration, time.Duration) {
	b.Helper()
	cmd := etcdctlCmd(e, args...)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("etcdctl %v: %v: %s", args, err, out)
	}
	return time.Since(start), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// cpuMeter sums the CPU time of the process under test, its reference tool, and the etcd and
// MinIO servers while each runs, to show where the time goes on a machine shared by all of them.
type cpuMeter struct {
	ours, theirs                    time.Duration // the processes themselves
	etcdOurs, etcdTheirs, minioOurs time.Duration // the servers, during ours / theirs
	etcdPID, minioPID               int
}

// during measures the servers' CPU while f runs and adds it to etcd and minio.
func (m *cpuMeter) during(b *testing.B, etcd, minio *time.Duration, f func()) {
	e0, m0 := procCPU(b, m.etcdPID), procCPU(b, m.minioPID)
	f()
	*etcd += procCPU(b, m.etcdPID) - e0
	if minio != nil {
		*minio += procCPU(b, m.minioPID) - m0
	}
}

func (m *cpuMeter) report(b *testing.B, what, ref string) {
	n := float64(b.N)
	b.ReportMetric(m.ours.Seconds()/n, "s-cpu/"+what)
	b.ReportMetric(m.theirs.Seconds()/n, "s-cpu/"+ref)
	b.ReportMetric(m.minioOurs.Seconds()/n, "s-minio-cpu/"+what)
	if m.etcdPID != 0 {
		b.ReportMetric(m.etcdOurs.Seconds()/n, "s-etcd-cpu/"+what)
		b.ReportMetric(m.etcdTheirs.Seconds()/n, "s-etcd-cpu/"+ref)
	}
}

// benchTimes are the times of the iterations of a benchmark: ours, the reference tool's and the
// floor's (zero when the floor is not measured).
type benchTimes struct {
	ours, theirs, floor                  time.Duration
	ratios, floorRatios, oursFloorRatios []float64
}

func (t *benchTimes) add(ours, theirs, floor time.Duration) {
	t.ours, t.theirs, t.floor = t.ours+ours, t.theirs+theirs, t.floor+floor
	t.ratios = append(t.ratios, ours.Seconds()/theirs.Seconds())
	if floor > 0 {
		t.floorRatios = append(t.floorRatios, floor.Seconds()/theirs.Seconds())
		t.oursFloorRatios = append(t.oursFloorRatios, ours.Seconds()/floor.Seconds())
	}
}

// report reports the mean times (s/what, s/ref, s/floor), the ratio of the means (x-ref) and the
// medians of the iterations' own ratios (x-ref-median, x-floor-ref-median, x-floor-median).
func (t *benchTimes) report(b *testing.B, what, ref string) {
	n := float64(b.N)
	b.ReportMetric(t.ours.Seconds()/n, "s/"+what)
	b.ReportMetric(t.theirs.Seconds()/n, "s/"+ref)
	b.ReportMetric(t.ours.Seconds()/t.theirs.Seconds(), "x-"+ref)
	b.ReportMetric(median(t.ratios), "x-"+ref+"-median")
	if len(t.floorRatios) > 0 {
		b.ReportMetric(t.floor.Seconds()/n, "s/floor")
		b.ReportMetric(median(t.floorRatios), "x-floor-"+ref+"-median")
		b.ReportMetric(median(t.oursFloorRatios), "x-floor-median")
	}
}

// runRotated runs iteration i's runs in an order that rotates every iteration, so that none
// always runs right after another's cleanup.
func runRotated(i int, runs []func()) {
	for k := range runs {
		runs[(i+k)%len(runs)]()
	}
}

// BenchmarkBackup compares `kdc-etcd-backup backup` (etcd -> MinIO, streamed) with
// `etcdctl snapshot save` to a local file, in the same run, and reports our peak RSS. Each
// iteration also measures the floor (floorBackup): etcdctl while MinIO takes the same bytes at
// the same moment. The three run in an order that rotates every iteration, so that none of them
// always follows another's cleanup; besides the ratio of the means, the median of the
// iterations' own ratios is reported (x-...-median), which a single disturbed iteration does not
// move (docs/benchmarks.md). KDC_BENCH_FLOOR=0 leaves the floor out.
//
//	go test ./test/datapath/ -run '^$' -bench BenchmarkBackup -benchtime 3x
func BenchmarkBackup(b *testing.B) {
	for _, mb := range benchSizes {
		b.Run(fmt.Sprintf("%dMB", mb), func(b *testing.B) {
			en := newBenchEnv(b)
			e := benchEtcd(b, mb)
			withFloor := os.Getenv("KDC_BENCH_FLOOR") != "0"
			var floorData floorUpload
			if withFloor {
				file := filepath.Join(b.TempDir(), "floor-source.db")
				etcdctl(b, e, "snapshot", "save", file)
				data, err := os.ReadFile(file)
				if err != nil {
					b.Fatal(err)
				}
				os.Remove(file)
				floorData = newFloorUpload(data, snapshot.DefaultPartSize)
			}
			var times benchTimes
			var rss int64
			var size float64
			cpu := cpuMeter{etcdPID: e.PID(), minioPID: en.minio.PID()}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var dOurs, dTheirs, dFloor time.Duration
				runEtcdctl := func() {
					file := filepath.Join(b.TempDir(), "etcdctl.db")
					cpu.during(b, &cpu.etcdTheirs, nil, func() {
						d, c := etcdctl(b, e, "snapshot", "save", file)
						dTheirs, cpu.theirs = d, cpu.theirs+c
					})
					os.Remove(file)
				}
				runOurs := func() {
					var r runResult
					cpu.during(b, &cpu.etcdOurs, &cpu.minioOurs, func() {
						r = en.benchRun(b, append([]string{"backup", "--cluster", "bench", "--endpoints", e.ClientURL,
							"--cacert", e.Certs.CAFile, "--cert", e.Certs.ClientCert, "--key", e.Certs.ClientKey}, append(en.s3Args(), strings.Fields(os.Getenv("KDC_BENCH_BACKUP_ARGS"))...)...)...)
					})
					dOurs = r.duration
					cpu.ours += r.cpu
					rss = max(rss, r.maxRSS)
					size, _ = r.term["size"].(float64)
					key, _ := r.term["objectKey"].(string)
					en.deleteObject(b, key)
				}
				runs := []func(){runEtcdctl, runOurs}
				if withFloor {
					runs = append(runs, func() {
						dFloor = floorBackup(b, e, en.s3, floorData, floorKey)
						en.deleteObject(b, floorKey)
					})
				}
				runRotated(i, runs)
				times.add(dOurs, dTheirs, dFloor)
			}
			b.StopTimer()
			times.report(b, "backup", "etcdctl")
			b.ReportMetric(float64(rss)/(1<<20), "MiB-maxrss")
			b.ReportMetric(size/(1<<20), "MiB-snapshot")
			cpu.report(b, "backup", "etcdctl")
		})
	}
}

// BenchmarkRestore compares `kdc-etcd-backup restore` (MinIO -> verified download -> etcdutl
// library -> fsync -> swap) with `etcdutl snapshot restore` from a local file, in the same run.
// Each iteration also measures the floor (floorRestore): etcdutl while MinIO serves the same
// object at the same moment. The runs rotate their order every iteration; KDC_BENCH_FLOOR=0
// leaves the floor out.
//
//	go test ./test/datapath/ -run '^$' -bench BenchmarkRestore -benchtime 3x
func BenchmarkRestore(b *testing.B) {
	for _, mb := range benchSizes {
		b.Run(fmt.Sprintf("%dMB", mb), func(b *testing.B) {
			en := newBenchEnv(b)
			e := benchEtcd(b, mb)
			local := filepath.Join(b.TempDir(), "local.db")
			_, _ = etcdctl(b, e, "snapshot", "save", local)
			bk := en.benchRun(b, append([]string{"backup", "--cluster", "bench", "--endpoints", e.ClientURL,
				"--cacert", e.Certs.CAFile, "--cert", e.Certs.ClientCert, "--key", e.Certs.ClientKey}, en.s3Args()...)...)
			key, _ := bk.term["key"].(string)
			objectKey, _ := bk.term["objectKey"].(string)
			withFloor := os.Getenv("KDC_BENCH_FLOOR") != "0"
			var times benchTimes
			var rss int64
			cpu := cpuMeter{minioPID: en.minio.PID()}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				dir := b.TempDir()
				var dOurs, dTheirs, dFloor time.Duration
				runEtcdutl := func() {
					start := time.Now()
					cmd := etcdutlRestoreCmd(local, filepath.Join(dir, "etcdutl.etcd"))
					if out, err := cmd.CombinedOutput(); err != nil {
						b.Fatalf("etcdutl: %v: %s", err, out)
					}
					dTheirs = time.Since(start)
					cpu.theirs += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
					os.RemoveAll(filepath.Join(dir, "etcdutl.etcd"))
				}
				runOurs := func() {
					m0 := procCPU(b, cpu.minioPID)
					r := en.benchRun(b, append([]string{"restore", "--key", key, "--data-dir", filepath.Join(dir, "default.etcd")}, en.s3Args()...)...)
					cpu.minioOurs += procCPU(b, cpu.minioPID) - m0
					dOurs = r.duration
					cpu.ours += r.cpu
					rss = max(rss, r.maxRSS)
					os.RemoveAll(filepath.Join(dir, "default.etcd"))
				}
				runs := []func(){runEtcdutl, runOurs}
				if withFloor {
					runs = append(runs, func() {
						dFloor = floorRestore(b, en.s3, objectKey, etcdutlRestoreCmd(local, filepath.Join(dir, "floor.etcd")))
						os.RemoveAll(filepath.Join(dir, "floor.etcd"))
					})
				}
				runRotated(i, runs)
				times.add(dOurs, dTheirs, dFloor)
			}
			b.StopTimer()
			times.report(b, "restore", "etcdutl")
			b.ReportMetric(float64(rss)/(1<<20), "MiB-maxrss")
			cpu.report(b, "restore", "etcdutl")
		})
	}
}

// KDC_BENCH_BACKUP_ARGS adds flags to BenchmarkBackup's backup command, e.g. "--concurrency 1".

// benchSizesFromEnv is 20 and 200 MB, or the sizes in KDC_BENCH_SIZES_MB (comma-separated).
func benchSizesFromEnv() []int {
	v := os.Getenv("KDC_BENCH_SIZES_MB")
	if v == "" {
		return []int{20, 200}
	}
	var out []int
	for _, s := range strings.Split(v, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
			out = append(out, n)
		}
	}
	return out
}
