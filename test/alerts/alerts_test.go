package alerts

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"kube-dc.com/etcd-backup/test/framework"
)

const (
	filesDir    = "charts/kdc-etcd-backup/files"
	rulesFile   = filesDir + "/alerts.rules.yaml"
	dashboard   = filesDir + "/dashboard.json"
	runbookDoc  = "docs/alerts.md"
	runbookBase = "https://kube-dc.com/etcd-backup/docs/alerts.md#"
)

func root(p string) string { return filepath.Join(framework.RootDir(), p) }

func promtool(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := framework.RequireBinary(root("bin/tools/promtool"))
	if err != nil {
		t.Fatalf("%v (hack/bins.sh promtool)", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = framework.RootDir()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestPromtoolRuleTests(t *testing.T) {
	promtool(t, "check", "rules", rulesFile)
	t.Log(promtool(t, "test", "rules", "test/alerts/alerts_test.yaml"))
}

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Record      string            `json:"record"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

func readRules(t *testing.T) ruleFile {
	t.Helper()
	data, err := os.ReadFile(root(rulesFile))
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.UnmarshalStrict(data, &rf); err != nil {
		t.Fatal(err)
	}
	return rf
}

// TestEveryAlertHasARunbookAndATest: each alert links to its own section of docs/alerts.md,
// carries a severity, and promtool's tests cover it.
func TestEveryAlertHasARunbookAndATest(t *testing.T) {
	doc, err := os.ReadFile(root(runbookDoc))
	if err != nil {
		t.Fatal(err)
	}
	headings := map[string]bool{}
	for _, l := range strings.Split(string(doc), "\n") {
		if h, ok := strings.CutPrefix(l, "## "); ok {
			headings[strings.ToLower(strings.TrimSpace(h))] = true
		}
	}
	tests, err := os.ReadFile(root("test/alerts/alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var alerts []string
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts = append(alerts, r.Alert)
			anchor := strings.ToLower(r.Alert)
			if got, want := r.Annotations["runbook_url"], runbookBase+anchor; got != want {
				t.Errorf("%s runbook_url = %q, want %q", r.Alert, got, want)
			}
			if !headings[anchor] {
				t.Errorf("%s has no section \"## %s\" in %s", r.Alert, r.Alert, runbookDoc)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s severity = %q, want warning or critical", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s lacks a summary or description", r.Alert)
			}
			if !strings.Contains(string(tests), "alertname: "+r.Alert+"\n") {
				t.Errorf("%s has no promtool test in test/alerts/alerts_test.yaml", r.Alert)
			}
		}
	}
	want := []string{"KdcEtcdBackupFailing", "KdcEtcdBackupNotRunning", "KdcEtcdBackupStale", "KdcEtcdBackupTooOld", "KdcEtcdRestoreFailed", "KdcEtcdRestorePastDeadline"}
	sort.Strings(alerts)
	if diff := cmp.Diff(want, alerts); diff != "" {
		t.Errorf("alerts (-want +got):\n%s", diff)
	}
}

type dashboardFile struct {
	UID    string `json:"uid"`
	Title  string `json:"title"`
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// grafanaVariables stand in for the dashboard's variables so promtool can parse the queries.
var grafanaVariables = strings.NewReplacer("$namespace", ".*", "$__range", "1h", "$__rate_interval", "5m")

// TestDashboardQueriesParse checks every dashboard query with promtool, as recording rules.
func TestDashboardQueriesParse(t *testing.T) {
	d := readDashboard(t)
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard lacks a uid, title or panels")
	}
	type rule struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var rules []rule
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			rules = append(rules, rule{Record: "dashboard:query", Expr: grafanaVariables.Replace(tg.Expr)})
		}
	}
	data, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "dashboard.rules.yaml")
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	promtool(t, "check", "rules", f)
}

func readDashboard(t *testing.T) dashboardFile {
	t.Helper()
	data, err := os.ReadFile(root(dashboard))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboardFile
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboard, err)
	}
	return d
}

var metricName = regexp.MustCompile(`kdc_etcd_backup_[a-z_]+`)

// TestQueriesReadServedMetrics: every metric an alert or a panel reads is one the manager
// defines (controller/*/*metrics*.go), so a renamed metric cannot silence an alert.
func TestQueriesReadServedMetrics(t *testing.T) {
	sources, err := filepath.Glob(root("controller/*/*metrics*.go"))
	if err != nil || len(sources) == 0 {
		t.Fatalf("no metrics sources under controller/ (%v)", err)
	}
	defined := map[string]bool{}
	for _, s := range sources {
		if strings.HasSuffix(s, "_test.go") {
			continue
		}
		data, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`"(kdc_etcd_backup_[a-z_]+)"`).FindAllStringSubmatch(string(data), -1) {
			defined[m[1]] = true
		}
	}
	used := map[string][]string{}
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			for _, m := range metricName.FindAllString(r.Expr, -1) {
				used[m] = append(used[m], "alert "+r.Alert)
			}
		}
	}
	for _, p := range readDashboard(t).Panels {
		for _, tg := range p.Targets {
			for _, m := range metricName.FindAllString(tg.Expr, -1) {
				used[m] = append(used[m], "panel "+p.Title)
			}
		}
	}
	for m, where := range used {
		if !defined[strings.TrimSuffix(m, "_bucket")] {
			t.Errorf("%s (used by %v) is not a metric of the manager", m, where)
		}
	}
}
