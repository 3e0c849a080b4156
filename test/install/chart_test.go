package install

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"kube-dc.com/etcd-backup/test/framework"
)

// helmLabels are the labels the chart adds to every object besides the kustomize install's.
var helmLabels = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance"}

// helmTemplate renders the chart as `helm install` would, CRDs included.
func helmTemplate(t *testing.T, values ...string) []*unstructured.Unstructured {
	t.Helper()
	args := []string{"template", "kdc-etcd-backup", framework.Chart(), "--namespace", namespace, "--include-crds"}
	for _, v := range values {
		args = append(args, "--set", v)
	}
	out, err := framework.Helm(context.Background(), t.TempDir(), "", args...)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, []byte(out))
}

func decode(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatal(err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
	return objs
}

// byID indexes objects by kind, namespace and name, without the chart's own labels.
func byID(objs []*unstructured.Unstructured) map[string]map[string]any {
	m := map[string]map[string]any{}
	for _, o := range objs {
		o = o.DeepCopy()
		labels := o.GetLabels()
		for _, l := range helmLabels {
			delete(labels, l)
		}
		o.SetLabels(labels)
		if len(labels) == 0 {
			unstructured.RemoveNestedField(o.Object, "metadata", "labels")
		}
		m[o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName()] = o.Object
	}
	return m
}

// TestChartRendersTheKustomizeInstall: one source of truth. With its default values the chart
// renders the objects of manifests/default, field for field, except the Namespace, which
// `helm install --create-namespace` makes (namespace.create=true renders it too).
func TestChartRendersTheKustomizeInstall(t *testing.T) {
	kustomize := byID(render(t))
	for _, tt := range []struct {
		name   string
		values []string
		skip   string
	}{
		{name: "default values", skip: "Namespace /" + namespace},
		{name: "namespace.create", values: []string{"namespace.create=true"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			want := map[string]map[string]any{}
			for id, o := range kustomize {
				if id != tt.skip {
					want[id] = o
				}
			}
			if diff := cmp.Diff(want, byID(helmTemplate(t, tt.values...))); diff != "" {
				t.Errorf("chart and kustomize install differ (-kustomize +chart):\n%s", diff)
			}
		})
	}
}

func TestChartLint(t *testing.T) {
	out, err := framework.Helm(context.Background(), t.TempDir(), "", "lint", "--strict", framework.Chart(),
		"--set", "serviceMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if _, err := framework.Helm(context.Background(), t.TempDir(), "", "lint", "--strict", framework.Chart()); err != nil {
		t.Fatal(err)
	}
}

// TestChartValues: each value reaches the object it is for.
func TestChartValues(t *testing.T) {
	manager := func(objs []*unstructured.Unstructured) map[string]any {
		for _, o := range objs {
			if o.GetKind() == "Deployment" {
				c, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
				return c[0].(map[string]any)
			}
		}
		return nil
	}
	podSpec := func(objs []*unstructured.Unstructured, field string) any {
		for _, o := range objs {
			if o.GetKind() == "Deployment" {
				v, _, _ := unstructured.NestedFieldNoCopy(o.Object, "spec", "template", "spec", field)
				return v
			}
		}
		return nil
	}
	env := func(objs []*unstructured.Unstructured, name string) any {
		for _, e := range manager(objs)["env"].([]any) {
			if e.(map[string]any)["name"] == name {
				return e.(map[string]any)["value"]
			}
		}
		return nil
	}
	kinds := func(objs []*unstructured.Unstructured) []string {
		var k []string
		for _, o := range objs {
			if o.GetAPIVersion() == "monitoring.coreos.com/v1" || o.GetName() == "kdc-etcd-backup-metrics" || o.GetName() == "kdc-etcd-backup-dashboard" {
				k = append(k, o.GetKind()+"/"+o.GetName())
			}
		}
		sort.Strings(k)
		return k
	}
	for _, tt := range []struct {
		name   string
		values []string
		get    func([]*unstructured.Unstructured) any
		want   any
	}{
		{"image", []string{"image.repository=registry.example/team/kdc-etcd-backup", "image.tag=v9"},
			func(o []*unstructured.Unstructured) any {
				return []any{manager(o)["image"], env(o, "MANAGER_IMAGE")}
			}, []any{"registry.example/team/kdc-etcd-backup:v9", "registry.example/team/kdc-etcd-backup:v9"}},
		{"replicas", []string{"replicas=3"}, func(o []*unstructured.Unstructured) any {
			for _, x := range o {
				if x.GetKind() == "Deployment" {
					return number(x.Object, "spec", "replicas")
				}
			}
			return nil
		}, int64(3)},
		{"S3 endpoint", []string{"s3Endpoint=https://s3.example:9000"}, func(o []*unstructured.Unstructured) any { return env(o, "S3_ENDPOINT") }, "https://s3.example:9000"},
		{"restore deadlines", []string{"restore.timeouts.restoreJob=1h", "restore.timeouts.recovery=20m"},
			func(o []*unstructured.Unstructured) any {
				var flags []any
				for _, a := range manager(o)["args"].([]any) {
					if strings.HasPrefix(a.(string), "--restore-") {
						flags = append(flags, a)
					}
				}
				return flags
			}, []any{"--restore-job-timeout=1h", "--restore-recovery-timeout=20m"}},
		{"backup fleet settings", []string{"backups.spreadWindow=2h", "backups.maxConcurrent=0"},
			func(o []*unstructured.Unstructured) any {
				var flags []any
				for _, a := range manager(o)["args"].([]any) {
					if strings.HasPrefix(a.(string), "--backup-") || strings.HasPrefix(a.(string), "--max-") {
						flags = append(flags, a)
					}
				}
				return flags
			}, []any{"--backup-spread-window=2h", "--max-concurrent-backups=0"}},
		{"resources", []string{"resources.limits.memory=1Gi", "resources.requests.cpu=1"},
			func(o []*unstructured.Unstructured) any { return manager(o)["resources"] },
			map[string]any{"limits": map[string]any{"memory": "1Gi"}, "requests": map[string]any{"cpu": float64(1), "memory": "64Mi"}}},
		{"nodeSelector", []string{"nodeSelector.node-role\\.kubernetes\\.io/control-plane="},
			func(o []*unstructured.Unstructured) any { return podSpec(o, "nodeSelector") },
			map[string]any{"node-role.kubernetes.io/control-plane": ""}},
		{"tolerations", []string{"tolerations[0].key=dedicated", "tolerations[0].operator=Exists"},
			func(o []*unstructured.Unstructured) any { return podSpec(o, "tolerations") },
			[]any{map[string]any{"key": "dedicated", "operator": "Exists"}}},
		{"monitoring off by default", nil, func(o []*unstructured.Unstructured) any { return kinds(o) }, []string(nil)},
		{"monitoring", []string{"serviceMonitor.enabled=true", "prometheusRule.enabled=true", "grafanaDashboard.enabled=true"},
			func(o []*unstructured.Unstructured) any { return kinds(o) },
			[]string{"ConfigMap/kdc-etcd-backup-dashboard", "PrometheusRule/kdc-etcd-backup-alerts", "Service/kdc-etcd-backup-metrics", "ServiceMonitor/kdc-etcd-backup-manager"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.get(helmTemplate(t, tt.values...))); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestChartCarriesTheRuleFileAndDashboard: the PrometheusRule holds the rule file's groups (with
// the runbook base of the values) and the ConfigMap the dashboard, unchanged.
func TestChartCarriesTheRuleFileAndDashboard(t *testing.T) {
	objs := helmTemplate(t, "prometheusRule.enabled=true", "grafanaDashboard.enabled=true", "prometheusRule.runbookBaseURL=https://wiki.example/kdc/")
	rules, err := os.ReadFile(framework.RootDir() + "/charts/kdc-etcd-backup/files/alerts.rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	if err := yaml.Unmarshal([]byte(strings.ReplaceAll(string(rules), "https://kube-dc.com/etcd-backup/docs/", "https://wiki.example/kdc/")), &want); err != nil {
		t.Fatal(err)
	}
	dashboard, err := os.ReadFile(framework.RootDir() + "/charts/kdc-etcd-backup/files/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var found int
	for _, o := range objs {
		switch o.GetKind() {
		case "PrometheusRule":
			found++
			spec, _, _ := unstructured.NestedMap(o.Object, "spec")
			if diff := cmp.Diff(want, spec); diff != "" {
				t.Errorf("PrometheusRule spec (-rule file +chart):\n%s", diff)
			}
		case "ConfigMap":
			found++
			got, _, _ := unstructured.NestedString(o.Object, "data", "kdc-etcd-backup.json")
			if got != strings.TrimSuffix(string(dashboard), "\n") {
				t.Errorf("the dashboard ConfigMap does not hold dashboard.json")
			}
		}
	}
	if found != 2 {
		t.Errorf("found %d of the PrometheusRule and the dashboard ConfigMap", found)
	}
}

// TestServerSideDryRunOfTheChart: the rendered chart passes the real API server's admission with
// cert-manager's CRDs, and so does Helm's own install in dry-run mode.
func TestServerSideDryRunOfTheChart(t *testing.T) {
	env, ctx := dryRunEnv(t), context.Background()
	rendered, err := framework.Helm(ctx, t.TempDir(), "", "template", "kdc-etcd-backup", framework.Chart(), "--namespace", namespace, "--include-crds")
	if err != nil {
		t.Fatal(err)
	}
	out, err := env.KubectlInput(ctx, rendered, "apply", "--dry-run=server", "-f", "-")
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server of the chart failed: %v\n%s", err, out)
	}
	expectDryRunObjects(t, out)
	out, err = framework.Helm(ctx, t.TempDir(), env.Kubeconfig, "install", "kdc-etcd-backup", framework.Chart(), "--namespace", namespace, "--dry-run=server")
	if err != nil {
		t.Fatalf("helm install --dry-run=server: %v", err)
	}
	if !strings.Contains(out, "STATUS: pending-install") {
		t.Errorf("helm install --dry-run=server printed:\n%s", out)
	}
}
