package datapath

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"kube-dc.com/etcd-backup/jobspec"
	"kube-dc.com/etcd-backup/snapshot"
	"kube-dc.com/etcd-backup/snapshot/datadir"
)

// BenchmarkInProcess runs Backup and Restore in the test process, for CPU and heap profiles of
// the data path itself (the subprocess benchmarks cannot be profiled):
//
//	KDC_BENCH_SIZES_MB=200 go test ./test/datapath/ -run '^$' -bench BenchmarkInProcess -benchtime 3x -cpuprofile cpu.out
//	go tool pprof -top test/datapath/datapath.test cpu.out
//
// It also reports the CPU seconds MinIO and etcd spent per operation, read from /proc.
func BenchmarkInProcess(b *testing.B) {
	for _, mb := range benchSizes {
		b.Run(fmt.Sprintf("%dMB", mb), func(b *testing.B) {
			en := newBenchEnv(b)
			e := benchEtcd(b, mb)
			ctx := context.Background()
			o := snapshot.BackupOptions{
				Cluster: "bench", Endpoints: []string{e.ClientURL},
				CACert: e.Certs.CAFile, Cert: e.Certs.ClientCert, Key: e.Certs.ClientKey,
				Location: en.loc, Credentials: en.cred, RetentionDays: 7,
			}
			log := slog.New(slog.DiscardHandler)
			if os.Getenv("KDC_BENCH_LOG") != "" {
				log = slog.New(slog.NewTextHandler(os.Stderr, nil))
			}
			o.Logger = log
			var backup, restore time.Duration
			var minioCPU, etcdCPU time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				m0, e0 := procCPU(b, en.minio.PID()), procCPU(b, e.PID())
				start := time.Now()
				res, err := snapshot.Backup(ctx, o)
				if err != nil {
					b.Fatal(err)
				}
				backup += time.Since(start)
				m1, e1 := procCPU(b, en.minio.PID()), procCPU(b, e.PID())
				minioCPU, etcdCPU = minioCPU+m1-m0, etcdCPU+e1-e0
				if os.Getenv("KDC_BENCH_BACKUP_ONLY") != "" {
					continue
				}
				dir := b.TempDir()
				start = time.Now()
				if _, err := datadir.Restore(ctx, datadir.RestoreOptions{
					Restore: jobspec.Restore{Key: res.Key, Location: en.loc, Member: jobspec.Member{DataDir: filepath.Join(dir, "default.etcd")},
						BumpRevision: jobspec.DefaultBumpRevision, MarkCompacted: true},
					Credentials: en.cred, Logger: log,
				}); err != nil {
					b.Fatal(err)
				}
				restore += time.Since(start)
				os.RemoveAll(dir)
			}
			b.StopTimer()
			b.ReportMetric(backup.Seconds()/float64(b.N), "s/backup")
			b.ReportMetric(restore.Seconds()/float64(b.N), "s/restore")
			b.ReportMetric(minioCPU.Seconds()/float64(b.N), "s-minio-cpu/backup")
			b.ReportMetric(etcdCPU.Seconds()/float64(b.N), "s-etcd-cpu/backup")
		})
	}
}

// procCPU is the user+system CPU time process pid has used, from /proc/<pid>/stat.
func procCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatalf("failed to read the CPU time of process %d: %v", pid, err)
	}
	// Fields after the command name (which may hold spaces) start with the state, field 3.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
}
