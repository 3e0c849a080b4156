package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crcontroller "sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	kamajiv1alpha1 "kube-dc.com/etcd-backup/api/kamaji/v1alpha1"
	obcv1alpha1 "kube-dc.com/etcd-backup/api/objectbucket/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/engine"
	"kube-dc.com/etcd-backup/jobspec"
)

const (
	// backupControllerName names the controller, its Event reporter and its metrics.
	backupControllerName = "kdccluster-backup"
	// backupFieldOwner is the server-side apply field manager of the backup CronJob.
	backupFieldOwner = "kdc-etcd-backup-backup"
	// backupDataStoreIndex indexes KdcClusters by "<datastore namespace>/<status.dataStoreName>",
	// so an etcd StatefulSet event finds the clusters it serves.
	backupDataStoreIndex = "kdc.backup.datastore"
	// backupMaxConcurrentReconciles: a reconcile mostly waits on at most two API round trips, so
	// workers are cheap; 16 bring 1,000 clusters up in about half the time 4 do
	// (docs/benchmarks.md), and a steady state sends nothing.
	backupMaxConcurrentReconciles = 16
)

// Reconciler keeps, for every KdcCluster, the CronJob C-etcd-backup in the state the spec
// asks and reports BackupReady and the latest backup in status (docs/backup.md).
type Reconciler struct {
	client.Client
	// PodReader reads the pods of a finished backup Job, uncached and only when a result has not
	// been recorded yet: caching every pod of a management cluster would cost more than it saves.
	PodReader client.Reader
	// ConfigMaps is a cache holding only the ConfigMaps named managed-k8s-backups.
	ConfigMaps client.Reader
	Recorder   events.EventRecorder
	Options    Options
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Why each permission exists (least privilege; manifests/rbac is generated from these markers):
// KdcClusters are the input; status carries BackupReady and the latest backup.
// +kubebuilder:rbac:groups=k8s.kube-dc.com,resources=kdcclusters,verbs=get;list;watch
// +kubebuilder:rbac:groups=k8s.kube-dc.com,resources=kdcclusters/status,verbs=get;patch
// The CronJob is server-side applied (patch, create on first apply) and deleted when a gate closes.
// +kubebuilder:rbac:groups=batch,resources=cronjobs,verbs=get;list;watch;create;patch;delete
// Backup Jobs are only read: their outcome drives BackupReady.
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch
// Pods of a finished backup Job are listed once, for the exit code and termination message.
// +kubebuilder:rbac:groups="",resources=pods,verbs=list
// The ObjectBucketClaim gates the CronJob (Bound) and names the bucket.
// +kubebuilder:rbac:groups=objectbucket.io,resources=objectbucketclaims,verbs=get;list;watch
// The claim's ConfigMap names bucket and endpoint (watched by name only; Secrets are never read).
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=list;watch
// The datastore's etcd StatefulSet gives the etcd endpoints (governing Service, replicas, port).
// +kubebuilder:rbac:groups=apps,resources=statefulsets,verbs=get;list;watch
// Events tell the operator about each backup's outcome.
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile keeps C-etcd-backup and BackupReady in the state the KdcCluster asks. Steps:
//  1. fetch the KdcCluster (gone: drop its metrics; the garbage collector removes the CronJob);
//  2. resolve the plan; a closed gate (Disabled, S3NotAvailable, DataStoreUnknown) deletes the
//     CronJob and sets BackupReady=False;
//  3. server-side apply the CronJob built by buildBackupCronJob;
//  4. read the newest finished backup Job: record a new success in status and an Event, or
//     report its failure;
//  5. compute BackupReady (staleness included) and patch status once, touching only the
//     backup fields; requeue only for the staleness deadline.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (ctrl.Result, error) {
	c := &kdcv1alpha1.KdcCluster{}
	if err := r.Get(ctx, req.NamespacedName, c); err != nil {
		if apierrors.IsNotFound(err) {
			backupReasons.forget(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("failed to get KdcCluster %s: %w", req.NamespacedName, err)
	}
	if !c.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	orig := c.DeepCopy()
	var pending []backupEvent
	res, err := r.reconcileBackup(ctx, c, &pending)
	if perr := r.patchBackupStatus(ctx, orig, c); perr != nil {
		return ctrl.Result{}, errors.Join(err, perr)
	}
	for _, e := range pending {
		r.Recorder.Eventf(c, nil, e.eventType, e.reason, "Backup", "%s", e.note)
	}
	r.observeBackupMetrics(c, pending)
	return res, err
}

// backupEvent is an Event emitted once the status that reports it is persisted.
type backupEvent struct {
	eventType, reason, note string
	result                  *backupJobResult
}

// backupPlan is what a scheduled cluster's CronJob and messages are made of.
type backupPlan struct {
	inputs  backupInputs
	context backupContext
}

func (r *Reconciler) reconcileBackup(ctx context.Context, c *kdcv1alpha1.KdcCluster, pending *[]backupEvent) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	plan, reason, msg, err := r.resolveBackupPlan(ctx, c)
	if err != nil {
		return ctrl.Result{}, err
	}
	if plan == nil {
		if c.SetCondition(kdcv1alpha1.ConditionBackupReady, metav1.ConditionFalse, reason, msg) {
			log.Info("Backups not scheduled", "reason", reason, "message", msg)
		}
		return ctrl.Result{}, r.deleteBackupCronJob(ctx, c)
	}

	cj, err := r.applyBackupCronJob(ctx, c, plan.inputs)
	if err != nil {
		return ctrl.Result{}, err
	}

	newest, keep, err := r.observeBackupJobs(ctx, c, plan, pending)
	if err != nil {
		return ctrl.Result{}, err
	}
	if keep {
		return ctrl.Result{}, nil // the newest failure is already reported
	}
	ready := computeBackupReady(backupReadyInput{
		Context:          plan.context,
		Schedule:         cj.Spec.Schedule,
		ScheduledSince:   cj.CreationTimestamp.Time,
		LatestBackupKey:  c.Status.LatestBackupKey,
		LatestBackupTime: c.Status.LatestBackupTime,
		Newest:           newest,
		Now:              r.now(),
	})
	if c.SetCondition(kdcv1alpha1.ConditionBackupReady, ready.Status, ready.Reason, ready.Message) {
		log.Info("BackupReady changed", "status", ready.Status, "reason", ready.Reason, "cronJob", klog.KObj(cj))
		if ready.Status == metav1.ConditionFalse && newest != nil && !newest.Succeeded {
			*pending = append(*pending, backupEvent{eventType: corev1.EventTypeWarning, reason: ready.Reason, note: ready.Message})
		}
	}
	return ctrl.Result{RequeueAfter: ready.RecheckAfter}, nil
}

// resolveBackupPlan checks the gates of docs/backup.md in order and resolves the CronJob's inputs. A
// nil plan comes with the reason and message of the closed gate.
func (r *Reconciler) resolveBackupPlan(ctx context.Context, c *kdcv1alpha1.KdcCluster) (*backupPlan, string, string, error) {
	cronJob := c.Namespace + "/" + kdcv1alpha1.BackupCronJobName(c.Name)
	if !c.BackupEnabled() {
		return nil, kdcv1alpha1.ReasonDisabled, fmt.Sprintf(
			"Backups are disabled by spec.backup.enabled=false, CronJob %s is removed; set it to true to schedule backups", cronJob), nil
	}

	obc := &obcv1alpha1.ObjectBucketClaim{}
	obcKey := types.NamespacedName{Namespace: c.Namespace, Name: kdcv1alpha1.ObjectBucketClaimName}
	if err := r.Get(ctx, obcKey, obc); err != nil {
		if !apierrors.IsNotFound(err) {
			return nil, "", "", fmt.Errorf("failed to get ObjectBucketClaim %s: %w", obcKey, err)
		}
		return nil, kdcv1alpha1.ReasonS3NotAvailable, fmt.Sprintf(
			"ObjectBucketClaim %s does not exist; create it (the bucket provisioner then binds it) so backups have a bucket", obcKey), nil
	}
	if obc.Status.Phase != obcv1alpha1.PhaseBound {
		return nil, kdcv1alpha1.ReasonS3NotAvailable, fmt.Sprintf(
			"ObjectBucketClaim %s is %q, not Bound; check the bucket provisioner: kubectl describe obc -n %s %s",
			obcKey, obc.Status.Phase, c.Namespace, obc.Name), nil
	}
	cm := &corev1.ConfigMap{}
	if err := r.ConfigMaps.Get(ctx, obcKey, cm); err != nil {
		if !apierrors.IsNotFound(err) {
			return nil, "", "", fmt.Errorf("failed to get ConfigMap %s: %w", obcKey, err)
		}
		cm = nil
	}
	loc, err := resolveBackupS3Location(c, obc, cm, r.Options.S3Endpoint)
	if err != nil {
		return nil, kdcv1alpha1.ReasonS3NotAvailable, fmt.Sprintf(
			"No S3 endpoint is known for ObjectBucketClaim %s: set spec.backup.s3Endpoint, BUCKET_HOST in ConfigMap %s, or the manager's --s3-endpoint",
			obcKey, obcKey), nil
	}

	ds := c.Status.DataStoreName
	if ds == "" {
		return nil, kdcv1alpha1.ReasonDataStoreUnknown,
			"status.dataStoreName is not set; backups start once the cluster provisioner sets it (check the provisioner of this KdcCluster)", nil
	}
	sts := &appsv1.StatefulSet{}
	stsKey := types.NamespacedName{Namespace: c.DataStoreNamespace(), Name: kdcv1alpha1.EtcdStatefulSetName(ds)}
	if err := r.Get(ctx, stsKey, sts); err != nil {
		if !apierrors.IsNotFound(err) {
			return nil, "", "", fmt.Errorf("failed to get StatefulSet %s: %w", stsKey, err)
		}
		return nil, kdcv1alpha1.ReasonDataStoreUnknown, fmt.Sprintf(
			"The etcd StatefulSet %s of datastore %q does not exist; check status.dataStoreName and spec.dataStore.namespace", stsKey, ds), nil
	}

	mode, prefix, certs, reason, msg, err := r.backupMode(ctx, c, sts)
	if err != nil || reason != "" {
		return nil, reason, msg, err
	}
	in := backupInputs{
		Mode:             mode,
		EtcdPrefix:       prefix,
		EtcdCerts:        certs,
		Image:            r.Options.Image,
		EtcdEndpoints:    backupEtcdEndpoints(sts),
		S3Endpoint:       loc.Endpoint,
		Bucket:           loc.Bucket,
		Prefix:           loc.Prefix,
		Region:           loc.Region,
		CredentialSecret: backupCredentialSecret(c),
		Spread:           backupEffectiveSchedule(c, r.Options.SpreadWindow),
		Queued:           r.Options.MaxConcurrentBackups > 0,
	}
	return &backupPlan{inputs: in, context: backupContext{
		Namespace: c.Namespace, Cluster: c.Name, DataStore: ds, CredentialSecret: in.CredentialSecret,
		Location: loc, EtcdEndpoints: in.EtcdEndpoints,
	}}, "", "", nil
}

// applyBackupCronJob server-side applies the built CronJob with its own field owner, forcing
// ownership of its fields: a hand edit of a field it sets is reverted, other fields stay. When the
// cached CronJob already holds every field the builder sets, nothing is sent.
func (r *Reconciler) applyBackupCronJob(ctx context.Context, c *kdcv1alpha1.KdcCluster, in backupInputs) (*batchv1.CronJob, error) {
	desired := buildBackupCronJob(c, in)
	// Through JSON, so only the fields the builder sets (omitempty) are claimed.
	want, err := backupToMap(desired)
	if err != nil {
		return nil, fmt.Errorf("failed to encode CronJob %s: %w", klog.KObj(desired), err)
	}
	delete(want, "status")
	cached := &batchv1.CronJob{}
	switch err := r.Get(ctx, client.ObjectKeyFromObject(desired), cached); {
	case err == nil && cached.DeletionTimestamp.IsZero():
		if have, err := backupToMap(cached); err == nil && backupFieldsMatch(want, have) {
			return cached, nil
		}
	case err != nil && !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("failed to get CronJob %s: %w", klog.KObj(desired), err)
	}
	u := &unstructured.Unstructured{Object: want}
	if err := r.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(backupFieldOwner), client.ForceOwnership); err != nil {
		return nil, fmt.Errorf("failed to apply CronJob %s: %w", klog.KObj(desired), err)
	}
	applied := &batchv1.CronJob{}
	if err := backupFromMap(u.Object, applied); err != nil {
		return nil, fmt.Errorf("failed to read applied CronJob %s: %w", klog.KObj(desired), err)
	}
	return applied, nil
}

// backupFieldsMatch reports whether have holds every field of want with the same value: maps
// may have more keys, lists must have the same length and match element by element. Fields the
// API server defaults or others add do not count; a changed managed field does.
func backupFieldsMatch(want, have any) bool {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return false
		}
		for k, wv := range w {
			if !backupFieldsMatch(wv, h[k]) {
				return false
			}
		}
		return true
	case []any:
		h, ok := have.([]any)
		if !ok || len(h) != len(w) {
			return false
		}
		for i := range w {
			if !backupFieldsMatch(w[i], h[i]) {
				return false
			}
		}
		return true
	default:
		return equality.Semantic.DeepEqual(want, have)
	}
}

func backupToMap(o any) (map[string]any, error) {
	data, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	return m, json.Unmarshal(data, &m)
}

func backupFromMap(m map[string]any, into any) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, into)
}

// deleteBackupCronJob removes the cluster's CronJob (and, in the background, its Jobs) when it
// exists and this cluster controls it.
func (r *Reconciler) deleteBackupCronJob(ctx context.Context, c *kdcv1alpha1.KdcCluster) error {
	cj := &batchv1.CronJob{}
	key := types.NamespacedName{Namespace: c.Namespace, Name: kdcv1alpha1.BackupCronJobName(c.Name)}
	if err := r.Get(ctx, key, cj); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(cj, c) || !cj.DeletionTimestamp.IsZero() {
		return nil
	}
	if err := r.Delete(ctx, cj, client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("failed to delete CronJob %s: %w", klog.KObj(cj), err)
	}
	ctrl.LoggerFrom(ctx).Info("Deleted backup CronJob", "cronJob", klog.KObj(cj))
	return nil
}

// observeBackupJobs reads the newest finished backup Job. A success not yet in status is recorded
// (status fields and a pending Event). keep is true when the newest Job failed and BackupReady
// already reports exactly that Job, so nothing needs reading again.
func (r *Reconciler) observeBackupJobs(ctx context.Context, c *kdcv1alpha1.KdcCluster, plan *backupPlan, pending *[]backupEvent) (*backupJobResult, bool, error) {
	jobs := &batchv1.JobList{}
	if err := r.List(ctx, jobs, client.InNamespace(c.Namespace), client.MatchingLabels{
		kdcv1alpha1.LabelCluster: c.Name, kdcv1alpha1.LabelComponent: kdcv1alpha1.ComponentBackup,
	}); err != nil {
		return nil, false, fmt.Errorf("failed to list backup Jobs of %s: %w", klog.KObj(c), err)
	}
	newest := newestFinishedBackupJob(jobs.Items)
	if newest == nil {
		return nil, false, nil
	}
	_, succeeded, at := backupJobFinished(newest)
	last := c.Status.LatestBackupTime
	if !succeeded || (last != nil && !at.After(last.Time)) {
		// No new success to record (that would set the gauges itself).
		r.seedBackupMetrics(ctx, c, jobs.Items)
	}
	switch {
	case succeeded && last != nil && !at.After(last.Time):
		return &backupJobResult{Job: newest.Namespace + "/" + newest.Name, Succeeded: true, FinishedAt: at}, false, nil
	case !succeeded && backupFailureReported(c, newest):
		return nil, true, nil
	}
	res, err := r.readBackupJobResult(ctx, newest)
	if err != nil {
		return nil, false, err
	}
	if succeeded {
		recordBackupSuccess(c, res, plan.context.Location)
		*pending = append(*pending, backupSuccessEvent(res, c))
		ctrl.LoggerFrom(ctx).Info("Backup succeeded", "job", klog.KObj(newest), "key", c.Status.LatestBackupKey)
	}
	return &res, false, nil
}

// seedBackupMetrics sets the size and duration gauges of c from the Job of the success its status
// already records (status.latestBackupTime), when this manager has not set them yet: after a
// restart they would stay empty until the next backup. It reads that Job's pods once per cluster
// and process; a failed read is retried at the next reconcile, a Job that is gone or wrote no
// result is not.
func (r *Reconciler) seedBackupMetrics(ctx context.Context, c *kdcv1alpha1.KdcCluster, jobs []batchv1.Job) {
	key := client.ObjectKeyFromObject(c)
	last := c.Status.LatestBackupTime
	if last == nil || backupSizes.seen(key) {
		return
	}
	var job *batchv1.Job
	for i := range jobs {
		if _, succeeded, at := backupJobFinished(&jobs[i]); succeeded && at.Unix() == last.Unix() {
			job = &jobs[i]
		}
	}
	if job == nil {
		backupSizes.set(key, nil)
		return
	}
	res, err := r.readBackupJobResult(ctx, job)
	if err != nil {
		ctrl.LoggerFrom(ctx).Info("Could not read the last backup's result for the size and duration metrics; retrying at the next reconcile", "job", klog.KObj(job), "err", err.Error())
		return
	}
	backupSizes.set(key, res.Termination)
}

// backupFailureReported is true when BackupReady already reports the failure of job.
func backupFailureReported(c *kdcv1alpha1.KdcCluster, job *batchv1.Job) bool {
	cond := meta.FindStatusCondition(c.Status.Conditions, kdcv1alpha1.ConditionBackupReady)
	return cond != nil && cond.Status == metav1.ConditionFalse && cond.ObservedGeneration == c.Generation &&
		(cond.Reason == kdcv1alpha1.ReasonBackupFailed || cond.Reason == kdcv1alpha1.ReasonSnapshotTooSmall) &&
		strings.Contains(cond.Message, "Backup Job "+job.Namespace+"/"+job.Name+" ")
}

// readBackupJobResult lists the Job's pods (by the Job's controller-uid label) for the container
// result.
func (r *Reconciler) readBackupJobResult(ctx context.Context, job *batchv1.Job) (backupJobResult, error) {
	pods := &corev1.PodList{}
	if err := r.PodReader.List(ctx, pods, client.InNamespace(job.Namespace),
		client.MatchingLabels{batchv1.ControllerUidLabel: string(job.UID)}); err != nil {
		return backupJobResult{}, fmt.Errorf("failed to list pods of Job %s: %w", klog.KObj(job), err)
	}
	res := backupJobResultFromPods(job, pods.Items)
	if t := res.Termination; t != nil && t.DurationSeconds == 0 && job.Status.StartTime != nil && !res.FinishedAt.IsZero() {
		t.DurationSeconds = res.FinishedAt.Sub(job.Status.StartTime.Time).Seconds()
	}
	return res, nil
}

// recordBackupSuccess mirrors a successful Job into the status fields (docs/backup.md, "On success").
func recordBackupSuccess(c *kdcv1alpha1.KdcCluster, res backupJobResult, loc backupS3Location) {
	c.Status.LatestBackupTime = &metav1.Time{Time: res.FinishedAt}
	c.Status.LatestBackupKey = ""
	c.Status.BackupBucket = loc.Bucket
	c.Status.BackupDestinationPath = backupDestinationPath(loc)
	t := res.Termination
	if t == nil {
		return
	}
	c.Status.LatestBackupKey = t.Key
	if t.Bucket != "" {
		got := jobspec.S3Location{Bucket: t.Bucket}
		if t.ObjectKey != "" && t.Key != "" {
			got.Prefix = strings.Trim(strings.TrimSuffix(t.ObjectKey, t.Key), "/")
		} else {
			got.Prefix = loc.Prefix
		}
		c.Status.BackupBucket = got.Bucket
		c.Status.BackupDestinationPath = got.DestinationPath()
	}
}

// backupSuccessEvent tells what the Job reported: key, size, checksum and etcd revision.
func backupSuccessEvent(res backupJobResult, c *kdcv1alpha1.KdcCluster) backupEvent {
	e := backupEvent{eventType: corev1.EventTypeNormal, reason: kdcv1alpha1.ReasonBackupSucceeded, result: &res}
	t := res.Termination
	if t == nil || t.Key == "" {
		e.eventType = corev1.EventTypeWarning
		e.note = fmt.Sprintf("Backup Job %s succeeded but wrote no result to its termination message; check `kubectl logs -n %s job/%s`",
			res.Job, c.Namespace, backupJobName(res.Job))
		return e
	}
	e.note = fmt.Sprintf("Backup %q stored in %s: %d bytes, sha256 %s, etcd revision %d, %.1fs (Job %s)",
		t.Key, c.Status.BackupDestinationPath, t.Size, t.SHA256, t.Revision, t.DurationSeconds, res.Job) + backupRetentionNote(t)
	return e
}

// backupRetentionNote tells what the backup did about retention when it was not the usual
// lifecycle rule: the fallback's deletions on a backend without lifecycle rules, or why
// retention was not applied (the next backup retries).
func backupRetentionNote(t *backupTermination) string {
	switch t.Lifecycle {
	case "pruned":
		if t.Pruned == 0 {
			return ""
		}
		return fmt.Sprintf("; the bucket has no lifecycle rules, so the backup deleted %d snapshots older than the retention", t.Pruned)
	case "unsupported", "failed":
		return fmt.Sprintf("; retention was not applied (%s): %s; the next backup retries", t.Lifecycle, t.LifecycleError)
	}
	return ""
}

// patchBackupStatus server-side applies, with its own field owner, only what this reconciler
// owns: the BackupReady entry of status.conditions (a map list keyed by type, so RestoreReady and
// anything else stay untouched) and the backup status fields. Unlike an optimistic-lock merge
// patch it cannot conflict when the cache lags behind its own previous write; such conflicts
// would be retried through the rate-limited work queue, which at a thousand clusters costs tens
// of seconds (docs/benchmarks.md).
func (r *Reconciler) patchBackupStatus(ctx context.Context, orig, c *kdcv1alpha1.KdcCluster) error {
	if equality.Semantic.DeepEqual(orig.Status, c.Status) {
		return nil
	}
	status := map[string]any{}
	if cond := meta.FindStatusCondition(c.Status.Conditions, kdcv1alpha1.ConditionBackupReady); cond != nil {
		m, err := backupToMap(cond)
		if err != nil {
			return fmt.Errorf("failed to encode BackupReady of KdcCluster %s: %w", klog.KObj(c), err)
		}
		status["conditions"] = []any{m}
	}
	for k, v := range map[string]string{
		"latestBackupKey":       c.Status.LatestBackupKey,
		"backupBucket":          c.Status.BackupBucket,
		"backupDestinationPath": c.Status.BackupDestinationPath,
	} {
		if v != "" {
			status[k] = v
		}
	}
	if t := c.Status.LatestBackupTime; t != nil {
		status["latestBackupTime"] = t.UTC().Format(time.RFC3339)
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": kdcv1alpha1.GroupVersion.String(),
		"kind":       "KdcCluster",
		"metadata":   map[string]any{"name": c.Name, "namespace": c.Namespace},
		"status":     status,
	}}
	if err := r.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(backupFieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("failed to apply status of KdcCluster %s: %w", klog.KObj(c), err)
	}
	return nil
}

// observeBackupMetrics updates the metrics from the persisted status and the recorded events.
func (r *Reconciler) observeBackupMetrics(c *kdcv1alpha1.KdcCluster, pending []backupEvent) {
	key := client.ObjectKeyFromObject(c)
	if cond := meta.FindStatusCondition(c.Status.Conditions, kdcv1alpha1.ConditionBackupReady); cond != nil {
		backupReasons.set(key, cond.Reason)
	}
	if t := c.Status.LatestBackupTime; t != nil {
		backupLastSuccessTime.WithLabelValues(c.Namespace, c.Name).Set(float64(t.Unix()))
	}
	for _, e := range pending {
		if e.result != nil && e.result.Termination != nil {
			backupSizes.set(key, e.result.Termination)
		}
	}
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Setup registers the backup reconciler with the manager. Watches, all mapped to
// the owning KdcCluster: the KdcCluster, its CronJob (owned), its Jobs (by label), the namespace's
// ObjectBucketClaim and its ConfigMap, and the datastore's etcd StatefulSet.
func Setup(mgr ctrl.Manager, o Options) error {
	registerBackupMetrics()
	if o.Image == "" {
		return errors.New("backup controller needs the image of its Jobs: set the manager's --image (or MANAGER_IMAGE)")
	}
	// Only the ConfigMaps named managed-k8s-backups, in a cache of their own.
	cmCache, err := cache.New(mgr.GetConfig(), cache.Options{
		HTTPClient: mgr.GetHTTPClient(),
		Scheme:     mgr.GetScheme(),
		Mapper:     mgr.GetRESTMapper(),
		ByObject: map[client.Object]cache.ByObject{&corev1.ConfigMap{}: {
			Field: fields.OneTermEqualSelector("metadata.name", kdcv1alpha1.ObjectBucketClaimName),
		}},
	})
	if err != nil {
		return fmt.Errorf("failed to create the ConfigMap cache: %w", err)
	}
	if err := mgr.Add(cmCache); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &kdcv1alpha1.KdcCluster{}, backupDataStoreIndex,
		func(o client.Object) []string {
			c := o.(*kdcv1alpha1.KdcCluster)
			if c.Status.DataStoreName == "" {
				return nil
			}
			return []string{c.DataStoreNamespace() + "/" + c.Status.DataStoreName}
		}); err != nil {
		return fmt.Errorf("failed to index KdcClusters by datastore: %w", err)
	}
	r := &Reconciler{
		Client:     mgr.GetClient(),
		PodReader:  mgr.GetAPIReader(),
		ConfigMaps: cmCache,
		Recorder:   mgr.GetEventRecorder(backupControllerName),
		Options:    o,
	}
	if err := setupAdmission(mgr, o); err != nil {
		return err
	}
	clustersInNamespace := handler.EnqueueRequestsFromMapFunc(r.clustersInNamespace)
	return ctrl.NewControllerManagedBy(mgr).
		Named(backupControllerName).
		WithOptions(crcontroller.Options{MaxConcurrentReconciles: backupMaxConcurrentReconciles}).
		For(&kdcv1alpha1.KdcCluster{}, builder.WithPredicates(backupClusterChanged())).
		Owns(&batchv1.CronJob{}).
		Watches(&batchv1.Job{}, handler.EnqueueRequestsFromMapFunc(backupJobToCluster), builder.WithPredicates(backupJobChanged())).
		Watches(&obcv1alpha1.ObjectBucketClaim{}, clustersInNamespace,
			builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetName() == kdcv1alpha1.ObjectBucketClaimName }))).
		Watches(&appsv1.StatefulSet{}, handler.EnqueueRequestsFromMapFunc(r.clustersOfStatefulSet), builder.WithPredicates(backupStatefulSetChanged())).
		// A cluster joining or leaving a datastore, or its referenceCount, can switch the co-tenants'
		// backups between whole-etcd and prefix mode.
		Watches(&kdcv1alpha1.KdcCluster{}, handler.EnqueueRequestsFromMapFunc(r.clustersOfSameDataStore), builder.WithPredicates(backupDataStoreMembershipChanged())).
		Watches(&kdcv1alpha1.KdcClusterDatastore{}, handler.EnqueueRequestsFromMapFunc(r.clustersOfDataStore), builder.WithPredicates(backupReferenceCountChanged())).
		WatchesRawSource(source.Kind(cmCache, client.Object(&corev1.ConfigMap{}), handler.EnqueueRequestsFromMapFunc(r.clustersInNamespace))).
		Complete(r)
}

// backupClusterChanged passes the KdcCluster events that can change the outcome: spec changes,
// status.dataStoreName and status.latestBackupTime (written by others, or restored), deletion.
// Its own BackupReady writes and the restore reconciler's bookkeeping do not wake it.
func backupClusterChanged() predicate.Funcs {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*kdcv1alpha1.KdcCluster)
		n, ok2 := e.ObjectNew.(*kdcv1alpha1.KdcCluster)
		if !ok1 || !ok2 {
			return true
		}
		return o.Generation != n.Generation || o.Status.DataStoreName != n.Status.DataStoreName ||
			!o.Status.LatestBackupTime.Equal(n.Status.LatestBackupTime) ||
			!o.DeletionTimestamp.Equal(n.DeletionTimestamp)
	}}
}

// backupJobChanged passes backup Jobs' creation, deletion and their finishing.
func backupJobChanged() predicate.Funcs {
	isBackup := func(o client.Object) bool {
		return o.GetLabels()[kdcv1alpha1.LabelComponent] == kdcv1alpha1.ComponentBackup && o.GetLabels()[kdcv1alpha1.LabelCluster] != ""
	}
	return predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return isBackup(e.Object) },
		DeleteFunc:  func(e event.DeleteEvent) bool { return isBackup(e.Object) },
		GenericFunc: func(e event.GenericEvent) bool { return isBackup(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*batchv1.Job)
			n, ok2 := e.ObjectNew.(*batchv1.Job)
			if !ok1 || !ok2 || !isBackup(n) {
				return false
			}
			d1, s1, _ := backupJobFinished(o)
			d2, s2, _ := backupJobFinished(n)
			return d1 != d2 || s1 != s2
		},
	}
}

// backupStatefulSetChanged passes etcd StatefulSets appearing, going, or changing what the
// endpoints are made of.
func backupStatefulSetChanged() predicate.Funcs {
	isEtcd := func(o client.Object) bool { return strings.HasSuffix(o.GetName(), "-etcd") }
	return predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return isEtcd(e.Object) },
		DeleteFunc:  func(e event.DeleteEvent) bool { return isEtcd(e.Object) },
		GenericFunc: func(e event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*appsv1.StatefulSet)
			n, ok2 := e.ObjectNew.(*appsv1.StatefulSet)
			if !ok1 || !ok2 || !isEtcd(n) {
				return false
			}
			return !equality.Semantic.DeepEqual(backupEtcdEndpoints(o), backupEtcdEndpoints(n))
		},
	}
}

// backupJobToCluster maps a backup Job to its KdcCluster by the cluster label.
func backupJobToCluster(_ context.Context, o client.Object) []reconcile.Request {
	name := o.GetLabels()[kdcv1alpha1.LabelCluster]
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
}

// clustersInNamespace maps the ObjectBucketClaim (or its ConfigMap) to every KdcCluster of its
// namespace.
func (r *Reconciler) clustersInNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	list := &kdcv1alpha1.KdcClusterList{}
	if err := r.List(ctx, list, client.InNamespace(o.GetNamespace())); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list KdcClusters", "namespace", o.GetNamespace())
		return nil
	}
	return backupRequests(list)
}

// clustersOfStatefulSet maps an etcd StatefulSet DS-etcd to the KdcClusters of datastore DS.
func (r *Reconciler) clustersOfStatefulSet(ctx context.Context, o client.Object) []reconcile.Request {
	ds := strings.TrimSuffix(o.GetName(), "-etcd")
	list := &kdcv1alpha1.KdcClusterList{}
	if err := r.List(ctx, list, client.MatchingFields{backupDataStoreIndex: o.GetNamespace() + "/" + ds}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list KdcClusters of datastore", "statefulSet", klog.KObj(o))
		return nil
	}
	return backupRequests(list)
}

func backupRequests(list *kdcv1alpha1.KdcClusterList) []reconcile.Request {
	out := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return out
}

// backupMode decides whole-etcd or prefix backups (engine.ModeOf) and, in prefix mode, the
// tenant's etcd prefix; a prefix that cannot be determined closes the gate with PrefixUnknown,
// never a backup of everyone's keys.
func (r *Reconciler) backupMode(ctx context.Context, c *kdcv1alpha1.KdcCluster, sts *appsv1.StatefulSet) (engine.Mode, string, jobspec.EtcdCerts, string, string, error) {
	ds := &kdcv1alpha1.KdcClusterDatastore{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: c.DataStoreNamespace(), Name: c.DataStore()}, ds); err != nil {
		if !apierrors.IsNotFound(err) {
			return "", "", jobspec.EtcdCerts{}, "", "", fmt.Errorf("failed to get KdcClusterDatastore %s/%s: %w", c.DataStoreNamespace(), c.DataStore(), err)
		}
		ds = nil
	}
	users := &kdcv1alpha1.KdcClusterList{}
	if err := r.List(ctx, users, client.MatchingFields{backupDataStoreIndex: c.DataStoreNamespace() + "/" + c.DataStore()}); err != nil {
		return "", "", jobspec.EtcdCerts{}, "", "", fmt.Errorf("failed to list the KdcClusters of datastore %s/%s: %w", c.DataStoreNamespace(), c.DataStore(), err)
	}
	mode, why := engine.ModeOf(c, ds, users.Items)
	if mode == engine.ModeWholeEtcd {
		return mode, "", jobspec.EtcdCerts{}, "", "", nil
	}
	d := &appsv1.Deployment{}
	key := types.NamespacedName{Namespace: c.Namespace, Name: kdcv1alpha1.ControlPlaneDeploymentName(c.Name)}
	if err := r.Get(ctx, key, d); err != nil {
		if !apierrors.IsNotFound(err) {
			return "", "", jobspec.EtcdCerts{}, "", "", fmt.Errorf("failed to get Deployment %s: %w", key, err)
		}
		return "", "", jobspec.EtcdCerts{}, kdcv1alpha1.ReasonPrefixUnknown, fmt.Sprintf(
			"The datastore is shared (%s) and the control plane Deployment %s, whose --etcd-prefix says which keys are the tenant's, does not exist; no backup is made until it does", why, key), nil
	}
	var tcp *kamajiv1alpha1.TenantControlPlane
	if ref := metav1.GetControllerOf(d); ref != nil && ref.Kind == engine.TenantControlPlaneKind.Kind {
		var err error
		if tcp, err = engine.GetTenantControlPlane(ctx, r.PodReader, c.Namespace, ref.Name); err != nil {
			return "", "", jobspec.EtcdCerts{}, "", "", err
		}
	}
	prefix, err := engine.EtcdPrefixOf(d, tcp)
	if err != nil {
		return "", "", jobspec.EtcdCerts{}, kdcv1alpha1.ReasonPrefixUnknown, fmt.Sprintf(
			"The datastore is shared (%s) and the tenant's etcd key prefix is unknown: %v; no backup is made (a whole-etcd snapshot would copy the other tenants' data)", why, err), nil
	}
	certs, _ := engine.TenantEtcdCerts(c, tcp)
	return mode, prefix, certs, "", "", nil
}

// clustersOfSameDataStore maps a KdcCluster to every KdcCluster of its datastore.
func (r *Reconciler) clustersOfSameDataStore(ctx context.Context, o client.Object) []reconcile.Request {
	c, ok := o.(*kdcv1alpha1.KdcCluster)
	if !ok || c.DataStore() == "" {
		return nil
	}
	return r.clustersWithDataStore(ctx, c.DataStoreNamespace()+"/"+c.DataStore())
}

// clustersOfDataStore maps a KdcClusterDatastore to its KdcClusters.
func (r *Reconciler) clustersOfDataStore(ctx context.Context, o client.Object) []reconcile.Request {
	return r.clustersWithDataStore(ctx, o.GetNamespace()+"/"+o.GetName())
}

func (r *Reconciler) clustersWithDataStore(ctx context.Context, key string) []reconcile.Request {
	list := &kdcv1alpha1.KdcClusterList{}
	if err := r.List(ctx, list, client.MatchingFields{backupDataStoreIndex: key}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list KdcClusters of datastore", "dataStore", key)
		return nil
	}
	return backupRequests(list)
}

// backupDataStoreMembershipChanged passes a KdcCluster appearing, going, or changing datastore.
func backupDataStoreMembershipChanged() predicate.Funcs {
	return predicate.Funcs{
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*kdcv1alpha1.KdcCluster)
			n, ok2 := e.ObjectNew.(*kdcv1alpha1.KdcCluster)
			return ok1 && ok2 && (o.DataStore() != n.DataStore() || o.DataStoreNamespace() != n.DataStoreNamespace() || o.Spec.DataStore.Dedicated != n.Spec.DataStore.Dedicated)
		},
	}
}

// backupReferenceCountChanged passes a datastore appearing, going, or changing referenceCount.
func backupReferenceCountChanged() predicate.Funcs {
	return predicate.Funcs{
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*kdcv1alpha1.KdcClusterDatastore)
			n, ok2 := e.ObjectNew.(*kdcv1alpha1.KdcClusterDatastore)
			return ok1 && ok2 && o.Status.ReferenceCount != n.Status.ReferenceCount
		},
	}
}
