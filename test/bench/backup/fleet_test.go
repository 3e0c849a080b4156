package backup

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/test/framework"
)

// fleetSettings are the knobs of BenchmarkBackupFleet, from the environment.
type fleetSettings struct {
	clusters    int           // BACKUP_BENCH_CLUSTERS, default 1,000
	window      time.Duration // BACKUP_FLEET_WINDOW, the manager's --backup-spread-window, default 5m
	concurrency int           // BACKUP_FLEET_CONCURRENCY, the manager's --max-concurrent-backups, default 50
	jobTime     time.Duration // BACKUP_FLEET_JOB_TIME, how long each backup pod runs, default 2s
	idle        time.Duration // BACKUP_FLEET_IDLE, how long the requests at rest are counted, default 2m
}

func fleetSettingsFromEnv(b *testing.B) fleetSettings {
	s := fleetSettings{clusters: benchClusters(b), window: 5 * time.Minute, concurrency: 50, jobTime: 2 * time.Second, idle: 2 * time.Minute}
	for name, d := range map[string]*time.Duration{"BACKUP_FLEET_WINDOW": &s.window, "BACKUP_FLEET_JOB_TIME": &s.jobTime, "BACKUP_FLEET_IDLE": &s.idle} {
		if v := os.Getenv(name); v != "" {
			var err error
			if *d, err = time.ParseDuration(v); err != nil {
				b.Fatalf("%s=%q: %v", name, v, err)
			}
		}
	}
	if v := os.Getenv("BACKUP_FLEET_CONCURRENCY"); v != "" {
		var err error
		if s.concurrency, err = strconv.Atoi(v); err != nil {
			b.Fatalf("BACKUP_FLEET_CONCURRENCY=%q: %v", v, err)
		}
	}
	return s
}

// BenchmarkBackupFleet is the moment every cluster's schedule fires: N clusters share one daily
// schedule, set to fire a minute or two after the manager has applied every CronJob; a real
// kube-controller-manager (CronJob and Job controllers) creates the runs, the manager spreads and
// admits them, and the benchmark plays the kubelet (each backup pod runs jobTime and succeeds).
// It prints runs expected/created/completed, the peak of backup Jobs running at once, the runs
// per minute, the time until every run completed, the manager's RSS, CPU and API requests, and
// its requests at rest. Figures only (docs/benchmarks.md, "Backup fleet").
func BenchmarkBackupFleet(b *testing.B) {
	s := fleetSettingsFromEnv(b)
	bin := buildManager(b)
	for i := 0; i < b.N; i++ {
		runFleetBench(b, bin, s)
	}
}

func runFleetBench(b *testing.B, bin string, s fleetSettings) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctrllog.SetLogger(logr.Discard())
	env, err := framework.Start(framework.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	kcm, err := env.StartControllerManager("job-controller", "cronjob-controller", "garbage-collector-controller")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = kcm.Stop() }()

	setupStart := time.Now()
	createWorld(b, ctx, env.Client, s.clusters)
	b.Logf("created %d clusters in %s", s.clusters, time.Since(setupStart).Round(time.Millisecond))

	mgr := startManager(b, bin, env, "--backup-spread-window="+s.window.String(), "--max-concurrent-backups="+strconv.Itoa(s.concurrency))
	defer mgr.stop()
	if _, err := waitAllReady(ctx, env.Client, s.clusters, time.Now(), 15*time.Minute); err != nil {
		b.Fatalf("%v (manager log: %s)", err, mgr.logPath)
	}

	// Every cluster gets the same daily schedule, at the next minute that leaves time to apply it.
	fire := time.Now().UTC().Add(90 * time.Second).Truncate(time.Minute).Add(time.Minute)
	schedule := fmt.Sprintf("%d %d * * *", fire.Minute(), fire.Hour())
	patchStart := time.Now()
	setSchedules(b, ctx, env.Client, s.clusters, schedule)
	b.Logf("set schedule %q (fires at %s) on %d clusters in %s", schedule, fire.Format("15:04:05"), s.clusters, time.Since(patchStart).Round(time.Millisecond))

	obs := newFleetObserver()
	stopKubelet := playKubelet(b, ctx, env.Config, env.Client, s.jobTime, obs)
	defer stopKubelet()
	reqBefore, _, _ := scrapeManager(b, mgr.port)
	done, err := obs.waitCompleted(ctx, s.clusters, fire.Add(s.window+10*time.Minute))
	if err != nil {
		b.Fatalf("%v (manager log: %s, kube-controller-manager log: %s)", err, mgr.logPath, kcm.LogPath())
	}
	reqFired, byMethod, _ := scrapeManager(b, mgr.port)

	// At rest: nothing fires, nothing changes. The Events and status writes of the last runs
	// settle first.
	wait := func(d time.Duration) {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			b.Fatal(ctx.Err())
		}
	}
	wait(30 * time.Second)
	reqSettled, _, _ := scrapeManager(b, mgr.port)
	wait(s.idle)
	reqIdle, idleByMethod, _ := scrapeManager(b, mgr.port)
	usage := mgr.stop()

	created, completed := countRuns(b, ctx, env.Client)
	idlePerClusterDay := float64(reqIdle-reqSettled) / float64(s.clusters) * (24 * time.Hour).Seconds() / s.idle.Seconds()
	b.ReportMetric(float64(obs.peakRunning()), "peak-running")
	b.ReportMetric(done.Sub(fire).Seconds(), "s-to-all-completed")
	b.ReportMetric(usage.maxRSSMiB, "MiB-peak-RSS")
	b.ReportMetric(usage.cpu.Seconds(), "manager-CPU-s")
	b.ReportMetric(float64(reqFired-reqBefore)/float64(s.clusters), "requests/cluster-fired")
	b.ReportMetric(idlePerClusterDay, "requests/cluster/day-at-rest")
	fmt.Printf("fleet bench: %d clusters, schedule %q, --backup-spread-window=%s, --max-concurrent-backups=%d, each backup pod runs %s\n",
		s.clusters, schedule, s.window, s.concurrency, s.jobTime)
	fmt.Printf("fleet bench: runs expected %d, created %d, completed %d; peak backup Jobs running at once %d (limit %d); every run completed %s after the schedule's minute\n",
		s.clusters, created, completed, obs.peakRunning(), s.concurrency, done.Sub(fire).Round(time.Second))
	fmt.Printf("fleet bench: per minute after %s (created / started / completed): %s\n", fire.Format("15:04"), obs.perMinute(fire))
	fmt.Printf("fleet bench: manager peak RSS %.1f MiB, CPU %.1f s; %d API requests while the runs fired (%.2f per cluster); at rest %d requests in %s (%.2f per cluster per day); all requests since start: %s / at the end: %s\n",
		usage.maxRSSMiB, usage.cpu.Seconds(), reqFired-reqBefore, float64(reqFired-reqBefore)/float64(s.clusters), reqIdle-reqSettled, s.idle, idlePerClusterDay, byMethod, idleByMethod)
}

// setSchedules sets spec.backup.schedule of every bench cluster.
func setSchedules(b *testing.B, ctx context.Context, c client.Client, n int, schedule string) {
	b.Helper()
	patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"backup":{"schedule":"`+schedule+`"}}}`))
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			kc := &kdcv1alpha1.KdcCluster{ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("bench-%04d", i), Name: "tenant"}}
			if err := c.Patch(ctx, kc, patch); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// fleetObserver follows the backup Jobs: when each was created, started (unsuspended) and
// completed, and how many ran at once.
type fleetObserver struct {
	mu        sync.Mutex
	created   map[string]time.Time
	started   map[string]time.Time
	completed map[string]time.Time
	running   map[string]bool
	peak      int
	changed   chan struct{}
}

func newFleetObserver() *fleetObserver {
	return &fleetObserver{created: map[string]time.Time{}, started: map[string]time.Time{}, completed: map[string]time.Time{},
		running: map[string]bool{}, changed: make(chan struct{}, 1)}
}

// observe records the state of Job j seen at now.
func (o *fleetObserver) observe(j *batchv1.Job, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	key := j.Namespace + "/" + j.Name
	if _, ok := o.created[key]; !ok {
		o.created[key] = j.CreationTimestamp.Time
	}
	finished := false
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			finished = true
			if _, ok := o.completed[key]; !ok {
				o.completed[key] = now
			}
		}
	}
	suspended := j.Spec.Suspend != nil && *j.Spec.Suspend
	if !suspended {
		if _, ok := o.started[key]; !ok {
			o.started[key] = now
		}
	}
	if !suspended && !finished {
		o.running[key] = true
	} else {
		delete(o.running, key)
	}
	o.peak = max(o.peak, len(o.running))
	select {
	case o.changed <- struct{}{}:
	default:
	}
}

func (o *fleetObserver) peakRunning() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.peak
}

// waitCompleted waits until n Jobs completed and returns when the last one did.
func (o *fleetObserver) waitCompleted(ctx context.Context, n int, deadline time.Time) (time.Time, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		o.mu.Lock()
		done := len(o.completed)
		var last time.Time
		for _, t := range o.completed {
			if t.After(last) {
				last = t
			}
		}
		o.mu.Unlock()
		if done >= n {
			return last, nil
		}
		select {
		case <-o.changed:
		case <-timer.C:
			return time.Time{}, fmt.Errorf("by %s only %d of %d backup runs completed (%d created, %d started)", deadline.Format(time.TimeOnly), done, n, len(o.created), len(o.started))
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

// perMinute is "+0m 200/50/48, +1m ..." for the minutes from fire on.
func (o *fleetObserver) perMinute(fire time.Time) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	type row struct{ created, started, completed int }
	rows := map[int]*row{}
	at := func(t time.Time) *row {
		m := int(t.Sub(fire) / time.Minute)
		if rows[m] == nil {
			rows[m] = &row{}
		}
		return rows[m]
	}
	for _, t := range o.created {
		at(t).created++
	}
	for _, t := range o.started {
		at(t).started++
	}
	for _, t := range o.completed {
		at(t).completed++
	}
	minutes := make([]int, 0, len(rows))
	for m := range rows {
		minutes = append(minutes, m)
	}
	sort.Ints(minutes)
	parts := make([]string, 0, len(minutes))
	for _, m := range minutes {
		r := rows[m]
		parts = append(parts, fmt.Sprintf("+%dm %d/%d/%d", m, r.created, r.started, r.completed))
	}
	return strings.Join(parts, ", ")
}

// playKubelet watches backup Jobs and their pods: every pod that appears runs jobTime and
// succeeds with a backup's termination message; every Job change goes to obs. The watches resume
// from their last resourceVersion when the API server ends them.
func playKubelet(b *testing.B, ctx context.Context, cfg *rest.Config, c client.Client, jobTime time.Duration, obs *fleetObserver) func() {
	b.Helper()
	ctx, cancel := context.WithCancel(ctx)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	sel := metav1.ListOptions{LabelSelector: kdcv1alpha1.LabelComponent + "=" + kdcv1alpha1.ComponentBackup}
	watchFrom := func(list func(context.Context, metav1.ListOptions) (string, error), w func(context.Context, metav1.ListOptions) (watch.Interface, error)) watch.Interface {
		rv, err := list(ctx, sel)
		if err != nil {
			b.Fatal(err)
		}
		rw, err := watchtools.NewRetryWatcherWithContext(ctx, rv, &cache.ListWatch{WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = sel.LabelSelector
			return w(ctx, o)
		}})
		if err != nil {
			b.Fatal(err)
		}
		return rw
	}
	jobs := watchFrom(func(ctx context.Context, o metav1.ListOptions) (string, error) {
		l, err := cs.BatchV1().Jobs("").List(ctx, o)
		if err != nil {
			return "", err
		}
		return l.ResourceVersion, nil
	}, cs.BatchV1().Jobs("").Watch)
	pods := watchFrom(func(ctx context.Context, o metav1.ListOptions) (string, error) {
		l, err := cs.CoreV1().Pods("").List(ctx, o)
		if err != nil {
			return "", err
		}
		return l.ResourceVersion, nil
	}, cs.CoreV1().Pods("").Watch)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for ev := range jobs.ResultChan() {
			if j, ok := ev.Object.(*batchv1.Job); ok && ev.Type != watch.Deleted {
				obs.observe(j, time.Now())
			}
		}
	}()
	finishing := map[types.UID]bool{}
	go func() {
		defer wg.Done()
		for ev := range pods.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type != watch.Added || finishing[p.UID] {
				continue
			}
			finishing[p.UID] = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				select {
				case <-time.After(jobTime):
				case <-ctx.Done():
					return
				}
				job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Labels[batchv1.JobNameLabel]}}
				msg := fmt.Sprintf(`{"key":"tenant/tenant-%s.db","size":1024,"sha256":"00","revision":1,"durationSeconds":%g}`,
					time.Now().UTC().Format("20060102T150405Z"), jobTime.Seconds())
				if _, err := framework.FinishJobPods(ctx, c, job, 0, msg); err != nil && ctx.Err() == nil {
					b.Errorf("failed to finish the pods of Job %s/%s: %v", job.Namespace, job.Name, err)
				}
			}()
		}
	}()
	return func() {
		cancel()
		jobs.Stop()
		pods.Stop()
		wg.Wait()
	}
}

// countRuns counts the backup Jobs the CronJobs created (not the manual ones) and those that
// completed.
func countRuns(b *testing.B, ctx context.Context, c client.Client) (created, completed int) {
	b.Helper()
	jobs := &batchv1.JobList{}
	if err := c.List(ctx, jobs, client.MatchingLabels{kdcv1alpha1.LabelComponent: kdcv1alpha1.ComponentBackup}); err != nil {
		b.Fatal(err)
	}
	for i := range jobs.Items {
		j := &jobs.Items[i]
		if !metav1.HasAnnotation(j.ObjectMeta, "batch.kubernetes.io/cronjob-scheduled-timestamp") {
			continue
		}
		created++
		for _, cond := range j.Status.Conditions {
			if cond.Type == batchv1.JobComplete && cond.Status == corev1.ConditionTrue {
				completed++
			}
		}
	}
	return created, completed
}
