package webhook

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/test/framework"
)

// benchClients are the numbers of concurrent clients BenchmarkAdmission measures.
var benchClients = []int{1, 10, 50}

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

// admissionBench is the environment of BenchmarkAdmission.
type admissionBench struct {
	env                *framework.Env
	ns                 string
	operator, ctrlUser client.Client
}

// BenchmarkAdmission measures the latency of restore requests (`kubectl annotate ...
// restore-from=...`, a merge patch) through the real API server at 1, 10 and 50 concurrent
// clients, with the webhook configurations registered and without, and prints p50/p99 of both
// and their ratio. Each client annotates its own cluster; between two measured requests the
// controller's identity clears the request (not measured). Run it with a fixed request count:
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

	ab := &admissionBench{env: env}
	if ab.operator, err = userClient(env, "operator"); err != nil {
		b.Fatal(err)
	}
	if ab.ctrlUser, err = userClient(env, controllerUser); err != nil {
		b.Fatal(err)
	}
	if ab.ns, err = env.NewNamespace(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	if err := env.Client.Create(ctx, newDataStore(ab.ns, "ds", 1)); err != nil {
		b.Fatal(err)
	}
	for i := range slices.Max(benchClients) + 1 {
		if err := env.Client.Create(ctx, newCluster(ab.ns, fmt.Sprintf("c%d", i), "ds")); err != nil {
			b.Fatal(err)
		}
	}

	results := map[string]latencies{}
	for _, clients := range benchClients {
		for _, registered := range []bool{false, true} {
			name := fmt.Sprintf("clients=%d/webhooks=%t", clients, registered)
			b.Run(name, func(b *testing.B) {
				if err := ab.register(ctx, registered); err != nil {
					b.Fatal(err)
				}
				if _, err := ab.run(ctx, clients, clients); err != nil { // warm up
					b.Fatal(err)
				}
				b.ResetTimer()
				lat, err := ab.run(ctx, clients, b.N)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(ms(lat.percentile(0.50)), "p50-ms")
				b.ReportMetric(ms(lat.percentile(0.99)), "p99-ms")
				results[name] = lat
			})
		}
	}
	if len(results) < 2*len(benchClients) {
		return
	}
	fmt.Fprintf(os.Stdout, "\n%-8s %10s %10s %10s %10s %9s %9s %12s\n", "clients", "p50 off", "p99 off", "p50 on", "p99 on", "p50 x", "p99 x", "p99 added")
	for _, clients := range benchClients {
		off, on := results[fmt.Sprintf("clients=%d/webhooks=false", clients)], results[fmt.Sprintf("clients=%d/webhooks=true", clients)]
		fmt.Fprintf(os.Stdout, "%-8d %8.2fms %8.2fms %8.2fms %8.2fms %8.2fx %8.2fx %10.2fms\n", clients,
			ms(off.percentile(0.5)), ms(off.percentile(0.99)), ms(on.percentile(0.5)), ms(on.percentile(0.99)),
			float64(on.percentile(0.5))/float64(off.percentile(0.5)), float64(on.percentile(0.99))/float64(off.percentile(0.99)),
			ms(on.percentile(0.99)-off.percentile(0.99)))
	}
}

// run sends n restore requests from clients concurrent clients, each on its own cluster, and
// returns their latencies.
func (ab *admissionBench) run(ctx context.Context, clients, n int) (latencies, error) {
	clear := annotationsPatch(map[string]*string{
		kdcv1alpha1.AnnotationRestoreFrom: nil, kdcv1alpha1.AnnotationRestoreState: nil,
		kdcv1alpha1.AnnotationRestoreRequestedBy: nil, kdcv1alpha1.AnnotationRestoreRequestedAt: nil,
	})
	var (
		mu   sync.Mutex
		lat  = make(latencies, 0, n)
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
			c := newCluster(ab.ns, name, "ds")
			patch := annotationsPatch(map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set(kdcv1alpha1.SnapshotKey(name, time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC)))})
			for range count {
				start := time.Now()
				err := ab.operator.Patch(ctx, c.DeepCopy(), patch)
				d := time.Since(start)
				if err == nil {
					err = ab.ctrlUser.Patch(ctx, c.DeepCopy(), clear)
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					lat = append(lat, d)
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

// register installs (or removes) the webhook configurations and waits until the API server
// acts accordingly: a dry-run restore request is stamped, and a bad schedule rejected, only
// with them.
func (ab *admissionBench) register(ctx context.Context, registered bool) error {
	wh := ab.env.WebhookInstallOptions
	var objs []client.Object
	for _, c := range wh.MutatingWebhooks {
		objs = append(objs, &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: c.Name}, Webhooks: c.Webhooks})
	}
	for _, c := range wh.ValidatingWebhooks {
		objs = append(objs, &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: c.Name}, Webhooks: c.Webhooks})
	}
	for _, o := range objs {
		var err error
		if registered {
			err = client.IgnoreAlreadyExists(ab.env.Client.Create(ctx, o))
		} else {
			err = client.IgnoreNotFound(ab.env.Client.Delete(ctx, o))
		}
		if err != nil {
			return err
		}
	}
	probe := newCluster(ab.ns, fmt.Sprintf("c%d", slices.Max(benchClients)), "ds")
	return wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		p := probe.DeepCopy()
		if err := ab.operator.Patch(ctx, p, annotationsPatch(map[string]*string{kdcv1alpha1.AnnotationRestoreFrom: set(kdcv1alpha1.SnapshotKey(p.Name, time.Now()))}), client.DryRunAll); err != nil {
			return false, err
		}
		stamped := p.Annotations[kdcv1alpha1.AnnotationRestoreState] != ""
		bad := newCluster(ab.ns, "probe-bad-schedule", "ds")
		bad.Spec.Backup.Schedule = "61 * * * *"
		err := ab.operator.Create(ctx, bad, client.DryRunAll)
		if err != nil && !apierrors.IsInvalid(err) {
			return false, err
		}
		rejected := err != nil
		return stamped == registered && rejected == registered, nil
	})
}
