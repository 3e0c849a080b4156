package controller

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/webhook"
)

// restoreFromPath is the field the re-checked rules report on.
var restoreFromPath = webhook.AnnotationsPath.Key(kdcv1alpha1.AnnotationRestoreFrom)

// reconcileValidating is the Validating step. Nothing disruptive happens here:
//
//  1. first time: record restore-started-at (the attempt) and the phase clock, report
//     RestoreReady=Unknown/Restoring;
//  2. re-check the webhook's rules (InvalidKey, ForeignKey, DataStoreUnknown,
//     MultiReplicaUnsupported) for requests admitted while it was absent, and that C-cp and
//     DS-etcd exist (ObjectsMissing); resolve the Jobs' inputs (S3NotAvailable,
//     EtcdMemberUnknown). These are user errors: terminal, reported at once;
//  3. the verify Job proves the snapshot exists and is intact (S3 checksum, sha256, size, etcd's
//     hash); its failure is SnapshotUnavailable;
//  4. record C-cp's replica count and enter DrainingControlPlane.
func (r *RestoreReconciler) reconcileValidating(ctx context.Context, s *restoreScope) (stepResult, error) {
	if s.attempt() == "" {
		if err := r.begin(ctx, s); err != nil {
			return stepResult{}, err
		}
	}
	c := s.cluster
	if reason, detail := restoreKeyRule(c, s.key()); reason != "" {
		return r.reject(ctx, s, reason, detail)
	}
	ds, err := r.dataStore(ctx, c)
	if err != nil {
		return stepResult{}, err
	}
	if reason, detail := restoreDataStoreRule(c, ds); reason != "" {
		return r.reject(ctx, s, reason, detail)
	}
	deploy, sts, err := r.workloads(ctx, c)
	if err != nil {
		var missing *restoreInputsError
		if errors.As(err, &missing) {
			return r.reject(ctx, s, missing.reason, missing.Error())
		}
		return stepResult{}, err
	}
	in, err := r.jobInputs(ctx, s, sts)
	if err != nil {
		var ie *restoreInputsError
		if errors.As(err, &ie) {
			return r.reject(ctx, s, ie.reason, ie.Error())
		}
		return stepResult{}, err
	}
	job, state, err := r.ensureRestoreJob(ctx, s, restoreJobVerify, in)
	if err != nil {
		return stepResult{}, err
	}
	switch state {
	case restoreJobFailedState:
		return r.reject(ctx, s, kdcv1alpha1.ReasonSnapshotUnavailable,
			r.jobFailureDetail(ctx, job)+"; pick another snapshot and annotate again")
	case restoreJobPending:
		return r.wait(ctx, s, kdcv1alpha1.ReasonSnapshotUnavailable, fmt.Sprintf("the verify Job %s/%s did not finish", c.Namespace, kdcv1alpha1.VerifyJobName(c.Name)))
	}
	extra := map[string]string{}
	if s.ann(kdcv1alpha1.AnnotationRestoreControlPlaneReplicas) == "" {
		extra[kdcv1alpha1.AnnotationRestoreControlPlaneReplicas] = strconv.Itoa(int(restoreReplicas(deploy.Spec.Replicas)))
	}
	return r.enter(ctx, s, kdcv1alpha1.PhaseDrainingControlPlane, extra)
}

// begin records the start of a restore: the attempt, the phase clock, Validating (for a request
// the webhook did not stamp) and RestoreReady=Unknown.
func (r *RestoreReconciler) begin(ctx context.Context, s *restoreScope) error {
	now := s.now.Format(time.RFC3339Nano)
	if err := r.recordAnnotations(ctx, s, map[string]string{
		kdcv1alpha1.AnnotationRestoreState:      string(kdcv1alpha1.PhaseValidating),
		kdcv1alpha1.AnnotationRestoreStartedAt:  now,
		kdcv1alpha1.AnnotationRestorePhaseSince: s.now.Format(time.RFC3339),
	}); err != nil {
		return err
	}
	if err := r.patchStatus(ctx, s, func(c *kdcv1alpha1.KdcCluster) {
		setCondition(c, kdcv1alpha1.ConditionRestoreReady, metav1.ConditionUnknown, kdcv1alpha1.ReasonRestoreRunning,
			fmt.Sprintf("Restore from %q in progress", s.key()))
	}); err != nil {
		return err
	}
	restoreStarted()
	s.log.Info("Restore started", "key", s.key(), "requestedBy", s.ann(kdcv1alpha1.AnnotationRestoreRequestedBy))
	r.event(s, corev1.EventTypeNormal, string(kdcv1alpha1.PhaseValidating), "Restore from %q: %s", s.key(), restorePhaseNote(kdcv1alpha1.PhaseValidating))
	return nil
}

// reject ends a restore for a user error that retrying cannot fix (nothing was changed yet):
// RestoreReady=False at once, annotations cleared, and a terminal error so it is not retried.
func (r *RestoreReconciler) reject(ctx context.Context, s *restoreScope, reason, detail string) (stepResult, error) {
	if err := r.finishFailure(ctx, s, reason, detail, restoreOutcomeUntouched); err != nil {
		return stepResult{}, err
	}
	return stepResult{}, reconcile.TerminalError(fmt.Errorf("restore from %q rejected (%s): %s", s.key(), reason, detail))
}

// restoreKeyRule re-checks the webhook's key rules (InvalidKey, ForeignKey); it returns the
// reason and detail of the first broken rule, or "" when the key is acceptable.
func restoreKeyRule(c *kdcv1alpha1.KdcCluster, key string) (reason, detail string) {
	if errs := webhook.ValidateRestoreKey(restoreFromPath, key, c.Name); len(errs) > 0 {
		return restoreRuleReason(errs[0], kdcv1alpha1.ReasonInvalidKey), errs[0].Detail
	}
	return "", ""
}

// restoreDataStoreRule re-checks the webhook's datastore rules (DataStoreUnknown when ds is nil,
// MultiReplicaUnsupported); it returns the reason and detail of the first broken rule, or "".
func restoreDataStoreRule(c *kdcv1alpha1.KdcCluster, ds *kdcv1alpha1.KdcClusterDatastore) (reason, detail string) {
	errs := webhook.ValidateDataStoreForRestore(restoreFromPath, ds)
	if ds == nil {
		errs = webhook.ValidateDataStoreFound(restoreFromPath, c.DataStoreNamespace(), c.DataStore())
	}
	if len(errs) > 0 {
		return restoreRuleReason(errs[0], kdcv1alpha1.ReasonDataStoreUnknown), errs[0].Detail
	}
	return "", ""
}

// restoreRuleReason is the reason of a webhook rule error, or def when it carries none.
func restoreRuleReason(err *field.Error, def string) string {
	if r := webhook.ReasonOf(err); r != "" {
		return r
	}
	return def
}

// dataStore returns the cluster's datastore, or nil when it does not exist (or none is named).
func (r *RestoreReconciler) dataStore(ctx context.Context, c *kdcv1alpha1.KdcCluster) (*kdcv1alpha1.KdcClusterDatastore, error) {
	if c.DataStore() == "" {
		return nil, nil
	}
	ds := &kdcv1alpha1.KdcClusterDatastore{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: c.DataStoreNamespace(), Name: c.DataStore()}, ds)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to get KdcClusterDatastore %s/%s: %w", c.DataStoreNamespace(), c.DataStore(), err)
	}
	return ds, nil
}

// workloads returns C-cp and DS-etcd; a missing one is a *restoreInputsError (ObjectsMissing).
func (r *RestoreReconciler) workloads(ctx context.Context, c *kdcv1alpha1.KdcCluster) (*appsv1.Deployment, *appsv1.StatefulSet, error) {
	deploy := &appsv1.Deployment{}
	sts := &appsv1.StatefulSet{}
	for _, o := range []struct {
		kind string
		obj  client.Object
		key  client.ObjectKey
	}{
		{"Deployment", deploy, client.ObjectKey{Namespace: c.Namespace, Name: kdcv1alpha1.ControlPlaneDeploymentName(c.Name)}},
		{"StatefulSet", sts, client.ObjectKey{Namespace: c.DataStoreNamespace(), Name: kdcv1alpha1.EtcdStatefulSetName(c.DataStore())}},
	} {
		if err := r.Client.Get(ctx, o.key, o.obj); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, nil, &restoreInputsError{kdcv1alpha1.ReasonObjectsMissing,
					fmt.Errorf("%s %s does not exist", o.kind, o.key)}
			}
			return nil, nil, fmt.Errorf("failed to get %s: %w", klog.KRef(o.key.Namespace, o.key.Name), err)
		}
	}
	return deploy, sts, nil
}

// restoreReplicas is a replica count, defaulting a nil one to 1 like the API server.
func restoreReplicas(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}
