package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"kube-dc.com/etcd-backup/test/e2e/env"
	"kube-dc.com/etcd-backup/test/framework"
)

// BenchmarkRestoreRTO measures the end-to-end restore time (kubectl annotate -> RestoreReady=True)
// of a ~20 MB tenant etcd (v3.5.35) on the whole environment, the tenant laid out as on Kube-DC
// (each restore pauses and resumes its TenantControlPlane), per phase, beside the same steps
// done directly (stop kube-apiserver, stop etcd, etcdutl snapshot restore from a local file,
// start etcd, start kube-apiserver) in the same run. Run it with
//
//	go test -run '^$' -bench RestoreRTO -benchtime 1x -v ./test/e2e/
//
// Each iteration restores the same snapshot again; the figures reported are the means.
func BenchmarkRestoreRTO(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Fatalf("the benchmark needs root: the node agent runs each pod in its own mount namespace (uid %d)", os.Geteuid())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	e, err := env.Start(ctx, env.Options{})
	if err != nil {
		b.Fatalf("failed to start the environment: %v", err)
	}
	b.Cleanup(func() {
		if err := e.Stop(); err != nil {
			b.Errorf("failed to tear down: %v", err)
		}
		if !b.Failed() {
			_ = os.RemoveAll(e.Dir)
		}
	})
	if err := e.NewProject(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	tn, err := e.CreateTenant(ctx, env.TenantOptions{Namespace: "bench", Cluster: "tenant", DataStore: "ds1", EtcdVersion: framework.EtcdVersion35})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tn.Pad(ctx, "padding", padBytes); err != nil {
		b.Fatal(err)
	}
	backup, err := tn.RunBackup(ctx, "backup-bench")
	if err != nil {
		b.Fatal(err)
	}

	var rto, overhead, direct time.Duration
	phases := map[string]time.Duration{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := tn.Restore(ctx, backup.Key, env.RestoreOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if r.Condition.Status != "True" {
			b.Fatalf("restore failed: %s", r.Condition.Message)
		}
		b.StopTimer()
		if err := tn.WaitReady(ctx, time.Minute); err != nil {
			b.Fatal(err)
		}
		d, err := tn.DirectRestore(ctx, backup.Key)
		if err != nil {
			b.Fatal(err)
		}
		for _, l := range env.Comparison(r, d) {
			b.Log(l)
		}
		rto += r.RTO()
		direct += d.Total()
		overhead += env.Overhead(r, d)
		for _, p := range r.PhaseDurations() {
			phases[string(p.Phase)] += p.Duration
		}
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(rto.Seconds()/n, "rto-s")
	b.ReportMetric(direct.Seconds()/n, "direct-s")
	b.ReportMetric(overhead.Seconds()/n, "overhead-s")
	for p, d := range phases {
		b.ReportMetric(d.Seconds()/n, fmt.Sprintf("%s-s", p))
	}
}
