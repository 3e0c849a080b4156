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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	e := startBenchEnv(ctx, b)
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

// BenchmarkTopologyRTO measures, in one environment and one run, the RTO of three restores of a
// ~20 MB tenant: on a dedicated 1-member datastore, on a dedicated 3-member one (docs/restore.md,
// "Multi-member datastores") and in prefix mode on a datastore shared with a second tenant
// (docs/restore.md, "Shared datastores: prefix mode"), three rounds per iteration, the order
// rotating every round (setting up takes minutes: -benchtime 1x). Run it with
//
//	go test -run '^$' -bench TopologyRTO -benchtime 1x -v -timeout 40m ./test/e2e/
//
// The figures reported are the means; members-ratio is the 3-member RTO over the 1-member one.
func BenchmarkTopologyRTO(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	e := startBenchEnv(ctx, b)
	const ns = "bench"
	if err := e.NewProject(ctx, ns); err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		o    env.TenantOptions
		t    *env.Tenant
		key  string
		rto  time.Duration
	}{
		{name: "1-member", o: env.TenantOptions{Namespace: ns, Cluster: "one", DataStore: "ds1"}},
		{name: "3-member", o: env.TenantOptions{Namespace: ns, Cluster: "ha", DataStore: "ds3", Members: 3}},
		{name: "prefix", o: env.TenantOptions{Namespace: ns, Cluster: "pa", DataStore: "ds2", EtcdPrefix: "/bench_pa"}},
	}
	for i := range cases {
		c := &cases[i]
		var err error
		if c.t, err = e.CreateTenant(ctx, c.o); err != nil {
			b.Fatal(err)
		}
	}
	// The co-tenant that makes ds2 shared, its prefix starting with pa's.
	if _, err := e.CreateTenant(ctx, env.TenantOptions{Namespace: ns, Cluster: "pb", DataStore: "ds2", JoinDataStore: true, EtcdPrefix: "/bench_pa_b"}); err != nil {
		b.Fatal(err)
	}
	if _, err := cases[2].t.WaitBackupMode(ctx, "prefix", "prefix-backup", time.Minute); err != nil {
		b.Fatal(err)
	}
	for i := range cases {
		c := &cases[i]
		if _, err := c.t.Pad(ctx, "padding", padBytes); err != nil {
			b.Fatal(err)
		}
		bk, err := c.t.RunBackup(ctx, "backup-bench-"+c.o.Cluster)
		if err != nil {
			b.Fatal(err)
		}
		c.key = bk.Key
	}

	const rounds = 3
	b.ResetTimer()
	for i := 0; i < b.N*rounds; i++ {
		for j := range cases {
			c := &cases[(i+j)%len(cases)]
			r, err := c.t.Restore(ctx, c.key, env.RestoreOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if r.Condition.Status != "True" {
				b.Fatalf("%s restore failed: %s", c.name, r.Condition.Message)
			}
			b.StopTimer()
			b.Logf("%s: RTO %s: %s", c.name, r.RTO().Round(10*time.Millisecond), breakdown(r))
			c.rto += r.RTO()
			if err := c.t.WaitReady(ctx, time.Minute); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	n := float64(b.N * rounds)
	for _, c := range cases {
		b.ReportMetric(c.rto.Seconds()/n, "rto-"+c.name+"-s")
	}
	b.ReportMetric(cases[1].rto.Seconds()/cases[0].rto.Seconds(), "members-ratio")
}

// startBenchEnv starts the environment of a benchmark and tears it down after it; its logs are
// kept after a failure, or with KDC_KEEP_LOGS set (the pods' own account of a slow phase).
func startBenchEnv(ctx context.Context, b *testing.B) *env.Env {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Fatalf("the benchmark needs root: the node agent runs each pod in its own mount namespace (uid %d)", os.Geteuid())
	}
	e, err := env.Start(ctx, env.Options{})
	if err != nil {
		b.Fatalf("failed to start the environment: %v", err)
	}
	b.Cleanup(func() {
		if err := e.Stop(); err != nil {
			b.Errorf("failed to tear down: %v", err)
		}
		if !b.Failed() && os.Getenv("KDC_KEEP_LOGS") == "" {
			_ = os.RemoveAll(e.Dir)
		} else {
			b.Logf("logs kept in %s", e.Dir)
		}
	})
	return e
}
