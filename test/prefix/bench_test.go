package prefix

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"kube-dc.com/etcd-backup/test/framework"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds cmd/kdc-etcd-backup once, as it ships (CGO_ENABLED=0).
func binary(b testing.TB) string {
	b.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kdc-prefix-bench-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "kdc-etcd-backup")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/kdc-etcd-backup")
		cmd.Dir = framework.RootDir()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		b.Fatal(buildErr)
	}
	return binPath
}

// timed runs cmd (stdout to out when set) and returns its wall time and peak RSS in MiB.
func timed(b *testing.B, cmd *exec.Cmd, out string) (time.Duration, float64) {
	b.Helper()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		cmd.Stdout = f
	}
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s: %v: %s", cmd.Args[1], err, stderr.String())
	}
	d := time.Since(start)
	return d, float64(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss) / 1024
}

// BenchmarkPrefix: a tenant of 20 MB and one of 200 MB (10 KiB objects plus events on a lease),
// each beside a 200 MB co-tenant on one etcd v3.7 with TLS and authentication on. Per
// iteration: prefix-backup of the tenant into MinIO against `etcdctl get --prefix <prefix>/`
// into a local file (alternating which goes first), then prefix-restore after a third of the
// tenant changed, and prefix-restore into the emptied prefix. docs/benchmarks.md has the figures.
func BenchmarkPrefix(b *testing.B) {
	for _, mb := range []int{20, 200} {
		b.Run(fmt.Sprintf("tenant=%dMB", mb), func(b *testing.B) {
			bin := binary(b)
			en := newEnv(b)
			s := startSharedEtcd(b, framework.EtcdVersion, "--quota-backend-bytes", fmt.Sprint(int64(8)<<30))
			root, a, co := s.client(b, s.root), s.client(b, s.a), s.client(b, s.b)
			const objSize = 10 << 10
			writeTenant(b, co, prefixB, 200<<20/objSize, objSize, "B")
			writeTenant(b, a, prefixA, mb<<20/objSize, objSize, "A")
			tls := []string{"--cacert", s.a.CA, "--cert", s.a.Cert}
			common := []string{"--s3-endpoint", en.loc.Endpoint, "--bucket", bucket}
			envv := append(os.Environ(), "AWS_ACCESS_KEY_ID="+en.cred.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+en.cred.SecretAccessKey)
			run := func(args ...string) *exec.Cmd {
				c := exec.Command(bin, args...)
				c.Env = envv
				return c
			}
			etcdctlOut := filepath.Join(b.TempDir(), "etcdctl.out")
			term := filepath.Join(b.TempDir(), "term")
			var ours, theirs, restoreChanged, restoreEmpty time.Duration
			var rssBackup, rssRestore float64
			b.ResetTimer()
			for i := range b.N {
				var dOurs, dTheirs time.Duration
				backup := func() {
					args := append([]string{"prefix-backup", "--cluster", "a", "--etcd-prefix", prefixA, "--endpoints", s.ClientURL, "--key-file", s.a.Key, "--retention-days", "0", "--termination-message-path", term}, tls...)
					var rss float64
					dOurs, rss = timed(b, run(append(args, common...)...), "")
					rssBackup = max(rssBackup, rss)
				}
				ref := func() {
					c := exec.Command(filepath.Join(framework.EtcdDir(framework.EtcdVersion), "etcdctl"), "--endpoints", s.ClientURL, "--cacert", s.a.CA, "--cert", s.a.Cert, "--key", s.a.Key,
						"get", "--prefix", prefixA+"/")
					dTheirs, _ = timed(b, c, etcdctlOut)
					os.Remove(etcdctlOut)
				}
				if i%2 == 0 {
					backup()
					ref()
				} else {
					ref()
					backup()
				}
				ours, theirs = ours+dOurs, theirs+dTheirs
				b.Logf("iteration %d: prefix-backup %.2fs, etcdctl get --prefix %.2fs, ratio %.2f", i, dOurs.Seconds(), dTheirs.Seconds(), dOurs.Seconds()/dTheirs.Seconds())
				var res struct{ Key string }
				raw, err := os.ReadFile(term)
				if err != nil || json.Unmarshal(raw, &res) != nil || res.Key == "" {
					b.Fatalf("no backup key in the termination message %q: %v", raw, err)
				}

				restore := func(attempt string) time.Duration {
					args := append([]string{"prefix-restore", "--cluster", "a", "--key", res.Key, "--attempt", attempt, "--etcd-prefix", prefixA, "--endpoints", s.ClientURL,
						"--key-file", s.a.Key, "--work-dir", b.TempDir(), "--termination-message-path", term + ".restore"}, tls...)
					d, rss := timed(b, run(append(args, common...)...), "")
					rssRestore = max(rssRestore, rss)
					return d
				}
				b.StopTimer()
				change(b, a, prefixA, mb<<20/objSize, fmt.Sprintf("C%d", i))
				b.StartTimer()
				restoreChanged += restore(fmt.Sprintf("changed-%d", i))
				b.StopTimer()
				if _, err := root.Delete(context.Background(), prefixA+"/", clientv3.WithPrefix()); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				restoreEmpty += restore(fmt.Sprintf("empty-%d", i))
			}
			n := float64(b.N)
			b.ReportMetric(ours.Seconds()/n, "s/prefix-backup")
			b.ReportMetric(theirs.Seconds()/n, "s/etcdctl-get")
			b.ReportMetric(ours.Seconds()/theirs.Seconds(), "x-etcdctl")
			b.ReportMetric(restoreChanged.Seconds()/n, "s/restore-changed")
			b.ReportMetric(restoreEmpty.Seconds()/n, "s/restore-empty")
			b.ReportMetric(rssBackup, "MiB-rss/backup")
			b.ReportMetric(rssRestore, "MiB-rss/restore")
		})
	}
}
