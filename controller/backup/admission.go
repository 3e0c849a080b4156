package backup

import (
	"context"
	"fmt"
	"sort"
	"sync"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

const (
	// backupAdmissionName names the admission controller and its Event reporter.
	backupAdmissionName = "backup-admission"
	// backupWaitingReason is the Event on a backup Job that waits for its turn.
	backupWaitingReason = "BackupWaiting"
)

// backupAdmissionRequest is the one request of the admission: every decision looks at all Jobs.
var backupAdmissionRequest = reconcile.Request{NamespacedName: types.NamespacedName{Name: backupAdmissionName}}

// backupJobActiveIndex indexes the backup Jobs that are neither finished nor being deleted: each
// decision reads only those, not the finished ones the CronJobs keep (three per cluster).
const backupJobActiveIndex = "kdc.backupJobActive"

func backupJobActive(o client.Object) []string {
	j, ok := o.(*batchv1.Job)
	if !ok || j.Labels[kdcv1alpha1.LabelComponent] != kdcv1alpha1.ComponentBackup || !j.DeletionTimestamp.IsZero() {
		return nil
	}
	if done, _, _ := backupJobFinished(j); done {
		return nil
	}
	return []string{"true"}
}

// Admission starts suspended backup Jobs in the order they were created, so that at most
// Max run at once in the management cluster (docs/backup.md, "Fleet scale"). The backup CronJobs
// create their Jobs suspended when a limit is set, so a Job that waits is never skipped by the
// CronJob's starting deadline, and its activeDeadlineSeconds counts from its start.
type Admission struct {
	client.Client
	Recorder events.EventRecorder
	// Max is the number of backup Jobs that may run at once; 0 starts every Job at once.
	Max int

	mu sync.Mutex
	// started are Jobs this process unsuspended that the cache may not show unsuspended yet.
	started map[types.UID]bool
	// told are the waiting Jobs whose Event was emitted.
	told map[types.UID]bool
}

// Why each permission exists: backup Jobs are started by setting spec.suspend to false.
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;patch

// Reconcile counts the backup Jobs that run (started, not finished) and starts the oldest
// waiting ones while fewer than Max run; each Job left waiting gets one Event with its place.
func (a *Admission) Reconcile(ctx context.Context, _ reconcile.Request) (ctrl.Result, error) {
	jobs := &batchv1.JobList{}
	// The Jobs are only read: Patch below gets an object of its own.
	if err := a.List(ctx, jobs, client.MatchingFields{backupJobActiveIndex: "true"}, client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, fmt.Errorf("failed to list backup Jobs: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.started == nil {
		a.started, a.told = map[types.UID]bool{}, map[types.UID]bool{}
	}
	running, waiting := a.split(jobs.Items)
	log := ctrl.LoggerFrom(ctx)
	for i, j := range waiting {
		if a.Max > 0 && running >= a.Max {
			if !a.told[j.UID] {
				a.told[j.UID] = true
				a.Recorder.Eventf(j, nil, corev1.EventTypeNormal, backupWaitingReason, "Backup",
					"Waiting for its turn: %d backup Jobs run, at most %d at once (--max-concurrent-backups); %d wait before it", running, a.Max, i)
			}
			continue
		}
		patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"suspend":false}}`))
		if err := a.Patch(ctx, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: j.Namespace, Name: j.Name}}, patch); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("failed to start backup Job %s: %w", klog.KObj(j), err)
		}
		a.started[j.UID] = true
		running++
		log.V(1).Info("Started backup Job", "job", klog.KObj(j), "running", running)
	}
	return ctrl.Result{}, nil
}

// split counts the running backup Jobs and returns the waiting ones oldest first, forgetting the
// Jobs it no longer needs to remember.
func (a *Admission) split(jobs []batchv1.Job) (int, []*batchv1.Job) {
	running := 0
	var waiting []*batchv1.Job
	seen := map[types.UID]bool{}
	for i := range jobs {
		j := &jobs[i]
		if done, _, _ := backupJobFinished(j); done || !j.DeletionTimestamp.IsZero() {
			continue
		}
		seen[j.UID] = true
		suspended := j.Spec.Suspend != nil && *j.Spec.Suspend
		switch {
		case !suspended:
			delete(a.started, j.UID)
			running++
		case a.started[j.UID]:
			running++
		default:
			waiting = append(waiting, j)
		}
	}
	for uid := range a.started {
		if !seen[uid] {
			delete(a.started, uid)
		}
	}
	for uid := range a.told {
		if !seen[uid] {
			delete(a.told, uid)
		}
	}
	sort.SliceStable(waiting, func(i, k int) bool {
		ti, tk := waiting[i].CreationTimestamp, waiting[k].CreationTimestamp
		if !ti.Equal(&tk) {
			return ti.Before(&tk)
		}
		return waiting[i].Namespace+"/"+waiting[i].Name < waiting[k].Namespace+"/"+waiting[k].Name
	})
	return running, waiting
}

// setupAdmission registers the admission with the manager: every backup Job created,
// started, finished or deleted wakes its one request.
func setupAdmission(mgr ctrl.Manager, o Options) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &batchv1.Job{}, backupJobActiveIndex, backupJobActive); err != nil {
		return fmt.Errorf("failed to index the active backup Jobs: %w", err)
	}
	a := &Admission{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder(backupAdmissionName), Max: o.MaxConcurrentBackups}
	one := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{backupAdmissionRequest}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named(backupAdmissionName).
		Watches(&batchv1.Job{}, one, builder.WithPredicates(backupAdmissionChanged())).
		Complete(a)
}

// backupAdmissionChanged passes backup Jobs' creation and deletion, and changes of whether they
// are suspended or finished.
func backupAdmissionChanged() predicate.Funcs {
	isBackup := func(o client.Object) bool {
		return o.GetLabels()[kdcv1alpha1.LabelComponent] == kdcv1alpha1.ComponentBackup
	}
	state := func(j *batchv1.Job) [2]bool {
		done, _, _ := backupJobFinished(j)
		return [2]bool{done, j.Spec.Suspend != nil && *j.Spec.Suspend}
	}
	return predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return isBackup(e.Object) },
		DeleteFunc:  func(e event.DeleteEvent) bool { return isBackup(e.Object) },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*batchv1.Job)
			n, ok2 := e.ObjectNew.(*batchv1.Job)
			return ok1 && ok2 && isBackup(n) && state(o) != state(n)
		},
	}
}
