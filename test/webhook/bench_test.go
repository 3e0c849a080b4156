package webhook

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/test/framework"
)

// benchClients are the numbers of concurrent clients BenchmarkAdmission measures.
var benchClients = []int{1, 10, 50}

// minBenchRequests is the fewest requests a cell measures, whatever b.N (`make bench` runs
// -benchtime 1x): a p99 needs a sample. -benchtime Nx with a larger N measures N.
const minBenchRequests = 1000

// latencies are the durations of the measured requests.
type latencies []time.Duration

func (l latencies) percentile(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// handlerTime is the total time and count of the webhook handlers (controller-runtime's
// controller_runtime_webhook_latency_seconds), by webhook path.
func handlerTime() (map[string]float64, map[string]uint64, error) {
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		return nil, nil, err
	}
	sum, count := map[string]float64{}, map[string]uint64{}
	for _, f := range families {
		if f.GetName() != "controller_runtime_webhook_latency_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "webhook" {
					sum[l.GetValue()] += m.GetHistogram().GetSampleSum()
					count[l.GetValue()] += m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return sum, count, nil
}

// admissionBench is the environment of BenchmarkAdmission: datastore ds and clusters c0..cN in
// two namespaces, one labelled benchLabel.
type admissionBench struct {
	env                *framework.Env
	nsOn, nsOff        string
	operator, ctrlUser client.Client
	floor              *floorHandler
}

// benchLabel marks the namespace the "selected" webhook configurations apply to.
const benchLabel = "kdc-bench-webhooks"

// registration is which webhook configurations are installed.
type registration int

const (
	// noWebhooks: none registered.
	noWebhooks registration = iota
	// allWebhooks: the generated configurations, as installed.
	allWebhooks
	// selectedWebhooks: copies of them for the namespace labelled benchLabel only.
	selectedWebhooks
	// floorWebhooks: the selected copies, calling floorHandler instead of the webhooks.
	floorWebhooks
)

// Paths of floorHandler on the webhook server.
const floorMutatePath, floorValidatePath = "/floor-mutate", "/floor-validate"

// floorHandler answers every AdmissionReview "allowed", after decoding nothing but its uid: the
// least any webhook can do. Registered in place of the webhooks (floorWebhooks), it measures what
// calling a webhook costs the API server and the machine by itself, the floor under any
// webhook's added latency on this machine.
type floorHandler struct{ calls atomic.Int64 }

func (h *floorHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var review struct {
		Request struct {
			UID string `json:"uid"`
		} `json:"request"`
	}
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp, err := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
		"response": map[string]any{"uid": review.Request.UID, "allowed": true}})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h.calls.Add(1)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(resp)
}

// BenchmarkAdmission measures the latency of restore requests (`kubectl annotate ...
// restore-from=...`, a merge patch) through the real API server at 1, 10 and 50 concurrent
// clients, with the webhook configurations registered and without, and prints p50/p99 of both
// and their ratio. Each client annotates its own cluster; between two measured requests the
// controller's identity clears the request (not measured).
//
// Two designs: "sequential" runs all requests without webhooks, then all with; "paired"
// registers the webhooks for one of two namespaces only and alternates each client's requests
// between them, so both sides see the same machine load at the same time (the fair comparison
// on a shared machine). A third, "floor", pairs the same way with floorHandler registered in
// place of the webhooks: what calling any webhook adds on this machine, whatever it does. Each
// cell measures max(b.N, minBenchRequests) requests (paired and floor: twice that, half on each
// side). Run it with a fixed request count:
//
//	go test ./test/webhook/ -run '^$' -bench BenchmarkAdmission -benchtime 2000x
func BenchmarkAdmission(b *testing.B) {
	ctx := context.Background()
	env, err := framework.Start(framework.Options{Webhooks: webhookInstallOptions()})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := env.Stop(); err != nil {
			b.Error(err)
		}
	}()
	wh := env.WebhookInstallOptions
	mgrCtx, stopManager := context.WithCancel(ctx)
	m, err := startWebhooks(mgrCtx, env.Config, wh.LocalServingHost, wh.LocalServingPort, wh.LocalServingCertDir)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { // before the API server stops, so no watch holds it up
		stopManager()
		if err := <-m.done; err != nil {
			b.Error(err)
		}
	}()
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return m.serving() == nil, nil
	}); err != nil {
		b.Fatalf("webhook server did not start: %v", err)
	}

	ab := &admissionBench{env: env, floor: &floorHandler{}}
	m.mgr.GetWebhookServer().Register(floorMutatePath, ab.floor)
	m.mgr.GetWebhookServer().Register(floorValidatePath, ab.floor)
	if ab.operator, err = userClient(env, "operator", unthrottled); err != nil {
		b.Fatal(err)
	}
	if ab.ctrlUser, err = userClient(env, controllerUser, unthrottled); err != nil {
		b.Fatal(err)
	}
	if ab.nsOn, err = env.NewNamespace(ctx, "bench-on"); err != nil {
		b.Fatal(err)
	}
	if ab.nsOff, err = env.NewNamespace(ctx, "bench-off"); err != nil {
		b.Fatal(err)
	}
	nsOn := &corev1.Namespace{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: ab.nsOn}, nsOn); err != nil {
		b.Fatal(err)
	}
	nsOn.Labels[benchLabel] = "true"
	if err := env.Client.Update(ctx, nsOn); err != nil {
		b.Fatal(err)
	}
	for _, ns := range []string{ab.nsOn, ab.nsOff} {
		if err := env.Client.Create(ctx, newDataStore(ns, "ds", 1)); err != nil {
			b.Fatal(err)
		}
		for i := range slices.Max(benchClients) + 1 {
			if err := env.Client.Create(ctx, newCluster(ns, fmt.Sprintf("c%d", i), "ds")); err != nil {
				b.Fatal(err)
			}
		}
	}

	type pair struct{ off, on latencies }
	sequential, paired, floor := map[int]*pair{}, map[int]*pair{}, map[int]*pair{}
	for _, clients := range benchClients {
		sequential[clients], paired[clients], floor[clients] = &pair{}, &pair{}, &pair{}
		for _, reg := range []registration{noWebhooks, allWebhooks} {
			b.Run(fmt.Sprintf("sequential/clients=%d/webhooks=%t", clients, reg == allWebhooks), func(b *testing.B) {
				if err := ab.register(ctx, reg); err != nil {
					b.Fatal(err)
				}
				if _, err := ab.run(ctx, clients, clients, ab.nsOn); err != nil { // warm up
					b.Fatal(err)
				}
				b.ResetTimer()
				lat, err := ab.run(ctx, clients, max(b.N, minBenchRequests), ab.nsOn)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(ms(lat[ab.nsOn].percentile(0.50)), "p50-ms")
				b.ReportMetric(ms(lat[ab.nsOn].percentile(0.99)), "p99-ms")
				if reg == allWebhooks {
					sequential[clients].on = lat[ab.nsOn]
				} else {
					sequential[clients].off = lat[ab.nsOn]
				}
			})
		}
		for _, cell := range []struct {
			name    string
			reg     registration
			results map[int]*pair
		}{{"paired", selectedWebhooks, paired}, {"floor", floorWebhooks, floor}} {
			b.Run(fmt.Sprintf("%s/clients=%d", cell.name, clients), func(b *testing.B) {
				if err := ab.register(ctx, cell.reg); err != nil {
					b.Fatal(err)
				}
				if _, err := ab.run(ctx, clients, 2*clients, ab.nsOn, ab.nsOff); err != nil { // warm up
					b.Fatal(err)
				}
				sum0, count0, err := handlerTime()
				if err != nil {
					b.Fatal(err)
				}
				stopProfile := ab.profileAPIServer(b, fmt.Sprintf("%s-clients=%d", cell.name, clients))
				b.ResetTimer()
				lat, err := ab.run(ctx, clients, max(b.N, 2*minBenchRequests), ab.nsOn, ab.nsOff)
				b.StopTimer()
				stopProfile()
				if err != nil {
					b.Fatal(err)
				}
				sum1, count1, err := handlerTime()
				if err != nil {
					b.Fatal(err)
				}
				for path := range sum1 {
					if n := count1[path] - count0[path]; n > 0 {
						// e.g. "validate-k8s-kube-dc-com-v1alpha1-kdccluster" -> "validate-kdccluster-handler-ms"
						parts := strings.Split(strings.TrimPrefix(path, "/"), "-")
						b.ReportMetric(1000*(sum1[path]-sum0[path])/float64(n), parts[0]+"-"+parts[len(parts)-1]+"-handler-ms")
					}
				}
				on, off := lat[ab.nsOn], lat[ab.nsOff]
				b.ReportMetric(ms(off.percentile(0.50)), "p50-off-ms")
				b.ReportMetric(ms(off.percentile(0.99)), "p99-off-ms")
				b.ReportMetric(ms(on.percentile(0.50)), "p50-on-ms")
				b.ReportMetric(ms(on.percentile(0.99)), "p99-on-ms")
				cell.results[clients].on, cell.results[clients].off = on, off
			})
		}
	}
	for _, design := range []struct {
		name    string
		results map[int]*pair
	}{{"sequential", sequential}, {"paired", paired}, {"floor", floor}} {
		if !slices.ContainsFunc(benchClients, func(c int) bool { return len(design.results[c].on) > 0 && len(design.results[c].off) > 0 }) {
			continue
		}
		fmt.Fprintf(os.Stdout, "\n%s: restore request latency without / with the webhooks\n", design.name)
		fmt.Fprintf(os.Stdout, "%-8s %8s %10s %10s %10s %10s %7s %7s %10s %10s\n", "clients", "requests", "p50 off", "p99 off", "p50 on", "p99 on", "p50 x", "p99 x", "p50 added", "p99 added")
		for _, clients := range benchClients {
			r := design.results[clients]
			if len(r.on) == 0 || len(r.off) == 0 {
				continue
			}
			off50, off99, on50, on99 := r.off.percentile(0.5), r.off.percentile(0.99), r.on.percentile(0.5), r.on.percentile(0.99)
			fmt.Fprintf(os.Stdout, "%-8d %8d %8.2fms %8.2fms %8.2fms %8.2fms %6.2fx %6.2fx %8.2fms %8.2fms\n", clients, len(r.on),
				ms(off50), ms(off99), ms(on50), ms(on99), float64(on50)/float64(off50), float64(on99)/float64(off99), ms(on50-off50), ms(on99-off99))
		}
	}
}

// run sends n restore requests from clients concurrent clients, each on its own cluster and
// going round the namespaces, and returns their latencies by namespace.
func (ab *admissionBench) run(ctx context.Context, clients, n int, namespaces ...string) (map[string]latencies, error) {
	clear := annotationsPatch(map[string]*string{
		kdcv1alpha1.AnnotationRestoreFrom: nil, kdcv1alpha1.AnnotationRestoreState: nil,
		kdcv1alpha1.AnnotationRestoreRequestedBy: nil, kdcv1alpha1.AnnotationRestoreRequestedAt: nil,
	})
	var (
		mu   sync.Mutex
		lat  = map[string]latencies{}
		errs []error
		wg   sync.WaitGroup
	)
	for w := range clients {
		count := n / clients
		if w < n%clients {
			count++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("c%d", w)
			patch := annotationsPatch(map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set(kdcv1alpha1.SnapshotKey(name, time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC)))})
			for i := range count {
				ns := namespaces[(i+w)%len(namespaces)]
				c := newCluster(ns, name, "ds")
				start := time.Now()
				err := ab.operator.Patch(ctx, c, patch)
				d := time.Since(start)
				if err == nil {
					err = ab.ctrlUser.Patch(ctx, c, clear)
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					lat[ns] = append(lat[ns], d)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	return lat, errors.Join(errs...)
}

// register installs the configurations reg asks for, removes the others, and waits until the
// API server acts accordingly in both namespaces: a dry-run restore request is stamped, and a
// bad schedule rejected, exactly where the webhooks apply.
func (ab *admissionBench) register(ctx context.Context, reg registration) error {
	wh := ab.env.WebhookInstallOptions
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{benchLabel: "true"}}
	// floorURL is url (envtest's https://host:port/<path>) with floorHandler's path instead.
	floorURL := func(url *string, path string) *string {
		u := (*url)[:strings.LastIndex(*url, "/")] + path
		return &u
	}
	var all, selected, floor []client.Object
	for _, c := range wh.MutatingWebhooks {
		all = append(all, &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: c.Name}, Webhooks: c.Webhooks})
		s := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "selected-" + c.Name}, Webhooks: slices.Clone(c.Webhooks)}
		f := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "floor-" + c.Name}, Webhooks: slices.Clone(c.Webhooks)}
		for i := range s.Webhooks {
			s.Webhooks[i].NamespaceSelector, f.Webhooks[i].NamespaceSelector = selector, selector
			f.Webhooks[i].ClientConfig.URL = floorURL(c.Webhooks[i].ClientConfig.URL, floorMutatePath)
		}
		selected, floor = append(selected, s), append(floor, f)
	}
	for _, c := range wh.ValidatingWebhooks {
		all = append(all, &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: c.Name}, Webhooks: c.Webhooks})
		s := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "selected-" + c.Name}, Webhooks: slices.Clone(c.Webhooks)}
		f := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "floor-" + c.Name}, Webhooks: slices.Clone(c.Webhooks)}
		for i := range s.Webhooks {
			s.Webhooks[i].NamespaceSelector, f.Webhooks[i].NamespaceSelector = selector, selector
			f.Webhooks[i].ClientConfig.URL = floorURL(c.Webhooks[i].ClientConfig.URL, floorValidatePath)
		}
		selected, floor = append(selected, s), append(floor, f)
	}
	for _, set := range []struct {
		objs    []client.Object
		install bool
	}{{all, reg == allWebhooks}, {selected, reg == selectedWebhooks}, {floor, reg == floorWebhooks}} {
		for _, o := range set.objs {
			var err error
			if set.install {
				err = client.IgnoreAlreadyExists(ab.env.Client.Create(ctx, o))
			} else {
				err = client.IgnoreNotFound(ab.env.Client.Delete(ctx, o))
			}
			if err != nil {
				return err
			}
		}
	}
	// Where the webhooks act, a restore request is stamped and a bad schedule rejected; where
	// the floor handler is registered, it is called (and does neither).
	active := map[string]bool{ab.nsOn: reg == allWebhooks || reg == selectedWebhooks, ab.nsOff: reg == allWebhooks}
	floorOn := map[string]bool{ab.nsOn: reg == floorWebhooks}
	probe := fmt.Sprintf("c%d", slices.Max(benchClients))
	return wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, ns := range []string{ab.nsOn, ab.nsOff} {
			calls := ab.floor.calls.Load()
			p := newCluster(ns, probe, "ds")
			if err := ab.operator.Patch(ctx, p, annotationsPatch(map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set(kdcv1alpha1.SnapshotKey(probe, time.Now()))}), client.DryRunAll); err != nil {
				return false, err
			}
			bad := newCluster(ns, "probe-bad-schedule", "ds")
			bad.Spec.Backup.Schedule = "61 * * * *"
			err := ab.operator.Create(ctx, bad, client.DryRunAll)
			if err != nil && !apierrors.IsInvalid(err) {
				return false, err
			}
			stamped, rejected, floorCalled := p.Annotations[kdcv1alpha1.AnnotationRestoreState] != "", err != nil, ab.floor.calls.Load() > calls
			if stamped != active[ns] || rejected != active[ns] || floorCalled != floorOn[ns] {
				return false, nil
			}
		}
		return true, nil
	})
}

// unthrottled turns client-go's client-side rate limiter off: at 50 clients the benchmark sends
// more than the tests' 500 requests/s, and the limiter's queue would be measured instead of the
// API server.
func unthrottled(cfg *rest.Config) { cfg.QPS = -1 }

// profileAPIServer, when KDC_BENCH_PROFILE_DIR is set, records a CPU profile of kube-apiserver
// (its /debug/pprof/profile, as the admin user) while a cell runs, into
// $KDC_BENCH_PROFILE_DIR/apiserver-<name>.pprof, for `go tool pprof`. The returned function
// waits for it; the profile covers the first KDC_BENCH_PROFILE_SECONDS (default 10) of the cell.
func (ab *admissionBench) profileAPIServer(b *testing.B, name string) func() {
	dir := os.Getenv("KDC_BENCH_PROFILE_DIR")
	if dir == "" {
		return func() {}
	}
	seconds := cmp.Or(os.Getenv("KDC_BENCH_PROFILE_SECONDS"), "10")
	hc, err := rest.HTTPClientFor(ab.env.Config)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			resp, err := hc.Get(strings.TrimSuffix(ab.env.Config.Host, "/") + "/debug/pprof/profile?seconds=" + seconds)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("kube-apiserver profile: %s", resp.Status)
			}
			f, err := os.Create(filepath.Join(dir, "apiserver-"+name+".pprof"))
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, resp.Body); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		}()
	}()
	return func() {
		if err := <-done; err != nil {
			b.Error(err)
		}
	}
}
