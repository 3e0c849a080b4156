package datapath

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkBaseline runs each Job subcommand with this tree's binary and with another build of
// it (KDC_BENCH_BASELINE, the path of a kdc-etcd-backup binary), alternating in the same run, so
// that a change can be judged against the binary before it on the same machine load. It reports
// per subcommand the mean wall time, CPU and peak RSS of both, and the median of the
// iterations' ratios (x-<subcommand>-median, ours over the baseline's).
//
//	KDC_BENCH_BASELINE=/tmp/old/kdc-etcd-backup go test ./test/datapath/ -run '^$' -bench BenchmarkBaseline -benchtime 10x
func BenchmarkBaseline(b *testing.B) {
	src := os.Getenv("KDC_BENCH_BASELINE")
	if src == "" {
		b.Skip("KDC_BENCH_BASELINE names no baseline binary")
	}
	ours := binary(b)
	// Installed like ours, so both binaries' pages reach the page cache the same way.
	baseline := filepath.Join(b.TempDir(), "kdc-etcd-backup-baseline")
	if err := installCopy(src, baseline); err != nil {
		b.Fatal(err)
	}
	for _, mb := range benchSizes {
		b.Run(fmt.Sprintf("%dMB", mb), func(b *testing.B) {
			en := newBenchEnv(b)
			e := benchEtcd(b, mb)
			backupArgs := func(cluster string) []string {
				return append([]string{"backup", "--cluster", cluster, "--endpoints", e.ClientURL,
					"--cacert", e.Certs.CAFile, "--cert", e.Certs.ClientCert, "--key", e.Certs.ClientKey}, en.s3Args()...)
			}
			// The restored snapshot belongs to another cluster than the measured backups, whose
			// objects are deleted after each run and may have the same key (one per second).
			key, _ := en.benchRun(b, backupArgs("restored")...).term["key"].(string)
			type side struct {
				wall, cpu time.Duration
				rss       int64
			}
			subcommands := []string{"backup", "verify", "restore", "rollback"}
			stats := map[string]*[2]side{}
			ratios := map[string][]float64{}
			for _, s := range subcommands {
				stats[s] = &[2]side{}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				dir := b.TempDir()
				for _, sub := range subcommands {
					var walls [2]time.Duration
					runs := make([]func(), 2)
					for k, bin := range []string{ours, baseline} {
						runs[k] = func() {
							dataDir := filepath.Join(dir, fmt.Sprintf("side%d.etcd", k))
							var args []string
							switch sub {
							case "backup":
								args = backupArgs("bench")
							case "verify":
								args = append([]string{"verify", "--key", key}, en.s3Args()...)
							case "restore":
								args = append([]string{"restore", "--key", key, "--data-dir", dataDir}, en.s3Args()...)
							case "rollback":
								if err := os.Mkdir(dataDir+".previous", 0o700); err != nil {
									b.Fatal(err)
								}
								args = []string{"rollback", "--data-dir", dataDir}
							}
							r := en.runBinary(b, bin, args...)
							if r.code != 0 {
								b.Fatalf("%s %s exited %d: %s", bin, sub, r.code, r.stderr)
							}
							st := &stats[sub][k]
							st.wall, st.cpu, st.rss = st.wall+r.duration, st.cpu+r.cpu, max(st.rss, r.maxRSS)
							walls[k] = r.duration
							switch sub {
							case "backup":
								objectKey, _ := r.term["objectKey"].(string)
								en.deleteObject(b, objectKey)
							case "restore", "rollback":
								os.RemoveAll(dataDir)
								os.RemoveAll(dataDir + ".previous")
							}
						}
					}
					runRotated(i, runs)
					ratios[sub] = append(ratios[sub], walls[0].Seconds()/walls[1].Seconds())
				}
			}
			b.StopTimer()
			n := float64(b.N)
			for _, sub := range subcommands {
				st := stats[sub]
				b.ReportMetric(st[0].wall.Seconds()/n, "s/"+sub)
				b.ReportMetric(st[1].wall.Seconds()/n, "s/"+sub+"-baseline")
				b.ReportMetric(median(ratios[sub]), "x-"+sub+"-median")
				b.ReportMetric(st[0].cpu.Seconds()/n, "s-cpu/"+sub)
				b.ReportMetric(st[1].cpu.Seconds()/n, "s-cpu/"+sub+"-baseline")
				b.ReportMetric(float64(st[0].rss)/(1<<20), "MiB-maxrss/"+sub)
				b.ReportMetric(float64(st[1].rss)/(1<<20), "MiB-maxrss/"+sub+"-baseline")
			}
		})
	}
}
