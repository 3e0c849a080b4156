package prefix

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"kube-dc.com/etcd-backup/snapshot/prefix"
	"kube-dc.com/etcd-backup/test/framework"
)

// tenantAPIServer is a real kube-apiserver of one tenant, on 127.0.0.1, storing its objects in
// the shared etcd under its --etcd-prefix with the tenant's own prefix-limited certificate.
type tenantAPIServer struct {
	name string
	srv  *envtest.APIServer
	cs   kubernetes.Interface
	log  string
}

// startTenantAPIServer starts kube-apiserver (bin/k8s) for prefix p with the etcd client
// certificate f, waits until /readyz answers ok and returns it with an admin client. The
// process is stopped (by its PID, through envtest) when the test ends.
//
// Every other flag is envtest's default. Note that kube-apiserver's compactor (default
// --etcd-compaction-interval=5m) reads and writes the key "compact_rev_key", outside the
// tenant's prefix: with a prefix-limited role etcd refuses it (the log shows `get
// "compact_rev_key" failed: etcdserver: permission denied` every second) and the server
// carries on; compaction of a shared etcd is then etcd's own (--auto-compaction-*).
func startTenantAPIServer(t *testing.T, s *sharedEtcd, name, p string, f tlsFiles) *tenantAPIServer {
	t.Helper()
	bin, err := framework.RequireBinary(filepath.Join(framework.KubeAssetsDir(), "kube-apiserver"))
	if err != nil {
		t.Fatal(err)
	}
	etcdURL, err := url.Parse(s.ClientURL)
	if err != nil {
		t.Fatal(err)
	}
	port, err := framework.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.CreateTemp(t.TempDir(), "kube-apiserver-"+name+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = logf.Close() })
	srv := &envtest.APIServer{Path: bin, EtcdURL: etcdURL, StartTimeout: 90 * time.Second, StopTimeout: 30 * time.Second, Out: logf, Err: logf}
	srv.SecureServing.ListenAddr = envtest.ListenAddr{Address: "127.0.0.1", Port: strconv.Itoa(port)}
	args := srv.Configure()
	args.Set("etcd-prefix", p)
	args.Set("etcd-cafile", f.CA)
	args.Set("etcd-certfile", f.Cert)
	args.Set("etcd-keyfile", f.Key)
	// The address the kubernetes Service's endpoints and the master lease advertise; the
	// lease endpoint reconciler refuses loopback. A TEST-NET-1 address (RFC 5737) that nothing
	// connects to: the server listens on 127.0.0.1 only (--bind-address).
	args.Set("advertise-address", "192.0.2.10")
	a := &tenantAPIServer{name: name, srv: srv, log: logf.Name()}
	if err := srv.Start(); err != nil {
		_ = srv.Stop()
		t.Fatalf("kube-apiserver %s (%s) did not start: %v; log %s:\n%s", name, p, err, a.log, tailFile(a.log, 3000))
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Logf("failed to stop kube-apiserver %s: %v", name, err)
		}
	})
	base := &rest.Config{
		Host:            srv.SecureServing.URL("https", "").String(),
		TLSClientConfig: rest.TLSClientConfig{CAData: srv.SecureServing.CA},
		// No client-side throttling: the poller below is a tight loop.
		RateLimiter: flowcontrol.NewFakeAlwaysRateLimiter(),
	}
	cfg, err := srv.SecureServing.Authn.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, base)
	if err != nil {
		t.Fatal(err)
	}
	if a.cs, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var last error
	if err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, last = a.cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return last == nil, nil
	}); err != nil {
		t.Fatalf("kube-apiserver %s is not ready: %v (%v); log %s:\n%s", name, err, last, a.log, tailFile(a.log, 3000))
	}
	return a
}

// stop ends the kube-apiserver process (SIGTERM by PID, then SIGKILL after StopTimeout).
func (a *tenantAPIServer) stop(t *testing.T) {
	t.Helper()
	if err := a.srv.Stop(); err != nil {
		t.Fatalf("failed to stop kube-apiserver %s: %v", a.name, err)
	}
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// cmState is a ConfigMap as the test compares it: its data and its resourceVersion.
type cmState struct {
	Data string
	RV   string
}

const tenantNS = "tenant"

func listConfigMaps(ctx context.Context, cs kubernetes.Interface) (map[string]cmState, error) {
	list, err := cs.CoreV1().ConfigMaps(tenantNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := make(map[string]cmState, len(list.Items))
	for _, cm := range list.Items {
		out[cm.Name] = cmState{Data: cm.Data["v"], RV: cm.ResourceVersion}
	}
	return out, nil
}

func mustList(t *testing.T, a *tenantAPIServer) map[string]cmState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := listConfigMaps(ctx, a.cs)
	if err != nil {
		t.Fatalf("failed to list ConfigMaps through %s's API server: %v", a.name, err)
	}
	return m
}

func dataOf(m map[string]cmState) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v.Data
	}
	return out
}

// populate creates the namespace and n ConfigMaps cm-000.. through a tenant's API server.
func populate(t *testing.T, a *tenantAPIServer, n int, tag string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := a.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tenantNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%03d", i)}, Data: map[string]string{"v": fmt.Sprintf("%s-%03d", tag, i)}}
		if _, err := a.cs.CoreV1().ConfigMaps(tenantNS).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// edits are what changeThroughAPI did to a tenant.
type edits struct{ created, updated, deleted []string }

// changeThroughAPI updates every third ConfigMap, deletes every seventh and creates n/5 new ones,
// through the tenant's API server.
func changeThroughAPI(t *testing.T, a *tenantAPIServer, n int, tag string) edits {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cms := a.cs.CoreV1().ConfigMaps(tenantNS)
	var e edits
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("cm-%03d", i)
		switch {
		case i%7 == 0:
			if err := cms.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			e.deleted = append(e.deleted, name)
		case i%3 == 0:
			cm, err := cms.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			cm.Data["v"] = fmt.Sprintf("%s-%03d", tag, i)
			if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			e.updated = append(e.updated, name)
		}
	}
	for i := 0; i < n/5; i++ {
		name := fmt.Sprintf("new-%03d", i)
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": tag}}
		if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		e.created = append(e.created, name)
	}
	return e
}

// poller lists B's ConfigMaps through B's API server in a tight loop (no pause between
// requests, 2s per request) and counts what it sees.
type poller struct {
	ok, errs, wrong atomic.Int64
	mu              sync.Mutex
	samples         []string
	ready, done     chan struct{}
	stop            chan struct{}
	iter            chan struct{} // a send (dropped when full) after every list
}

func startPoller(cs kubernetes.Interface, want map[string]cmState) *poller {
	p := &poller{ready: make(chan struct{}), done: make(chan struct{}), stop: make(chan struct{}), iter: make(chan struct{}, 1)}
	var once sync.Once
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			got, err := listConfigMaps(ctx, cs)
			cancel()
			switch {
			case err != nil:
				p.errs.Add(1)
				p.sample(err.Error())
			case !cmp.Equal(want, got):
				p.wrong.Add(1)
				p.sample(fmt.Sprintf("B's ConfigMaps differ: %s", cmp.Diff(want, got)))
			default:
				p.ok.Add(1)
				once.Do(func() { close(p.ready) })
			}
			select {
			case p.iter <- struct{}{}:
			default:
			}
		}
	}()
	return p
}

func (p *poller) sample(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.samples) < 5 {
		p.samples = append(p.samples, s)
	}
}

func (p *poller) iterations() int64 { return p.ok.Load() + p.errs.Load() + p.wrong.Load() }

// apiserverOwnKey reports whether a key is one a running kube-apiserver rewrites on its own
// (its identity lease in kube-system, its master lease, events): B's keys that may change
// while A is restored without A's restore having touched them.
func apiserverOwnKey(p, key string) bool {
	for _, s := range []string{"/leases/kube-system/", "/masterleases/", "/events/"} {
		if strings.HasPrefix(key, p+s) {
			return true
		}
	}
	return false
}

// TestPrefixRestoreWithAPIServers runs the scenario with real kube-apiservers: tenants A
// (/acme_a) and B (/acme_ab) each have a kube-apiserver on one etcd with authentication on,
// each connecting with its own prefix-limited certificate. ConfigMaps are created through both
// API servers; A is backed up; A and B change through their API servers; A's kube-apiserver is
// stopped (the drain), A is restored while a client lists B's ConfigMaps in a tight loop, and
// A's kube-apiserver starts again (the fresh pods). B's client must see no error and always
// B's objects, every B key (except the ones B's own kube-apiserver rewrites on its own) must
// keep its value and mod revision, A's keys must equal the snapshot, and A's new API server
// must serve exactly the snapshot's ConfigMaps. -short runs etcd 3.7 only.
func TestPrefixRestoreWithAPIServers(t *testing.T) {
	vs := versions
	if testing.Short() {
		vs = []string{framework.EtcdVersion}
	}
	for _, v := range vs {
		t.Run(v, func(t *testing.T) {
			testPrefixRestoreWithAPIServers(t, v)
		})
	}
}

func testPrefixRestoreWithAPIServers(t *testing.T, v string) {
	const nA, nB = 120, 80
	start := time.Now()
	ctx := ctxT(t)
	en := newEnv(t)
	s := startSharedEtcd(t, v)
	root := s.client(t, s.root)
	srvA := startTenantAPIServer(t, s, "a", prefixA, s.a)
	srvB := startTenantAPIServer(t, s, "b", prefixB, s.b)
	t.Logf("etcd %s and two kube-apiservers ready in %s", v, time.Since(start).Round(time.Millisecond))

	populate(t, srvA, nA, "A1")
	populate(t, srvB, nB, "B1")
	wantA := mustList(t, srvA)
	if len(wantA) != nA {
		t.Fatalf("A serves %d ConfigMaps, want %d", len(wantA), nA)
	}

	// Back up A with A's certificate: the stored object holds every A key at the backup's
	// revision and no other.
	res, err := prefix.Backup(ctx, en.backupOptions(t, s, "a", prefixA, s.a))
	if err != nil {
		t.Fatalf("prefix backup failed: %v", err)
	}
	_, snap := stored(t, en, res.Key)
	if diff := cmp.Diff(stateAt(t, root, prefixA, res.Revision), snap); diff != "" {
		t.Errorf("the stored snapshot is not A at revision %d (-want +got):\n%s", res.Revision, diff)
	}
	rngA, _ := prefix.RangeOf(prefixA)
	snapCMs := 0
	for k := range snap {
		if !rngA.Contains([]byte(k)) || strings.HasPrefix(k, prefixB+"/") {
			t.Errorf("A's snapshot holds %q", k)
		}
		if strings.HasPrefix(k, prefixA+"/configmaps/"+tenantNS+"/") {
			snapCMs++
		}
	}
	if snapCMs != nA {
		t.Errorf("A's snapshot holds %d ConfigMaps of %s, want %d", snapCMs, tenantNS, nA)
	}
	t.Logf("backup %s: %d keys of %s (%d ConfigMaps in %s) at revision %d", res.Key, len(snap), prefixA, snapCMs, tenantNS, res.Revision)

	eA := changeThroughAPI(t, srvA, nA, "A2")
	eB := changeThroughAPI(t, srvB, nB, "B2")
	changedA := mustList(t, srvA)
	wantB := mustList(t, srvB)
	t.Logf("after the changes: A serves %d ConfigMaps (%d created, %d updated, %d deleted since the backup), B serves %d",
		len(changedA), len(eA.created), len(eA.updated), len(eA.deleted), len(wantB))
	if len(changedA) != nA-len(eA.deleted)+len(eA.created) || len(wantB) != nB-len(eB.deleted)+len(eB.created) {
		t.Fatalf("unexpected ConfigMap counts after the changes")
	}

	// The drain: A's kube-apiserver stops, so that only the restore writes A's keys.
	drainStart := time.Now()
	srvA.stop(t)
	t.Logf("A's kube-apiserver stopped in %s", time.Since(drainStart).Round(time.Millisecond))

	beforeB := state(t, root, prefixB)
	p := startPoller(srvB.cs, wantB)
	stopPoller := func() {
		select {
		case <-p.stop:
		default:
			close(p.stop)
		}
		<-p.done
	}
	t.Cleanup(stopPoller)
	select {
	case <-p.ready:
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("B's poller saw no successful list within 30s: %d errors, %d wrong, samples %q", p.errs.Load(), p.wrong.Load(), p.samples)
	}
	ro := en.restoreOptions(t, s, res.Key, "attempt-apiservers")
	itBefore := p.iterations()
	restoreStart := time.Now()
	rr, err := prefix.Restore(ctx, ro)
	restoreTook := time.Since(restoreStart)
	itDuring := p.iterations() - itBefore
	if err != nil {
		stopPoller()
		t.Fatalf("prefix restore failed: %v", err)
	}
	// A few more lists after the restore's last write, then stop.
	deadline := time.After(30 * time.Second)
	for target := p.iterations() + 20; p.iterations() < target; {
		select {
		case <-p.iter:
		case <-p.done:
			target = 0
		case <-deadline:
			target = 0
		}
	}
	stopPoller()
	t.Logf("restore took %s: put %d, deleted %d, unchanged %d, %d transactions, leases granted %d, revisions %d..%d",
		restoreTook.Round(time.Millisecond), rr.Put, rr.Deleted, rr.Unchanged, rr.Transactions, rr.LeasesGranted, rr.RevisionBefore, rr.RevisionAfter)
	t.Logf("B's poller: %d lists in all (%d during A's restore), %d errors, %d with other content than B's",
		p.iterations(), itDuring, p.errs.Load(), p.wrong.Load())
	if p.errs.Load() != 0 || p.wrong.Load() != 0 {
		t.Errorf("B's API server failed or changed during A's restore: %d errors, %d wrong lists; samples: %q", p.errs.Load(), p.wrong.Load(), p.samples)
	}
	if itDuring < 2 {
		t.Errorf("B's poller listed only %d times during A's restore (%s): the check did not overlap it", itDuring, restoreTook)
	}

	// etcd: A equals the snapshot (A's kube-apiserver is down, nothing else writes A), and
	// every B key kept its value and mod revision but those B's kube-apiserver rewrites itself.
	if diff := cmp.Diff(values(snap), values(state(t, root, prefixA))); diff != "" {
		t.Errorf("A's keys are not the snapshot's after the restore (-want +got):\n%s", diff)
	}
	afterB := state(t, root, prefixB)
	var own []string
	for k := range mergeKeys(beforeB, afterB) {
		if beforeB[k] == afterB[k] {
			continue
		}
		if apiserverOwnKey(prefixB, k) {
			own = append(own, k)
			continue
		}
		t.Errorf("B's key %s changed during A's restore: %+v -> %+v", k, beforeB[k], afterB[k])
	}
	sort.Strings(own)
	t.Logf("B: %d keys in etcd, all with the same value and mod revision except %d rewritten by B's own kube-apiserver: %q",
		len(afterB), len(own), own)

	// StartingControlPlane: a fresh kube-apiserver for A, a fresh client, a fresh LIST.
	srvA = startTenantAPIServer(t, s, "a-restarted", prefixA, s.a)
	gotA := mustList(t, srvA)
	if diff := cmp.Diff(dataOf(wantA), dataOf(gotA)); diff != "" {
		t.Errorf("A's API server does not serve the snapshot's ConfigMaps (-want +got):\n%s", diff)
	}
	gone, back, reverted, sameRV := 0, 0, 0, 0
	for _, n := range eA.created {
		if _, ok := gotA[n]; !ok {
			gone++
		}
	}
	for _, n := range eA.deleted {
		if _, ok := gotA[n]; ok {
			back++
		}
	}
	for _, n := range eA.updated {
		if gotA[n].Data == wantA[n].Data {
			reverted++
		}
	}
	touched := map[string]bool{}
	for _, n := range append(append([]string{}, eA.updated...), eA.deleted...) {
		touched[n] = true
	}
	untouched := 0
	for n, want := range wantA {
		if touched[n] {
			continue
		}
		untouched++
		if gotA[n].RV == want.RV {
			sameRV++
		}
	}
	t.Logf("A after the restart serves %d ConfigMaps (snapshot %d): %d/%d created after the backup gone, %d/%d deleted back, %d/%d updated reverted, %d/%d untouched kept their resourceVersion",
		len(gotA), len(wantA), gone, len(eA.created), back, len(eA.deleted), reverted, len(eA.updated), sameRV, untouched)
	if sameRV != untouched {
		t.Errorf("%d of %d ConfigMaps the restore had no reason to write changed their resourceVersion", untouched-sameRV, untouched)
	}
	if diff := cmp.Diff(wantB, mustList(t, srvB)); diff != "" {
		t.Errorf("B's API server serves other ConfigMaps after A's restore (-want +got):\n%s", diff)
	}
	t.Logf("etcd %s: scenario took %s", v, time.Since(start).Round(time.Millisecond))
}

func mergeKeys(a, b map[string]kv) map[string]struct{} {
	out := make(map[string]struct{}, len(a)+len(b))
	for k := range a {
		out[k] = struct{}{}
	}
	for k := range b {
		out[k] = struct{}{}
	}
	return out
}
