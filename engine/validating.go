package engine

import (
	"context"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// validating is the Validating step. Nothing disruptive happens here:
//
//  1. first time: record restore-started-at (the attempt) and the phase clock, report
//     RestoreReady=Unknown/Restoring;
//  2. unless a plan is recorded: check the rules (Prepare; for requests admitted while the
//     webhook was absent) and record the plan. A broken rule is a user error: rejected at once;
//  3. the verify Job proves the snapshot exists and is intact (S3 checksum, sha256, size, etcd's
//     hash); its failure is SnapshotUnavailable;
//  4. record C-cp's replica count and, when a Kamaji TenantControlPlane owns C-cp, whether the
//     restore pauses it or it was paused before; enter DrainingControlPlane.
func (e *Engine) validating(ctx context.Context, r *Restore) (step, error) {
	if r.Attempt() == "" {
		if err := e.begin(ctx, r); err != nil {
			return step{}, err
		}
	}
	p, err := r.recordedPlan()
	if err != nil {
		plan, _, err := e.Prepare(ctx, r.Cluster, r.Key())
		if v := AsViolation(err); v != nil {
			return e.reject(ctx, r, *v)
		}
		if err != nil {
			return step{}, err
		}
		enc, err := plan.encode()
		if err != nil {
			return step{}, err
		}
		if err := e.save(ctx, r, map[string]string{kdcv1alpha1.AnnotationRestorePlan: enc}); err != nil {
			return step{}, err
		}
		p = plan
	}
	job, out, err := e.ensureJob(ctx, r, JobVerify, p)
	if err != nil {
		return step{}, err
	}
	switch out {
	case JobFailed:
		return e.reject(ctx, r, Violation{Reason: kdcv1alpha1.ReasonSnapshotUnavailable,
			Detail: e.failureDetail(ctx, job) + "; pick another snapshot and annotate again"})
	case JobPending:
		c := r.Cluster
		return e.wait(ctx, r, kdcv1alpha1.ReasonSnapshotUnavailable,
			fmt.Sprintf("the verify Job %s/%s did not finish", c.Namespace, kdcv1alpha1.VerifyJobName(c.Name)), "")
	}
	r.Driver.Note(r, fmt.Sprintf("Snapshot %q verified (checksum, size, etcd hash)", r.Key()))
	extra := map[string]string{}
	if r.get(kdcv1alpha1.AnnotationRestoreControlPlaneReplicas) == "" {
		w, err := e.workloads(ctx, r.Cluster)
		if v := AsViolation(err); v != nil {
			return e.reject(ctx, r, *v)
		}
		if err != nil {
			return step{}, err
		}
		extra[kdcv1alpha1.AnnotationRestoreControlPlaneReplicas] = strconv.Itoa(int(replicas(w.ControlPlane.Spec.Replicas)))
	}
	if o := p.ControlPlaneOwner; o != nil && r.get(kdcv1alpha1.AnnotationRestoreControlPlanePaused) == "" {
		state, err := e.pauseState(ctx, r, o)
		if v := AsViolation(err); v != nil {
			return e.reject(ctx, r, *v)
		}
		if err != nil {
			return step{}, err
		}
		extra[kdcv1alpha1.AnnotationRestoreControlPlanePaused] = state
	}
	return e.enter(ctx, r, kdcv1alpha1.PhaseDrainingControlPlane, extra)
}

// begin records the start of a restore: the attempt, the phase clock, Validating (for a request
// the webhook did not stamp) and RestoreReady=Unknown.
func (e *Engine) begin(ctx context.Context, r *Restore) error {
	if err := e.save(ctx, r, map[string]string{
		kdcv1alpha1.AnnotationRestoreState:      string(kdcv1alpha1.PhaseValidating),
		kdcv1alpha1.AnnotationRestoreStartedAt:  r.now.Format(time.RFC3339Nano),
		kdcv1alpha1.AnnotationRestorePhaseSince: r.now.Format(time.RFC3339),
	}); err != nil {
		return err
	}
	if err := r.Driver.SetReady(ctx, r, metav1.ConditionUnknown, kdcv1alpha1.ReasonRestoreRunning,
		fmt.Sprintf("Restore from %q in progress", r.Key()), false); err != nil {
		return err
	}
	r.Driver.Observe(Observation{Started: true})
	r.log.Info("Restore started", "key", r.Key(), "requestedBy", r.get(kdcv1alpha1.AnnotationRestoreRequestedBy))
	r.Driver.Event(r, corev1.EventTypeNormal, string(kdcv1alpha1.PhaseValidating),
		fmt.Sprintf("Restore from %q: %s", r.Key(), phaseNote(kdcv1alpha1.PhaseValidating)))
	return nil
}

// reject ends a restore for a user error that retrying cannot fix (nothing was changed yet):
// RestoreReady=False at once and the record cleared; the Outcome says Rejected.
func (e *Engine) reject(ctx context.Context, r *Restore, v Violation) (step, error) {
	if err := e.finishFailure(ctx, r, v, outcomeUntouched, nil); err != nil {
		return step{}, err
	}
	r.Outcome.Rejected = true
	return step{advanced: true}, nil
}
