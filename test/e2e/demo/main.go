// Command demo is `make demo`: it brings up, on loopback, a management cluster with the
// manager's image (make image) installed with the Helm chart (--install=kustomize: from
// manifests/default), a tenant cluster laid out as Kube-DC does, and walks
// the story of a backup and a restore, printing each step with its timing (see docs/demo.md).
//
//	go run ./test/e2e/demo [--keep] [--pad-mb 20] [--etcd-version v3.5.35] [--compare=true] [--keep-logs] [--install helm|kustomize] [--shared=true] [--members 3]
//
// It tears everything down on exit and on Ctrl-C; --keep keeps it running until Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/test/e2e/env"
	"kube-dc.com/etcd-backup/test/framework"
)

func main() {
	keep := flag.Bool("keep", false, "keep the environment running after the story until Ctrl-C")
	padMB := flag.Int("pad-mb", 20, "MiB of ConfigMap data written into the tenant before the backup")
	etcdVersion := flag.String("etcd-version", framework.EtcdVersion35, "etcd version of the tenant datastore: "+strings.Join([]string{framework.EtcdVersion35, framework.EtcdVersion36, framework.EtcdVersion}, ", "))
	compare := flag.Bool("compare", true, "also time the restore's steps done directly (etcdutl, etcd, kube-apiserver as plain processes)")
	dir := flag.String("dir", "", "directory for logs and state (default a new one under /var/tmp)")
	install := flag.String("install", env.InstallHelm, "how to install the manager: "+env.InstallHelm+" (the chart) or "+env.InstallKustomize+" (manifests/default)")
	keepLogs := flag.Bool("keep-logs", false, "keep the logs and state directory after a successful run (it is always kept after a failure)")
	shared := flag.Bool("shared", true, "add a second tenant on the same datastore and restore the first in prefix mode while the second serves")
	members := flag.Int("members", 3, "also restore a tenant on a dedicated datastore of this many etcd members (0: skip)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{start: time.Now(), shared: *shared, members: int32(*members)}
	err := d.run(ctx, *keep, *padMB, *etcdVersion, *compare, env.Options{Logf: d.say, Dir: *dir, Install: *install})
	if d.env != nil {
		d.say("tearing down (every process this demo started is stopped by its PID)")
		if serr := d.env.Stop(); serr != nil {
			fmt.Fprintf(os.Stderr, "demo: teardown: %v\n", serr)
		}
		if err == nil && !*keepLogs {
			_ = os.RemoveAll(d.env.Dir)
			d.say("done")
		} else {
			d.say("done; logs kept in %s", d.env.Dir)
		}
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

type demo struct {
	start time.Time
	env   *env.Env
	step  int
	// shared and members: the datastore topologies after the main story (topologies.go).
	shared  bool
	members int32
}

func (d *demo) stamp() string { return fmt.Sprintf("[%7.2fs]", time.Since(d.start).Seconds()) }

// title starts a numbered step.
func (d *demo) title(format string, args ...any) {
	d.step++
	fmt.Printf("\n%s == %d. %s\n", d.stamp(), d.step, fmt.Sprintf(format, args...))
}

// say prints a line of the current step.
func (d *demo) say(format string, args ...any) {
	fmt.Printf("%s    %s\n", d.stamp(), fmt.Sprintf(format, args...))
}

// cmd prints a command and its indented output.
func (d *demo) cmd(command, out string) {
	fmt.Printf("%s    $ %s\n", d.stamp(), command)
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		fmt.Printf("%s      %s\n", strings.Repeat(" ", len(d.stamp())), l)
	}
}

func (d *demo) run(ctx context.Context, keep bool, padMB int, etcdVersion string, compare bool, opts env.Options) error {
	const (
		ns      = "demo"
		cluster = "tenant"
		ds      = "ds1"
	)
	d.title("Management cluster on loopback: kube-apiserver + etcd, kube-controller-manager, MinIO, cert-manager, node agent, the manager")
	var err error
	if d.env, err = env.Start(ctx, opts); err != nil {
		return err
	}
	e := d.env
	out, _ := e.Kubectl(ctx, "get", "deployment,pods,svc", "-n", env.ManagerNamespace, "-o", "wide")
	d.cmd("kubectl get deployment,pods,svc -n "+env.ManagerNamespace+" -o wide", out)

	d.title("Project %q with its ObjectBucketClaim and a tenant cluster as Kube-DC lays it out", ns)
	if err := e.NewProject(ctx, ns); err != nil {
		return err
	}
	t, err := e.CreateTenant(ctx, env.TenantOptions{Namespace: ns, Cluster: cluster, DataStore: ds, EtcdVersion: etcdVersion, EtcdPrefix: tenantPrefix})
	if err != nil {
		return err
	}
	out, _ = e.Kubectl(ctx, "get", "kdcclusterdatastore,kdccluster,tenantcontrolplane,statefulset,deployment,pvc,pods,cronjob", "-n", ns)
	d.cmd("kubectl get kdcclusterdatastore,kdccluster,tenantcontrolplane,statefulset,deployment,pvc,pods,cronjob -n "+ns, out)
	cp := t.ControlPlaneName()
	cols := "custom-columns=DEPLOYMENT:.metadata.name,OWNER:.metadata.ownerReferences[*].kind,NAME:.metadata.ownerReferences[*].name,CONTROLLER:.metadata.ownerReferences[*].controller,REPLICAS:.spec.replicas,POD-LABEL:.spec.template.metadata.labels.kamaji\\.clastix\\.io/name"
	out, _ = e.Kubectl(ctx, "get", "deployment", cp, "-n", ns, "-o", cols)
	d.cmd("kubectl get deployment "+cp+" -n "+ns+" -o '"+cols+"'", out)
	rev, err := t.ScaleAgainstOwner(ctx)
	if err != nil {
		return err
	}
	d.cmd("kubectl scale deployment "+cp+" -n "+ns+" --replicas=0", rev.Output)
	d.say("Kamaji (the stand-in) set %s back to %d replica(s) after %s (reverts so far: %d); pods %v -> %v. A restore must pause the TenantControlPlane before it drains the control plane",
		cp, rev.Replicas, rev.Took.Round(time.Millisecond), rev.Reverts, rev.PodsBefore, rev.PodsAfter)

	d.title("Tenant objects, through the tenant's own kube-apiserver")
	if err := t.PutConfigMap(ctx, "default", "app-config", map[string]string{"version": "v1"}); err != nil {
		return err
	}
	if err := t.PutConfigMap(ctx, "default", "kept", map[string]string{"owner": "team-a"}); err != nil {
		return err
	}
	start := time.Now()
	n, err := t.Pad(ctx, "padding", padMB<<20)
	if err != nil {
		return err
	}
	d.say("created ConfigMaps app-config (version=v1) and kept, and %d padding ConfigMaps (~%d MiB) in %s", n, padMB, time.Since(start).Round(10*time.Millisecond))
	d.cmd("kubectl --kubeconfig "+t.Kubeconfig+" get configmaps -n default", tenantGet(ctx, e, t))

	d.title("Backup: a Job from CronJob %s uploads a snapshot", kdcv1alpha1.BackupCronJobName(cluster))
	d.say("$ kubectl create job -n %s --from=cronjob/%s backup-demo-1", ns, kdcv1alpha1.BackupCronJobName(cluster))
	b, err := t.RunBackup(ctx, "backup-demo-1")
	if err != nil {
		return err
	}
	size, _ := t.SnapshotSize(ctx, b.Key)
	d.say("Job succeeded in %s: status.latestBackupKey = %s (%.1f MiB in s3://%s)", b.Duration.Round(10*time.Millisecond), b.Key, float64(size)/(1<<20), kdcv1alpha1.DefaultBucketName(ns))
	out, _ = t.GetKdcCluster(ctx)
	d.cmd("kubectl get kdccluster -n "+ns, out)

	d.title("kubectl kdc: the operator's view (the plugin through kubectl's plugin discovery)")
	for _, args := range [][]string{{"status", "-A"}, {"backups", cluster, "-n", ns}} {
		out, err := e.KubectlKdc(ctx, args...)
		d.cmd("kubectl kdc "+strings.Join(args, " "), out)
		if err != nil {
			return fmt.Errorf("kubectl kdc %s: %w", strings.Join(args, " "), err)
		}
	}

	d.title("Changes after the snapshot")
	if err := t.PutConfigMap(ctx, "default", "app-config", map[string]string{"version": "v2"}); err != nil {
		return err
	}
	if err := t.PutConfigMap(ctx, "default", "created-after-backup", map[string]string{"x": "y"}); err != nil {
		return err
	}
	d.say("app-config changed to version=v2; created-after-backup created")
	d.cmd("kubectl --kubeconfig "+t.Kubeconfig+" get configmaps -n default -o custom-columns=NAME:.metadata.name,DATA:.data", tenantGetData(ctx, e, t))

	d.title("Bad restore requests are rejected by the webhook (nothing is persisted)")
	for _, key := range []string{"other/other-20250101T020000Z.db", "tenant/../tenant-20250101T020000Z.db"} {
		out, err := t.Annotate(ctx, key)
		if err == nil {
			return fmt.Errorf("the webhook admitted %s: %s", key, out)
		}
		d.cmd(fmt.Sprintf("kubectl annotate kdccluster %s -n %s %s=%s", cluster, ns, kdcv1alpha1.AnnotationRestoreFrom, key), out)
	}

	d.title("Restore from %s", b.Key)
	cw, err := t.WatchControlPlane(ctx)
	if err != nil {
		return err
	}
	rr, err := t.StartRestore(ctx, b.Key, env.RestoreOptions{})
	if err != nil {
		return err
	}
	d.cmd(fmt.Sprintf("kubectl annotate kdccluster %s -n %s %s=%s", cluster, ns, kdcv1alpha1.AnnotationRestoreFrom, b.Key), rr.Output)
	second := b.Key[:len("tenant/tenant-20060102T15")] + "5959Z.db"
	out, err = t.Annotate(ctx, second)
	if err == nil {
		return fmt.Errorf("a second restore was admitted while one runs: %s", out)
	}
	d.cmd(fmt.Sprintf("kubectl annotate --overwrite kdccluster %s -n %s %s=%s   # a second restore while one runs", cluster, ns, kdcv1alpha1.AnnotationRestoreFrom, second), out)
	// Follow the running restore live, as an operator would.
	followArgs := []string{"restore", cluster, "-n", ns, "--wait"}
	out, ferr := e.KubectlKdc(ctx, followArgs...)
	d.cmd("kubectl kdc "+strings.Join(followArgs, " "), out)
	r, err := rr.Wait()
	if err != nil {
		return err
	}
	if ferr != nil && r.Condition.Status == "True" && !strings.Contains(out, "no restore is running") {
		return fmt.Errorf("kubectl kdc restore --wait failed on a restore that succeeded: %w", ferr)
	}
	out, _ = t.GetKdcCluster(ctx)
	d.cmd("kubectl get kdccluster -n "+ns, out)
	d.say("RestoreReady=%s reason %s: %s", r.Condition.Status, r.Condition.Reason, r.Condition.Message)
	if r.Condition.Status != "True" {
		return fmt.Errorf("the restore failed: %s", r.Condition.Message)
	}
	d.say("RTO (kubectl annotate -> RestoreReady=True): %s", r.RTO().Round(10*time.Millisecond))
	for _, p := range r.PhaseDurations() {
		d.say("  %-22s %8s", p.Phase, p.Duration.Round(10*time.Millisecond))
	}
	// The watch shows the write barrier held against Kamaji (docs/demo.md).
	rep, err := cw.Stop(r)
	if err != nil {
		return err
	}
	d.say("the control plane during the restore (a watch on its pods and TenantControlPlane):")
	for _, l := range rep.Lines(r) {
		d.say("  %s", l)
	}
	if len(rep.Violations) > 0 {
		return fmt.Errorf("the control plane was not held down during the restore: %s", strings.Join(rep.Violations, "; "))
	}

	d.title("The tenant serves exactly the snapshot's objects")
	if err := t.WaitReady(ctx, time.Minute); err != nil {
		return err
	}
	d.cmd("kubectl --kubeconfig "+t.Kubeconfig+" get configmaps -n default -o custom-columns=NAME:.metadata.name,DATA:.data", tenantGetData(ctx, e, t))
	data, found, err := t.ConfigMap(ctx, "default", "app-config")
	if err != nil {
		return err
	}
	_, after, err := t.ConfigMap(ctx, "default", "created-after-backup")
	if err != nil {
		return err
	}
	if !found || data["version"] != "v1" || after {
		return fmt.Errorf("the tenant does not serve the snapshot's data: app-config=%v, created-after-backup present=%v", data, after)
	}
	d.say("app-config is back to version=v1 and created-after-backup is gone")

	if compare {
		d.title("The same steps done directly (no controller, Jobs or pods), on the same snapshot")
		direct, err := t.DirectRestore(ctx, b.Key)
		if err != nil {
			return err
		}
		printComparison(d, r, direct)
	}

	if d.shared {
		if err := d.sharedDataStore(ctx, t); err != nil {
			return err
		}
	}
	if d.members > 1 {
		if err := d.multiMember(ctx, r, padMB, etcdVersion); err != nil {
			return err
		}
	}

	d.title("Environment")
	d.say("management cluster: kubectl --kubeconfig %s get kdccluster -A", e.Kubeconfig)
	d.say("tenant cluster:     kubectl --kubeconfig %s get configmaps -A", t.Kubeconfig)
	d.say("logs: %s (pods under nodeagent/pods/*/logs)", e.Dir)
	if keep {
		d.say("--keep: running until Ctrl-C, which tears everything down")
		<-ctx.Done()
		return nil
	}
	d.say("tearing down now; run with --keep to keep it running until Ctrl-C")
	return nil
}

func printComparison(d *demo, r *env.Restore, direct *env.DirectSteps) {
	for _, l := range env.Comparison(r, direct) {
		d.say("%s", l)
	}
}

func tenantGet(ctx context.Context, e *env.Env, t *env.Tenant) string {
	out, _ := e.Mgmt.KubectlAs(ctx, t.Kubeconfig, "get", "configmaps", "-n", "default")
	return out
}

func tenantGetData(ctx context.Context, e *env.Env, t *env.Tenant) string {
	out, _ := e.Mgmt.KubectlAs(ctx, t.Kubeconfig, "get", "configmaps", "-n", "default", "-o", "custom-columns=NAME:.metadata.name,DATA:.data")
	return out
}
