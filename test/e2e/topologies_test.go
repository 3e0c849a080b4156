package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/test/e2e/env"
	"kube-dc.com/etcd-backup/test/framework"
)

// Prefixes of the two tenants on one datastore: B's starts with A's, so only "<prefix>/" keeps
// them apart (docs/jobs.md, "Prefix mode").
const (
	prefixA = "/demo_tenant"
	prefixB = "/demo_tenant_b"
)

// TargetPrefixRTO is issue 19's target for the restore of one tenant of a shared datastore;
// TargetMembersRatio issue 20's for a 3-member restore against a 1-member one (docs/benchmarks.md).
const (
	TargetPrefixRTO    = 3 * time.Second
	TargetMembersRatio = 1.5
)

type logfFunc func(format string, args ...any)

// testSharedDataStore adds tenant B on tenant A's datastore and restores A in prefix mode while
// B serves (docs/restore.md, "Shared datastores: prefix mode").
func testSharedDataStore(t *testing.T, ctx context.Context, e *env.Env, ta *env.Tenant, logf logfFunc) {
	const ns = "default"
	before, err := ta.BackupMode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := e.CreateTenant(ctx, env.TenantOptions{Namespace: ta.Namespace, Cluster: "tenant-b", DataStore: ta.DataStore, JoinDataStore: true, EtcdPrefix: prefixB})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []*env.Tenant{ta, tb} {
		m, err := x.WaitBackupMode(ctx, "prefix", "prefix-backup", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if m.Prefix != x.EtcdPrefix {
			t.Errorf("CronJob of %s: %s=%q, want %q", x.Cluster, kdcv1alpha1.AnnotationBackupEtcdPrefix, m.Prefix, x.EtcdPrefix)
		}
		logf("CronJob %s: mode %s (was %s for %s alone), prefix %s: %s", kdcv1alpha1.BackupCronJobName(x.Cluster), m.Mode, before.Mode, ta.Cluster, m.Prefix, m.Command)
	}
	out, err := e.KubectlKdc(ctx, "status", "-n", ta.Namespace)
	if err != nil {
		t.Fatalf("kubectl kdc status: %v\n%s", err, out)
	}
	modes := map[string]string{}
	for _, row := range framework.ParseTable(out) {
		modes[row["NAME"]] = row["MODE"]
	}
	if modes[ta.Cluster] != "prefix" || modes[tb.Cluster] != "prefix" {
		t.Errorf("kubectl kdc status MODE: %v, want prefix for %s and %s:\n%s", modes, ta.Cluster, tb.Cluster, out)
	}
	logf("kubectl kdc status -n %s:\n%s", ta.Namespace, out)

	// Each tenant's objects through its own kube-apiserver; then a backup of each.
	for name, data := range map[string]map[string]string{"b-config": {"owner": "team-b"}, "b-other": {"v": "1"}} {
		if err := tb.PutConfigMap(ctx, ns, name, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := ta.PutConfigMap(ctx, ns, "prefix-probe", map[string]string{"version": "v1"}); err != nil {
		t.Fatal(err)
	}
	ba, err := ta.RunBackup(ctx, "backup-prefix-a")
	if err != nil {
		t.Fatal(err)
	}
	bb, err := tb.RunBackup(ctx, "backup-prefix-b")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		x     *env.Tenant
		key   string
		other string
	}{{ta, ba.Key, prefixB}, {tb, bb.Key, prefixA}} {
		ps, err := c.x.ReadPrefixSnapshot(ctx, c.key, c.other)
		if err != nil {
			t.Fatal(err)
		}
		if ps.Header.Prefix != c.x.EtcdPrefix || ps.Keys == 0 || len(ps.Foreign) > 0 || ps.Under[c.other] > 0 {
			t.Errorf("%s: prefix %q, %d keys, outside %s/: %q, under %s/: %d; want prefix %s, keys, none outside, none of %s",
				c.key, ps.Header.Prefix, ps.Keys, c.x.EtcdPrefix, ps.Foreign, c.other, ps.Under[c.other], c.x.EtcdPrefix, c.other)
		}
		logf("%s: prefix snapshot of %s at revision %d, %d keys (%d value bytes), %d outside %s/, %d under the co-tenant's %s/",
			c.key, ps.Header.Prefix, ps.Header.Revision, ps.Keys, ps.Trailer.ValueBytes, len(ps.Foreign), c.x.EtcdPrefix, ps.Under[c.other], c.other)
	}
	out, err = e.KubectlKdc(ctx, "backups", ta.Cluster, "-n", ta.Namespace, "-o", "wide")
	if err != nil || !strings.Contains(out, ba.Key) {
		t.Errorf("kubectl kdc backups -o wide: %v\n%s", err, out)
	}
	logf("kubectl kdc backups %s -n %s -o wide:\n%s", ta.Cluster, ta.Namespace, out)

	// Changes after the backup: A's are undone by the restore, B's stay.
	if err := ta.PutConfigMap(ctx, ns, "prefix-probe", map[string]string{"version": "v2"}); err != nil {
		t.Fatal(err)
	}
	if err := ta.PutConfigMap(ctx, ns, "created-after-prefix-backup", map[string]string{"x": "y"}); err != nil {
		t.Fatal(err)
	}
	if err := tb.PutConfigMap(ctx, ns, "b-other", map[string]string{"v": "2"}); err != nil {
		t.Fatal(err)
	}
	beforeB, err := tb.ConfigMapStates(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}

	poller := tb.StartPoller(ctx, ns, beforeB)
	cw, err := ta.WatchControlPlane(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ta.Restore(ctx, ba.Key, env.RestoreOptions{})
	if err != nil {
		poller.Stop(time.Time{}, time.Time{})
		t.Fatalf("%v; pods:\n%s", err, describe(ctx, e, ta.Namespace))
	}
	rep := poller.Stop(r.Start, r.End)
	if c := r.Condition; c.Status != "True" || c.Reason != kdcv1alpha1.ReasonRestoreSucceeded {
		t.Fatalf("RestoreReady = %s/%s %q, want True; pods:\n%s", c.Status, c.Reason, c.Message, describe(ctx, e, ta.Namespace))
	}
	want := []kdcv1alpha1.RestorePhase{kdcv1alpha1.PhaseValidating, kdcv1alpha1.PhaseDrainingControlPlane, kdcv1alpha1.PhaseRestoringSnapshot, kdcv1alpha1.PhaseStartingControlPlane}
	if got := r.PhaseNames(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("prefix restore phases %v, want %v (etcd stays up)", got, want)
	}
	logf("prefix restore of %s from %s: RTO %s (target < %s): %s", ta.Cluster, ba.Key, r.RTO().Round(10*time.Millisecond), TargetPrefixRTO, breakdown(r))
	cwr, err := cw.Stop(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range cwr.Lines(r) {
		logf("%s", l)
	}
	for _, v := range cwr.Violations {
		t.Errorf("control plane of %s during the prefix restore: %s", ta.Cluster, v)
	}
	logf("%s's API server during %s's restore: %d lists (%d during it), %d errors, %d with other content",
		tb.Cluster, ta.Cluster, rep.OK+rep.Errors+rep.Wrong, rep.OKDuring+rep.ErrorsDuring+rep.WrongDuring, rep.Errors, rep.Wrong)
	if rep.Errors > 0 || rep.Wrong > 0 {
		t.Errorf("%s's API server failed or changed during %s's restore: %d errors, %d wrong lists: %q", tb.Cluster, ta.Cluster, rep.Errors, rep.Wrong, rep.Samples)
	}
	if rep.OKDuring == 0 {
		t.Errorf("no list of %s overlapped %s's restore", tb.Cluster, ta.Cluster)
	}
	afterB, err := tb.ConfigMapStates(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	if d := env.DiffStates(beforeB, afterB); len(d) > 0 {
		t.Errorf("%s's ConfigMaps changed by %s's restore: %q", tb.Cluster, ta.Cluster, d)
	}
	logf("%s's ConfigMaps after %s's restore: same data and resourceVersions as before it (%d objects)", tb.Cluster, ta.Cluster, len(afterB))

	if err := ta.WaitReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	expectCM(t, ctx, ta, ns, "prefix-probe", map[string]string{"version": "v1"})
	expectCM(t, ctx, ta, ns, "created-after-prefix-backup", nil)
	expectCM(t, ctx, ta, ns, "kept", map[string]string{"owner": "team-a"})
	logf("%s serves the snapshot's objects: prefix-probe=v1, kept present, created-after-prefix-backup gone", ta.Cluster)
}

// testMultiMember restores a tenant on a dedicated 3-member datastore (docs/restore.md,
// "Multi-member datastores") and compares its RTO with the 1-member restore of the same run.
func testMultiMember(t *testing.T, ctx context.Context, e *env.Env, rto1 time.Duration, logf logfFunc) {
	const ns = "default"
	th, err := e.CreateTenant(ctx, env.TenantOptions{Namespace: "demo", Cluster: "tenant-ha", DataStore: "ds3", Members: 3, EtcdVersion: framework.EtcdVersion35})
	if err != nil {
		t.Fatal(err)
	}
	m, err := th.EtcdMembers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	logf("before: etcdctl member list:\n%setcdctl endpoint status:\n%s", m.MemberList, m.EndpointStatus)
	if err := th.PutConfigMap(ctx, ns, "app-config", map[string]string{"version": "v1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := th.Pad(ctx, "padding", padBytes); err != nil {
		t.Fatal(err)
	}
	b, err := th.RunBackup(ctx, "backup-ha-1")
	if err != nil {
		t.Fatal(err)
	}
	logf("backup of the 3-member datastore: %s in %s", b.Key, b.Duration.Round(10*time.Millisecond))
	if err := th.PutConfigMap(ctx, ns, "app-config", map[string]string{"version": "v2"}); err != nil {
		t.Fatal(err)
	}
	if err := th.PutConfigMap(ctx, ns, "created-after-backup", map[string]string{"x": "y"}); err != nil {
		t.Fatal(err)
	}
	cw, err := th.WatchControlPlane(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, err := th.Restore(ctx, b.Key, env.RestoreOptions{})
	if err != nil {
		t.Fatalf("%v; pods:\n%s", err, describe(ctx, e, th.Namespace))
	}
	if c := r.Condition; c.Status != "True" || c.Reason != kdcv1alpha1.ReasonRestoreSucceeded {
		t.Fatalf("RestoreReady = %s/%s %q, want True; pods:\n%s", c.Status, c.Reason, c.Message, describe(ctx, e, th.Namespace))
	}
	if got, want := r.PhaseNames(), kdcv1alpha1.RestorePhases[:6]; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("3-member restore phases %v, want %v", got, want)
	}
	ratio := float64(r.RTO()) / float64(rto1)
	logf("3-member restore RTO %s against the 1-member %s of this run: %.2fx (target <= %.1fx): %s",
		r.RTO().Round(10*time.Millisecond), rto1.Round(10*time.Millisecond), ratio, TargetMembersRatio, breakdown(r))
	cwr, err := cw.Stop(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range cwr.Violations {
		t.Errorf("control plane of %s during the restore: %s", th.Cluster, v)
	}
	if r.RTO() > maxRTO {
		t.Errorf("3-member RTO %s exceeds the sanity bound %s", r.RTO(), maxRTO)
	}
	if err := th.WaitReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	m, err = th.EtcdMembers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	logf("after: etcdctl member list:\n%setcdctl endpoint status:\n%s", m.MemberList, m.EndpointStatus)
	if len(m.Members) != 3 || m.Started != 3 || len(m.ClusterIDs) != 1 || len(m.Leaders) != 1 || m.LeaderEndpoints != 1 {
		t.Errorf("after the restore: members %v (%d started), cluster IDs %v, leaders %v (%d endpoints leading); want 3 started, one cluster ID, one leader",
			m.Members, m.Started, m.ClusterIDs, m.Leaders, m.LeaderEndpoints)
	}
	logf("after the restore: %d members started %v, cluster ID %v, leader %v, revisions %v", m.Started, m.Members, m.ClusterIDs, m.Leaders, m.Revisions)
	expectCM(t, ctx, th, ns, "app-config", map[string]string{"version": "v1"})
	expectCM(t, ctx, th, ns, "created-after-backup", nil)
	logf("%s serves the snapshot's objects: app-config=v1, created-after-backup gone", th.Cluster)
}

// expectCM checks what tenant x serves of ConfigMap ns/name (nil: absent).
func expectCM(t *testing.T, ctx context.Context, x *env.Tenant, ns, name string, want map[string]string) {
	t.Helper()
	got, found, err := x.ConfigMap(ctx, ns, name)
	switch {
	case err != nil:
		t.Errorf("failed to read ConfigMap %s from %s: %v", name, x.Cluster, err)
	case want == nil && found:
		t.Errorf("%s serves ConfigMap %s = %v, want it absent", x.Cluster, name, got)
	case want != nil && !found:
		t.Errorf("%s does not serve ConfigMap %s, want %v", x.Cluster, name, want)
	case want != nil && fmt.Sprint(got) != fmt.Sprint(want):
		t.Errorf("%s ConfigMap %s = %v, want %v", x.Cluster, name, got, want)
	}
}
