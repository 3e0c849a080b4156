package controller

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// restoreControllerName names the controller, its logger and its Events' reporting controller.
const restoreControllerName = "restore"

// RestoreReconciler runs the restore state machine of a KdcCluster (docs/restore.md): the
// webhook admitted the request and stamped Validating; each reconcile resumes from the phase in
// the restore-state annotation and everything it recorded in restore-* annotations.
type RestoreReconciler struct {
	// Client reads from the manager's cache and writes to the API server.
	Client client.Client
	// APIReader reads uncached: the pods of a finished Job (termination messages), the OBC and
	// its ConfigMap, and confirming that a recorded Job is really gone.
	APIReader client.Reader
	// JobPods reads the full pods of the restore's Jobs (a cache of those pods only), to take a
	// Job's outcome from its terminal pod; nil means Client.
	JobPods client.Reader
	// Recorder emits the Events that explain each step.
	Recorder events.EventRecorder
	// Options are the manager's options; Options.RestoreTimeouts the per-phase deadlines.
	Options Options
	// Clock is the time source; nil means the real clock.
	Clock clock.PassiveClock
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
// Pods (metadata): wait until C-cp's pods and DS-etcd-0 are gone. Pods of the restore's Jobs
// (full, by label): their outcome as soon as they are terminal, and termination messages.
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// The verify, restore and rollback Jobs and the fresh backup Job: create, watch, delete.
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;delete
// The backup CronJob: template of the fresh backup Job after a successful restore.
// +kubebuilder:rbac:groups=batch,resources=cronjobs,verbs=get;list;watch
// The OBC and its ConfigMap: resolve the bucket and endpoint exactly as the backup CronJob does.
// +kubebuilder:rbac:groups=objectbucket.io,resources=objectbucketclaims,verbs=get
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get
// Events explaining each step.
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupRestoreReconciler registers the restore controller with the manager. Progress is driven
// by watches: the KdcCluster's annotations, and C-cp, DS-etcd, their pods and the restore's Jobs
// mapped back to the KdcCluster whose restore waits on them. Pods are watched as metadata only
// (existence is all the drain and stop steps need), so the cache does not hold every pod spec;
// only the pods of the restore's own Jobs are cached whole, in a label-selected cache of their
// own (restore_jobpods.go), so a Job is decided as soon as its pod terminates.
func SetupRestoreReconciler(mgr ctrl.Manager, o Options) error {
	registerRestoreMetrics()
	restoreDeadlines.use(mgr.GetClient(), o.RestoreTimeouts, mgr.Elected())
	r := &RestoreReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder(ProductNameRestoreRecorder),
		Options:   o,
	}
	return r.SetupWithManager(mgr)
}

// ProductNameRestoreRecorder is the reporting controller of the restore's Events.
const ProductNameRestoreRecorder = "kdc-etcd-backup-restore"

// SetupWithManager wires r's watches into mgr.
func (r *RestoreReconciler) SetupWithManager(mgr ctrl.Manager) error {
	jobPods, err := newRestoreJobPodCache(mgr)
	if err != nil {
		return err
	}
	if err := mgr.Add(jobPods); err != nil {
		return err
	}
	r.JobPods = jobPods
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &kdcv1alpha1.KdcCluster{}, restoringNamespaceIndex, restoringNamespaces); err != nil {
		return fmt.Errorf("failed to index KdcClusters by the namespaces of their running restore: %w", err)
	}
	toRestoring := handler.EnqueueRequestsFromMapFunc(r.mapToRestoringClusters)
	return ctrl.NewControllerManagedBy(mgr).
		Named(restoreControllerName).
		For(&kdcv1alpha1.KdcCluster{}, builder.WithPredicates(
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Watches(&appsv1.Deployment{}, toRestoring).
		Watches(&appsv1.StatefulSet{}, toRestoring).
		Watches(&corev1.Pod{}, toRestoring, builder.OnlyMetadata).
		Watches(&batchv1.Job{}, handler.EnqueueRequestsFromMapFunc(restoreMapJob),
			builder.WithPredicates(predicate.NewPredicateFuncs(restoreIsRestoreJob))).
		WatchesRawSource(source.Kind(jobPods, &corev1.Pod{}, handler.TypedEnqueueRequestsFromMapFunc(restoreMapJobPod),
			restoreJobPodFinished())).
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
func (r *RestoreReconciler) mapToRestoringClusters(ctx context.Context, obj client.Object) []reconcile.Request {
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

// restoreMapJobPod maps a pod of a restore Job to its KdcCluster (the Job's labels are its pods').
func restoreMapJobPod(ctx context.Context, p *corev1.Pod) []reconcile.Request {
	return restoreMapJob(ctx, p)
}

// restoreIsRestoreJob selects the Jobs this controller creates (verify, restore, rollback).
func restoreIsRestoreJob(obj client.Object) bool {
	return obj.GetLabels()[kdcv1alpha1.LabelComponent] == kdcv1alpha1.ComponentRestore
}

// restoreMapJob maps a restore Job to its KdcCluster through its labels.
func restoreMapJob(_ context.Context, obj client.Object) []reconcile.Request {
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

// restoreScope is one reconcile's view of a restore.
type restoreScope struct {
	cluster *kdcv1alpha1.KdcCluster
	now     time.Time
	log     logr.Logger
	// finished is set once the restore ended (success or failure) in this reconcile.
	finished bool
}

func (s *restoreScope) ann(k string) string { return s.cluster.Annotations[k] }
func (s *restoreScope) key() string         { return s.ann(kdcv1alpha1.AnnotationRestoreFrom) }
func (s *restoreScope) phase() kdcv1alpha1.RestorePhase {
	return kdcv1alpha1.RestorePhaseOf(s.cluster.Annotations)
}

// attempt identifies this restore: the restore-started-at value, stamped on its Jobs.
func (s *restoreScope) attempt() string { return s.ann(kdcv1alpha1.AnnotationRestoreStartedAt) }

// phaseSince is when the current phase (or the recovery after a failure) began.
func (s *restoreScope) phaseSince() time.Time {
	t, err := time.Parse(time.RFC3339, s.ann(kdcv1alpha1.AnnotationRestorePhaseSince))
	if err != nil {
		return s.now
	}
	return t
}

// stepResult is what a phase step tells the spine.
type stepResult struct {
	// advanced: the step recorded a transition (next phase, a failure, or the end); the spine
	// runs the next step in the same reconcile.
	advanced bool
	// requeueAfter is the time left until the phase's deadline while the step waits on a watch.
	requeueAfter time.Duration
}

// restoreStepFunc runs one phase.
type restoreStepFunc func(ctx context.Context, s *restoreScope) (stepResult, error)

// steps are the phase steps in order; each checks it is its turn through the spine.
func (r *RestoreReconciler) steps() map[kdcv1alpha1.RestorePhase]restoreStepFunc {
	return map[kdcv1alpha1.RestorePhase]restoreStepFunc{
		kdcv1alpha1.PhaseValidating:           r.reconcileValidating,
		kdcv1alpha1.PhaseDrainingControlPlane: r.reconcileDraining,
		kdcv1alpha1.PhaseStoppingEtcd:         r.reconcileStoppingEtcd,
		kdcv1alpha1.PhaseRestoringSnapshot:    r.reconcileRestoring,
		kdcv1alpha1.PhaseStartingEtcd:         r.reconcileStartingEtcd,
		kdcv1alpha1.PhaseStartingControlPlane: r.reconcileStartingControlPlane,
	}
}

// Reconcile runs the restore of one KdcCluster from wherever it stands:
//
//  1. fetch the KdcCluster; nothing to do without restore-from / restore-state;
//  2. a request without the webhook's Validating stamp (webhook absent) starts at Validating;
//     a state that is not a running phase is stale bookkeeping and is cleared;
//  3. restore-from removed before the restore Job exists (webhook absent): record Cancelled;
//  4. when a failure is recorded (restore-failure), run the recovery: stop an unfinished restore
//     Job, roll back if etcd failed on the restored data, bring etcd and the control plane back,
//     report Failed (restore_failure.go);
//  5. otherwise run the step of the current phase, and the next ones while they advance:
//     Validating (re-check the rules, verify Job proves the snapshot) → DrainingControlPlane
//     (record C-cp replicas, scale to 0) → StoppingEtcd (record DS-etcd replicas, scale to 0,
//     wait until DS-etcd-0 is gone) → RestoringSnapshot (restore Job, record its UID) →
//     StartingEtcd (scale back, wait ready) → StartingControlPlane (scale back with a fresh
//     rollout, wait ready) → Succeeded (fresh backup Job, delete the restore Job, report).
//
// Each step records what it needs before acting, so a restart anywhere resumes correctly; a
// waiting step returns and is woken by a watch, with a timed requeue only for its deadline.
func (r *RestoreReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	c := &kdcv1alpha1.KdcCluster{}
	if err := r.Client.Get(ctx, req.NamespacedName, c); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !c.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	s := &restoreScope{cluster: c, now: r.clock().Now().UTC(), log: ctrl.LoggerFrom(ctx)}
	phase := s.phase()
	switch {
	case phase == "" && s.key() == "":
		return ctrl.Result{}, nil
	case phase == "":
		// Admitted while the webhook was absent: the controller stamps it itself.
	case !phase.Running():
		s.log.Info("Clearing stale restore bookkeeping", "state", phase)
		return ctrl.Result{}, r.clearRestoreAnnotations(ctx, s)
	}
	if s.key() == "" && s.ann(kdcv1alpha1.AnnotationRestoreFailure) == "" {
		if phase == "" || (phase == kdcv1alpha1.PhaseValidating && s.attempt() == "") {
			return ctrl.Result{}, r.clearRestoreAnnotations(ctx, s)
		}
		if !r.restoreJobCreated(s) {
			if err := r.fail(ctx, s, kdcv1alpha1.ReasonRestoreCancelled,
				"the restore-from annotation was removed before the snapshot was restored"); err != nil {
				return ctrl.Result{}, err
			}
		}
	}
	steps := r.steps()
	for !s.finished {
		if s.ann(kdcv1alpha1.AnnotationRestoreFailure) != "" {
			res, err := r.reconcileFailure(ctx, s)
			if err != nil || !res.advanced {
				return ctrl.Result{RequeueAfter: res.requeueAfter}, err
			}
			continue
		}
		phase := s.phase()
		if phase == "" {
			phase = kdcv1alpha1.PhaseValidating
		}
		step, ok := steps[phase]
		if !ok {
			return ctrl.Result{}, nil
		}
		res, err := step(ctx, s)
		if err != nil || !res.advanced {
			return ctrl.Result{RequeueAfter: res.requeueAfter}, err
		}
	}
	return ctrl.Result{}, nil
}

func (r *RestoreReconciler) clock() clock.PassiveClock {
	if r.Clock == nil {
		return clock.RealClock{}
	}
	return r.Clock
}

func (r *RestoreReconciler) timeouts() RestoreTimeouts {
	return r.Options.RestoreTimeouts.withDefaults()
}

// restoreJobCreated reports whether the restore may already have touched the data: the phase is
// past RestoringSnapshot, or the restore Job's UID is recorded.
func (r *RestoreReconciler) restoreJobCreated(s *restoreScope) bool {
	switch s.phase() {
	case kdcv1alpha1.PhaseStartingEtcd, kdcv1alpha1.PhaseStartingControlPlane:
		return true
	}
	return s.ann(kdcv1alpha1.AnnotationRestoreJobUID) != ""
}

// recordAnnotations sets (value != "") or removes (value == "") restore annotations on the
// KdcCluster with an optimistic lock, so a concurrent writer (a second manager, the webhook's
// stamps) makes it fail and retry rather than be overwritten. This is the "record" of
// record-before-act.
func (r *RestoreReconciler) recordAnnotations(ctx context.Context, s *restoreScope, kv map[string]string) error {
	orig := s.cluster.DeepCopy()
	if s.cluster.Annotations == nil {
		s.cluster.Annotations = map[string]string{}
	}
	for k, v := range kv {
		if v == "" {
			delete(s.cluster.Annotations, k)
		} else {
			s.cluster.Annotations[k] = v
		}
	}
	if err := r.Client.Patch(ctx, s.cluster, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("failed to record restore progress on KdcCluster %s: %w", klog.KObj(s.cluster), err)
	}
	return nil
}

// patchStatus changes only the restore's part of the status (mutate), with an optimistic lock
// so it never overwrites BackupReady written concurrently by the backup reconciler.
func (r *RestoreReconciler) patchStatus(ctx context.Context, s *restoreScope, mutate func(c *kdcv1alpha1.KdcCluster)) error {
	orig := s.cluster.DeepCopy()
	mutate(s.cluster)
	if err := r.Client.Status().Patch(ctx, s.cluster, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("failed to patch the status of KdcCluster %s: %w", klog.KObj(s.cluster), err)
	}
	return nil
}

// enter records the transition to phase (and what the next steps need, in extra) before any
// of that phase's side effects.
func (r *RestoreReconciler) enter(ctx context.Context, s *restoreScope, phase kdcv1alpha1.RestorePhase, extra map[string]string) (stepResult, error) {
	from, since := s.phase(), s.phaseSince()
	kv := map[string]string{
		kdcv1alpha1.AnnotationRestoreState:      string(phase),
		kdcv1alpha1.AnnotationRestorePhaseSince: s.now.Format(time.RFC3339),
	}
	for k, v := range extra {
		kv[k] = v
	}
	if err := r.recordAnnotations(ctx, s, kv); err != nil {
		return stepResult{}, err
	}
	restoreObservePhase(from, s.now.Sub(since))
	s.log.Info("Restore phase", "from", from, "to", phase, "key", s.key())
	r.event(s, corev1.EventTypeNormal, string(phase), "Restore from %q: %s", s.key(), restorePhaseNote(phase))
	return stepResult{advanced: true}, nil
}

// restorePhaseNote says what a phase does, for its Event.
func restorePhaseNote(p kdcv1alpha1.RestorePhase) string {
	switch p {
	case kdcv1alpha1.PhaseValidating:
		return "checking the request and verifying the snapshot (nothing changes yet)"
	case kdcv1alpha1.PhaseDrainingControlPlane:
		return "snapshot verified; scaling the control plane to 0"
	case kdcv1alpha1.PhaseStoppingEtcd:
		return "control plane drained; stopping etcd"
	case kdcv1alpha1.PhaseRestoringSnapshot:
		return "etcd stopped; restoring the snapshot into its data volume"
	case kdcv1alpha1.PhaseStartingEtcd:
		return "snapshot restored (previous data kept); starting etcd"
	case kdcv1alpha1.PhaseStartingControlPlane:
		return "etcd ready; starting the control plane with fresh pods"
	}
	return string(p)
}

// wait returns the requeue until the current phase's deadline, or records failure reason when
// it passed.
func (r *RestoreReconciler) wait(ctx context.Context, s *restoreScope, reason, what string) (stepResult, error) {
	timeout := r.timeouts().forPhase(s.phase())
	left := s.phaseSince().Add(timeout).Sub(s.now)
	if left > 0 {
		s.log.V(1).Info("Waiting", "phase", s.phase(), "for", what, "deadlineIn", left)
		return stepResult{requeueAfter: left}, nil
	}
	return stepResult{advanced: true}, r.fail(ctx, s, reason, fmt.Sprintf("%s within %s", what, timeout))
}

// fail records a failure "<Reason>: <detail>" and restarts the phase clock for the recovery.
// The recovery (restore_failure.go) runs next.
func (r *RestoreReconciler) fail(ctx context.Context, s *restoreScope, reason, detail string) error {
	if err := r.recordAnnotations(ctx, s, map[string]string{
		kdcv1alpha1.AnnotationRestoreFailure:    reason + ": " + detail,
		kdcv1alpha1.AnnotationRestorePhaseSince: s.now.Format(time.RFC3339),
	}); err != nil {
		return err
	}
	restoreObservePhase(s.phase(), s.now.Sub(s.phaseSince()))
	s.log.Info("Restore failed; bringing the cluster back", "phase", s.phase(), "reason", reason, "detail", detail)
	r.event(s, corev1.EventTypeWarning, reason, "Restore from %q failed in %s: %s; bringing the cluster back", s.key(), s.phase(), detail)
	return nil
}

// clearRestoreAnnotations removes restore-from and every bookkeeping annotation.
func (r *RestoreReconciler) clearRestoreAnnotations(ctx context.Context, s *restoreScope) error {
	kv := map[string]string{}
	for k := range s.cluster.Annotations {
		if k == kdcv1alpha1.AnnotationRestoreFrom || kdcv1alpha1.IsRestoreBookkeeping(k) {
			kv[k] = ""
		}
	}
	if len(kv) == 0 {
		return nil
	}
	return r.recordAnnotations(ctx, s, kv)
}

// event emits an Event on the KdcCluster.
func (r *RestoreReconciler) event(s *restoreScope, eventType, reason, note string, args ...any) {
	if r.Recorder == nil {
		return
	}
	r.Recorder.Eventf(s.cluster, nil, eventType, reason, "Restore", note, args...)
}

// restoreObjectMeta is a typed PartialObjectMetadata for metadata-only reads of kind.
func restoreObjectMeta(kind string) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind(kind))
	return m
}
