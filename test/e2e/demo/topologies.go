package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/test/e2e/env"
)

// The tenants' etcd prefixes: B's starts with A's, so only "<prefix>/" keeps them apart
// (docs/jobs.md, "Prefix mode").
const (
	tenantPrefix  = "/demo_tenant"
	tenantBPrefix = "/demo_tenant_b"
)

// Targets of issues 19 and 20 (docs/benchmarks.md).
const (
	targetPrefixRTO    = 3 * time.Second
	targetMembersRatio = 1.5
)

// sharedDataStore adds tenant-b on tenant's datastore and restores tenant in prefix mode while
// tenant-b serves (docs/restore.md, "Shared datastores: prefix mode").
func (d *demo) sharedDataStore(ctx context.Context, ta *env.Tenant) error {
	e := d.env
	ns := ta.Namespace
	d.title("A second tenant cluster on datastore %s: both switch to prefix mode", ta.DataStore)
	tb, err := e.CreateTenant(ctx, env.TenantOptions{Namespace: ns, Cluster: "tenant-b", DataStore: ta.DataStore, JoinDataStore: true, EtcdPrefix: tenantBPrefix})
	if err != nil {
		return err
	}
	for _, x := range []*env.Tenant{ta, tb} {
		m, err := x.WaitBackupMode(ctx, "prefix", "prefix-backup", time.Minute)
		if err != nil {
			return err
		}
		d.say("CronJob %s: mode %s, prefix %s: %s", kdcv1alpha1.BackupCronJobName(x.Cluster), m.Mode, m.Prefix, m.Command)
	}
	out, err := e.KubectlKdc(ctx, "status", "-n", ns)
	d.cmd("kubectl kdc status -n "+ns, out)
	if err != nil {
		return err
	}

	d.title("Prefix backups: each tenant's stored object holds its own keys only")
	for name, data := range map[string]map[string]string{"b-config": {"owner": "team-b"}, "b-other": {"v": "1"}} {
		if err := tb.PutConfigMap(ctx, "default", name, data); err != nil {
			return err
		}
	}
	if err := ta.PutConfigMap(ctx, "default", "prefix-probe", map[string]string{"version": "v1"}); err != nil {
		return err
	}
	d.say("tenant-b: ConfigMaps b-config and b-other=1; tenant: prefix-probe=v1")
	ba, err := ta.RunBackup(ctx, "backup-prefix-a")
	if err != nil {
		return err
	}
	bb, err := tb.RunBackup(ctx, "backup-prefix-b")
	if err != nil {
		return err
	}
	for _, c := range []struct {
		x          *env.Tenant
		b          *env.Backup
		coTenant   string
		otherLabel string
	}{{ta, ba, tenantBPrefix, "tenant-b"}, {tb, bb, tenantPrefix, "tenant"}} {
		ps, err := c.x.ReadPrefixSnapshot(ctx, c.b.Key, c.coTenant)
		if err != nil {
			return err
		}
		d.say("%s (Job %s, %s): prefix %s at revision %d, %d keys, %d outside %s/, %d of %s's %s/",
			c.b.Key, c.b.Job, c.b.Duration.Round(10*time.Millisecond), ps.Header.Prefix, ps.Header.Revision, ps.Keys, len(ps.Foreign), c.x.EtcdPrefix, ps.Under[c.coTenant], c.otherLabel, c.coTenant)
		if len(ps.Foreign) > 0 || ps.Under[c.coTenant] > 0 {
			return fmt.Errorf("%s holds keys of another tenant: %q", c.b.Key, ps.Foreign)
		}
	}
	out, err = e.KubectlKdc(ctx, "backups", ta.Cluster, "-n", ns, "-o", "wide")
	d.cmd("kubectl kdc backups "+ta.Cluster+" -n "+ns+" -o wide", out)
	if err != nil {
		return err
	}

	d.title("Restore tenant from %s while tenant-b serves", ba.Key)
	if err := ta.PutConfigMap(ctx, "default", "prefix-probe", map[string]string{"version": "v2"}); err != nil {
		return err
	}
	if err := ta.PutConfigMap(ctx, "default", "created-after-prefix-backup", map[string]string{"x": "y"}); err != nil {
		return err
	}
	if err := tb.PutConfigMap(ctx, "default", "b-other", map[string]string{"v": "2"}); err != nil {
		return err
	}
	d.say("after the backup: tenant's prefix-probe=v2 and created-after-prefix-backup; tenant-b's b-other=2")
	beforeB, err := tb.ConfigMapStates(ctx, "default")
	if err != nil {
		return err
	}
	poller := tb.StartPoller(ctx, "default", beforeB)
	rr, err := ta.StartRestore(ctx, ba.Key, env.RestoreOptions{})
	if err != nil {
		poller.Stop(time.Time{}, time.Time{})
		return err
	}
	d.cmd(fmt.Sprintf("kubectl annotate kdccluster %s -n %s %s=%s", ta.Cluster, ns, kdcv1alpha1.AnnotationRestoreFrom, ba.Key), rr.Output)
	out, _ = e.KubectlKdc(ctx, "restore", ta.Cluster, "-n", ns, "--wait")
	d.cmd("kubectl kdc restore "+ta.Cluster+" -n "+ns+" --wait", out)
	r, err := rr.Wait()
	if err != nil {
		poller.Stop(time.Time{}, time.Time{})
		return err
	}
	rep := poller.Stop(r.Start, r.End)
	if r.Condition.Status != "True" {
		return fmt.Errorf("the prefix restore failed: %s", r.Condition.Message)
	}
	d.say("RTO (kubectl annotate -> RestoreReady=True): %s (target < %s: %s); phases %v", r.RTO().Round(10*time.Millisecond), targetPrefixRTO, met(r.RTO() < targetPrefixRTO), r.PhaseNames())
	for _, p := range r.PhaseDurations() {
		d.say("  %-22s %8s", p.Phase, p.Duration.Round(10*time.Millisecond))
	}
	d.say("tenant-b's API server, listed every 20ms: %d lists during the restore, %d errors, %d with other content (in all %d)",
		rep.OKDuring+rep.ErrorsDuring+rep.WrongDuring, rep.Errors, rep.Wrong, rep.OK+rep.Errors+rep.Wrong)
	if rep.Errors > 0 || rep.Wrong > 0 {
		return fmt.Errorf("tenant-b failed or changed during tenant's restore: %q", rep.Samples)
	}
	afterB, err := tb.ConfigMapStates(ctx, "default")
	if err != nil {
		return err
	}
	if diff := env.DiffStates(beforeB, afterB); len(diff) > 0 {
		return fmt.Errorf("tenant-b's ConfigMaps changed: %q", diff)
	}
	d.say("tenant-b's ConfigMaps: the same data and resourceVersions as before the restore")
	if err := ta.WaitReady(ctx, time.Minute); err != nil {
		return err
	}
	d.cmd("kubectl --kubeconfig "+ta.Kubeconfig+" get configmaps -n default -o custom-columns=NAME:.metadata.name,DATA:.data", tenantGetData(ctx, e, ta))
	d.cmd("kubectl --kubeconfig "+tb.Kubeconfig+" get configmaps -n default -o custom-columns=NAME:.metadata.name,DATA:.data,RV:.metadata.resourceVersion", tenantGetDataRV(ctx, e, tb))
	data, found, err := ta.ConfigMap(ctx, "default", "prefix-probe")
	if err != nil {
		return err
	}
	_, after, err := ta.ConfigMap(ctx, "default", "created-after-prefix-backup")
	if err != nil {
		return err
	}
	if !found || data["version"] != "v1" || after {
		return fmt.Errorf("tenant does not serve the snapshot's data: prefix-probe=%v, created-after-prefix-backup present=%v", data, after)
	}
	d.say("tenant serves the snapshot's objects (prefix-probe=v1, created-after-prefix-backup gone); tenant-b was not touched")
	return nil
}

// multiMember restores a tenant on a dedicated datastore of d.members etcd members and compares
// its RTO with the 1-member restore r1 of this run (docs/restore.md, "Multi-member datastores").
func (d *demo) multiMember(ctx context.Context, r1 *env.Restore, padMB int, etcdVersion string) error {
	e := d.env
	const ns = "demo"
	d.title("A tenant on a dedicated %d-member datastore (StatefulSet podManagementPolicy Parallel)", d.members)
	th, err := e.CreateTenant(ctx, env.TenantOptions{Namespace: ns, Cluster: "tenant-ha", DataStore: "ds3", Members: d.members, EtcdVersion: etcdVersion})
	if err != nil {
		return err
	}
	m, err := th.EtcdMembers(ctx)
	if err != nil {
		return err
	}
	d.cmd("etcdctl member list -w table      # from a pod of the etcd image, TLS to the members' DNS names", m.MemberList)
	if err := th.PutConfigMap(ctx, "default", "app-config", map[string]string{"version": "v1"}); err != nil {
		return err
	}
	n, err := th.Pad(ctx, "padding", padMB<<20)
	if err != nil {
		return err
	}
	b, err := th.RunBackup(ctx, "backup-ha-1")
	if err != nil {
		return err
	}
	d.say("app-config=v1 and %d padding ConfigMaps (~%d MiB); backup %s in %s", n, padMB, b.Key, b.Duration.Round(10*time.Millisecond))
	if err := th.PutConfigMap(ctx, "default", "app-config", map[string]string{"version": "v2"}); err != nil {
		return err
	}
	if err := th.PutConfigMap(ctx, "default", "created-after-backup", map[string]string{"x": "y"}); err != nil {
		return err
	}
	d.say("after the backup: app-config=v2, created-after-backup")

	d.title("Restore the %d-member datastore from %s", d.members, b.Key)
	rr, err := th.StartRestore(ctx, b.Key, env.RestoreOptions{})
	if err != nil {
		return err
	}
	d.cmd(fmt.Sprintf("kubectl annotate kdccluster %s -n %s %s=%s", th.Cluster, ns, kdcv1alpha1.AnnotationRestoreFrom, b.Key), rr.Output)
	out, _ := e.KubectlKdc(ctx, "restore", th.Cluster, "-n", ns, "--wait")
	d.cmd("kubectl kdc restore "+th.Cluster+" -n "+ns+" --wait", out)
	r, err := rr.Wait()
	if err != nil {
		return err
	}
	if r.Condition.Status != "True" {
		return fmt.Errorf("the %d-member restore failed: %s", d.members, r.Condition.Message)
	}
	ratio := float64(r.RTO()) / float64(r1.RTO())
	d.say("RTO %s against the 1-member restore's %s in this run: %.2fx (target <= %.1fx: %s)", r.RTO().Round(10*time.Millisecond), r1.RTO().Round(10*time.Millisecond), ratio, targetMembersRatio, met(ratio <= targetMembersRatio))
	one := map[kdcv1alpha1.RestorePhase]time.Duration{}
	for _, p := range r1.PhaseDurations() {
		one[p.Phase] = p.Duration
	}
	d.say("  %-22s %10s %10s", "phase", fmt.Sprintf("%d members", d.members), "1 member")
	for _, p := range r.PhaseDurations() {
		d.say("  %-22s %10s %10s", p.Phase, p.Duration.Round(10*time.Millisecond), one[p.Phase].Round(10*time.Millisecond))
	}
	if err := th.WaitReady(ctx, time.Minute); err != nil {
		return err
	}
	if m, err = th.EtcdMembers(ctx); err != nil {
		return err
	}
	d.cmd("etcdctl member list -w table", m.MemberList)
	d.cmd("etcdctl endpoint status -w table", m.EndpointStatus)
	d.say("%d of %d members started, cluster IDs %v, leaders %v, revisions %v", m.Started, len(m.Members), m.ClusterIDs, m.Leaders, m.Revisions)
	if m.Started != int(d.members) || len(m.ClusterIDs) != 1 || len(m.Leaders) != 1 {
		return fmt.Errorf("after the restore etcd is not one cluster of %d started members with one leader", d.members)
	}
	d.cmd("kubectl --kubeconfig "+th.Kubeconfig+" get configmaps -n default -o custom-columns=NAME:.metadata.name,DATA:.data", tenantGetData(ctx, e, th))
	data, found, err := th.ConfigMap(ctx, "default", "app-config")
	if err != nil {
		return err
	}
	_, after, err := th.ConfigMap(ctx, "default", "created-after-backup")
	if err != nil {
		return err
	}
	if !found || data["version"] != "v1" || after {
		return fmt.Errorf("tenant-ha does not serve the snapshot's data: app-config=%v, created-after-backup present=%v", data, after)
	}
	d.say("tenant-ha serves the snapshot's objects (app-config=v1, created-after-backup gone)")
	return nil
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func tenantGetDataRV(ctx context.Context, e *env.Env, t *env.Tenant) string {
	out, _ := e.Mgmt.KubectlAs(ctx, t.Kubeconfig, "get", "configmaps", "-n", "default", "-o", "custom-columns=NAME:.metadata.name,DATA:.data,RV:.metadata.resourceVersion")
	return strings.TrimRight(out, "\n")
}
