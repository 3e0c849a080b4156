package restore

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/engine"
)

// controllerName names the controller, its logger and its Events' reporting controller.
const controllerName = "restore"

// RecorderName is the reporting controller of the restore's Events.
const RecorderName = "kdc-etcd-backup-restore"

// Options configure the restore controller; the manager fills them from its flags.
type Options struct {
	// Image is the manager's own image, run by the verify, restore and rollback Jobs.
	Image string
	// S3Endpoint is the default S3 endpoint (the manager's S3_ENDPOINT).
	S3Endpoint string
	// Timeouts are the restore's per-phase deadlines; zero fields take the defaults.
	Timeouts engine.Timeouts
}

// Reconciler drives the restore engine (package engine) for KdcClusters: the webhook admitted
// the request and stamped Validating; each reconcile is one Run from the phase in the
// restore-state annotation, with the engine's record kept in the restore-* annotations.
type Reconciler struct {
	Client   client.Client
	Engine   *engine.Engine
	Recorder events.EventRecorder
}

// The RBAC of the restore controller, least privilege, each rule with why it exists.
//
// The KdcCluster: read it, record progress in its annotations (patch), report RestoreReady and
// latestRestore* (status patch).
// +kubebuilder:rbac:groups=k8s.kube-dc.com,resources=kdcclusters,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=k8s.kube-dc.com,resources=kdcclusters/status,verbs=get;patch
// The datastore: re-check MultiReplicaUnsupported / DataStoreUnknown.
// +kubebuilder:rbac:groups=k8s.kube-dc.com,resources=kdcclusterdatastores,verbs=get;list;watch
// C-cp and DS-etcd: watched for progress, scaled down and back up (patch).
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets,verbs=get;list;watch;patch
// The Kamaji TenantControlPlane owning C-cp: read (uncached) and patch its pause annotation.
// +kubebuilder:rbac:groups=kamaji.clastix.io,resources=tenantcontrolplanes,verbs=get;patch
// Pods (metadata): wait until C-cp's pods and DS-etcd's are gone; delete the members of a
// multi-member DS-etcd again with a short grace once it is scaled to 0 (engine/stopping_etcd.go).
// Pods of the restore's Jobs (full, by label): their outcome as soon as they are terminal, and
// termination messages.
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;delete
// The verify, restore and rollback Jobs and the fresh backup Job: create, watch, delete.
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;delete
// The backup CronJob: template of the fresh backup Job after a successful restore.
// +kubebuilder:rbac:groups=batch,resources=cronjobs,verbs=get;list;watch
// The OBC and its ConfigMap: resolve the bucket and endpoint exactly as the backup CronJob does.
// +kubebuilder:rbac:groups=objectbucket.io,resources=objectbucketclaims,verbs=get
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get
// Events explaining each step.
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Setup registers the restore controller with the manager. Progress is driven by watches: the
// KdcCluster's annotations, and C-cp, DS-etcd, their pods and the restore's Jobs mapped back to
// the KdcCluster whose restore waits on them. Pods are watched as metadata only (existence is
// all the drain and stop steps need), so the cache does not hold every pod spec; only the pods of
// the restore's own Jobs are cached whole, in a label-selected cache of their own (jobpods.go),
// so a Job is decided as soon as its pod terminates.
func Setup(mgr ctrl.Manager, o Options) error {
	registerMetrics()
	deadlines.use(mgr.GetClient(), o.Timeouts, mgr.Elected())
	jobPods, err := newJobPodCache(mgr)
	if err != nil {
		return err
	}
	if err := mgr.Add(jobPods); err != nil {
		return err
	}
	r := &Reconciler{
		Client: mgr.GetClient(),
		Engine: &engine.Engine{
			Client:     mgr.GetClient(),
			Live:       mgr.GetAPIReader(),
			JobPods:    jobPods,
			Image:      o.Image,
			S3Endpoint: o.S3Endpoint,
			Timeouts:   o.Timeouts,
		},
		Recorder: mgr.GetEventRecorder(RecorderName),
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &kdcv1alpha1.KdcCluster{}, restoringNamespaceIndex, restoringNamespaces); err != nil {
		return fmt.Errorf("failed to index KdcClusters by the namespaces of their running restore: %w", err)
	}
	toRestoring := handler.EnqueueRequestsFromMapFunc(r.mapToRestoringClusters)
	return ctrl.NewControllerManagedBy(mgr).
		Named(controllerName).
		For(&kdcv1alpha1.KdcCluster{}, builder.WithPredicates(
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Watches(&appsv1.Deployment{}, toRestoring).
		Watches(&appsv1.StatefulSet{}, toRestoring).
		Watches(&corev1.Pod{}, toRestoring, builder.OnlyMetadata).
		Watches(&batchv1.Job{}, handler.EnqueueRequestsFromMapFunc(mapJob),
			builder.WithPredicates(predicate.NewPredicateFuncs(isRestoreJob))).
		WatchesRawSource(source.Kind(jobPods, &corev1.Pod{}, handler.TypedEnqueueRequestsFromMapFunc(mapJobPod),
			jobPodFinished())).
		Complete(r)
}

// restoringNamespaceIndex indexes the KdcClusters with a restore requested or running by their
// namespace and their datastore's, so that mapping a workload's event to them reads only those
// few: a scan of every cluster per event made the first sync of 10,000 StatefulSets quadratic.
const restoringNamespaceIndex = "kdc.restore.namespace"

// restoringNamespaces is restoringNamespaceIndex's value of a KdcCluster.
func restoringNamespaces(o client.Object) []string {
	c, ok := o.(*kdcv1alpha1.KdcCluster)
	if !ok || !kdcv1alpha1.RestoreRunning(c.Annotations) && c.Annotations[kdcv1alpha1.AnnotationRestoreFrom] == "" {
		return nil
	}
	if ds := c.DataStoreNamespace(); ds != c.Namespace {
		return []string{c.Namespace, ds}
	}
	return []string{c.Namespace}
}

// mapToRestoringClusters maps a Deployment, StatefulSet or Pod to the KdcClusters with a running
// restore in its namespace (their own, or their datastore's).
func (r *Reconciler) mapToRestoringClusters(ctx context.Context, obj client.Object) []reconcile.Request {
	var list kdcv1alpha1.KdcClusterList
	if err := r.Client.List(ctx, &list, client.MatchingFields{restoringNamespaceIndex: obj.GetNamespace()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list KdcClusters to map an event", "object", klog.KObj(obj))
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}

// mapJobPod maps a pod of a restore Job to its KdcCluster (the Job's labels are its pods').
func mapJobPod(ctx context.Context, p *corev1.Pod) []reconcile.Request { return mapJob(ctx, p) }

// isRestoreJob selects the Jobs this controller creates (verify, restore, rollback).
func isRestoreJob(obj client.Object) bool {
	return obj.GetLabels()[kdcv1alpha1.LabelComponent] == kdcv1alpha1.ComponentRestore
}

// mapJob maps a restore Job to its KdcCluster through its labels.
func mapJob(_ context.Context, obj client.Object) []reconcile.Request {
	l := obj.GetLabels()
	name, ns := l[kdcv1alpha1.LabelCluster], l[kdcv1alpha1.LabelClusterNamespace]
	if ns == "" {
		ns = obj.GetNamespace()
	}
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}}
}

// Reconcile runs the restore of one KdcCluster from wherever it stands:
//
//  1. fetch the KdcCluster; nothing to do without restore-from / restore-state;
//  2. a request without the webhook's Validating stamp (webhook absent) starts at Validating;
//     a state that is not a running phase is stale bookkeeping and is cleared;
//  3. restore-from removed before the restore Job exists (webhook absent): record Cancelled;
//  4. one engine Run: the recovery after a recorded failure, else the steps of the phases from
//     the current one (engine.Engine.Run); a rejected request is a terminal error.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	c := &kdcv1alpha1.KdcCluster{}
	if err := r.Client.Get(ctx, req.NamespacedName, c); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !c.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	if c.Annotations == nil {
		c.Annotations = map[string]string{}
	}
	run := &engine.Restore{Cluster: c, Record: c.Annotations, Driver: &driver{r: r, log: ctrl.LoggerFrom(ctx)}}
	phase := run.Phase()
	switch {
	case phase == "" && run.Key() == "":
		return ctrl.Result{}, nil
	case phase == "":
		// Admitted while the webhook was absent: the engine stamps it itself.
	case !phase.Running():
		ctrl.LoggerFrom(ctx).Info("Clearing stale restore bookkeeping", "state", phase)
		return ctrl.Result{}, r.Engine.Clear(ctx, run)
	}
	if run.Key() == "" && !run.Failed() {
		if phase == "" || (phase == kdcv1alpha1.PhaseValidating && run.Attempt() == "") {
			return ctrl.Result{}, r.Engine.Clear(ctx, run)
		}
		if !run.SwapMayHaveBegun() {
			if err := r.Engine.Fail(ctx, run, engine.Violation{Reason: kdcv1alpha1.ReasonRestoreCancelled,
				Detail: "the restore-from annotation was removed before the snapshot was restored"}); err != nil {
				return ctrl.Result{}, err
			}
		}
	}
	res, err := r.Engine.Run(ctx, run)
	if err != nil {
		return ctrl.Result{}, err
	}
	if o := run.Outcome; o != nil && o.Rejected {
		return ctrl.Result{}, reconcile.TerminalError(fmt.Errorf("restore rejected (%s): %s", o.Failure.Reason, o.Failure.Detail))
	}
	return ctrl.Result{RequeueAfter: res.RequeueAfter}, nil
}

// driver keeps a restore's record in the KdcCluster's annotations and tells it in Events,
// logs and metrics.
type driver struct {
	r   *Reconciler
	log interface {
		Info(msg string, kv ...any)
	}
}

// Save patches the annotations with an optimistic lock, so a concurrent writer (a second
// manager, the webhook's stamps) makes it fail and retry rather than be overwritten.
func (d *driver) Save(ctx context.Context, run *engine.Restore, kv map[string]string) error {
	c := run.Cluster
	orig := c.DeepCopy()
	for k, v := range kv {
		if v == "" {
			delete(c.Annotations, k)
		} else {
			c.Annotations[k] = v
		}
	}
	if err := d.r.Client.Patch(ctx, c, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("failed to record restore progress on KdcCluster %s: %w", klog.KObj(c), err)
	}
	if c.Annotations == nil {
		c.Annotations = map[string]string{}
	}
	run.Record = c.Annotations
	return nil
}

// SetReady patches only the restore's part of the status, with an optimistic lock so it never
// overwrites BackupReady written concurrently by the backup reconciler.
func (d *driver) SetReady(ctx context.Context, run *engine.Restore, status metav1.ConditionStatus, reason, message string, succeeded bool) error {
	c := run.Cluster
	orig := c.DeepCopy()
	c.SetCondition(kdcv1alpha1.ConditionRestoreReady, status, reason, message)
	if succeeded {
		c.Status.LatestRestoreKey = run.Key()
		c.Status.LatestRestoreTime = &metav1.Time{Time: run.Now()}
	}
	if err := d.r.Client.Status().Patch(ctx, c, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("failed to patch the status of KdcCluster %s: %w", klog.KObj(c), err)
	}
	return nil
}

func (d *driver) Event(run *engine.Restore, eventType, reason, message string) {
	if d.r.Recorder != nil {
		d.r.Recorder.Eventf(run.Cluster, nil, eventType, reason, "Restore", "%s", message)
	}
}

func (d *driver) Note(_ *engine.Restore, message string, kv ...any) { d.log.Info(message, kv...) }

func (d *driver) Observe(o engine.Observation) {
	switch {
	case o.Started:
		restoresStarted.Inc()
	case o.Finished:
		restoresTotal.WithLabelValues(o.Outcome, o.Reason).Inc()
	case o.Phase != "" && o.Duration >= 0:
		phaseDuration.WithLabelValues(string(o.Phase)).Observe(o.Duration.Seconds())
	}
}
