package engine

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// Engine runs restores (docs/restore.md). One Engine serves every restore of a driver; it holds
// no state of its own: a restore's progress is its Record.
type Engine struct {
	// Client reads (the controller: from its cache) and writes.
	Client client.Client
	// Live reads uncached: the pods of a finished Job (termination messages), the OBC and its
	// ConfigMap, and confirming that a recorded Job is really gone.
	Live client.Reader
	// JobPods reads the full pods of the restore's Jobs, to decide a Job as soon as its pod is
	// terminal; nil means Live.
	JobPods client.Reader
	// Image is the image of the Jobs (the manager's own).
	Image string
	// S3Endpoint is the default S3 endpoint (the manager's S3_ENDPOINT), used when neither the
	// KdcCluster nor the ObjectBucketClaim names one.
	S3Endpoint string
	// Timeouts are the per-phase deadlines; zero fields take the defaults.
	Timeouts Timeouts
	// Clock is the time source; nil means the real clock.
	Clock clock.PassiveClock
}

// Driver keeps and tells a restore's progress. The controller keeps it in the KdcCluster's
// annotations and tells it in Events and metrics; `kubectl kdc restore --manual` keeps it in
// memory and prints it.
type Driver interface {
	// Save records kv (an empty value removes the key) into r.Record; the engine acts only after
	// it returned, so a restart resumes from what was saved.
	Save(ctx context.Context, r *Restore, kv map[string]string) error
	// SetReady reports the RestoreReady condition; succeeded also sets latestRestoreKey/Time.
	SetReady(ctx context.Context, r *Restore, status metav1.ConditionStatus, reason, message string, succeeded bool) error
	// Event tells a step of the restore, as the controller's Events do.
	Event(r *Restore, eventType, reason, message string)
	// Note tells progress that is not an Event, with log key/value pairs.
	Note(r *Restore, message string, kv ...any)
	// Observe is told when a restore started, a phase ended, or the restore finished.
	Observe(o Observation)
}

// Observation is a moment of a restore worth a metric.
type Observation struct {
	// Started: the restore began (Validating, first time).
	Started bool
	// Phase ended after Duration (PhaseRecovery: the recovery after a failure).
	Phase    kdcv1alpha1.RestorePhase
	Duration time.Duration
	// Finished: the restore ended with Outcome (RestoreReady's reason) and the failure Reason.
	Finished        bool
	Outcome, Reason string
}

// PhaseRecovery names the recovery after a failure, which has no phase of its own, in metrics
// and messages.
const PhaseRecovery kdcv1alpha1.RestorePhase = "Recovery"

// Restore is one restore of one KdcCluster: the cluster, the record of its progress and its
// driver. Record uses the restore annotation keys (docs/restore.md, "Annotations").
type Restore struct {
	Cluster *kdcv1alpha1.KdcCluster
	Record  map[string]string
	Driver  Driver
	// Outcome is set once the restore ended.
	Outcome *Outcome

	now  time.Time
	log  logr.Logger
	plan *Plan
}

// Outcome is how a restore ended.
type Outcome struct {
	Succeeded bool
	// Rejected: a rule or the snapshot refused the restore before anything was changed.
	Rejected bool
	Failure  Violation
	// Message is RestoreReady's message.
	Message string
	// NotReady lists what was still not ready when bringing the cluster back gave up.
	NotReady []string
}

// Result is what one Run tells its driver.
type Result struct {
	// RequeueAfter is the time left until the current deadline while the restore waits; the
	// driver runs it again on an event of its objects, or then.
	RequeueAfter time.Duration
	// Waiting says what the restore waits for.
	Waiting string
}

func (r *Restore) get(k string) string { return r.Record[k] }

// Key is the snapshot key being restored.
func (r *Restore) Key() string { return r.get(kdcv1alpha1.AnnotationRestoreFrom) }

// Phase is the recorded phase.
func (r *Restore) Phase() kdcv1alpha1.RestorePhase {
	return kdcv1alpha1.RestorePhaseOf(r.Record)
}

// Attempt identifies this restore: the restore-started-at value, stamped on its Jobs.
func (r *Restore) Attempt() string { return r.get(kdcv1alpha1.AnnotationRestoreStartedAt) }

// Failed reports whether a failure is recorded (the recovery runs).
func (r *Restore) Failed() bool { return r.get(kdcv1alpha1.AnnotationRestoreFailure) != "" }

// Failure is the recorded failure.
func (r *Restore) Failure() Violation {
	return ParseViolation(r.get(kdcv1alpha1.AnnotationRestoreFailure))
}

// phaseSince is when the current phase (or the recovery after a failure) began.
func (r *Restore) phaseSince() time.Time {
	t, err := time.Parse(time.RFC3339, r.get(kdcv1alpha1.AnnotationRestorePhaseSince))
	if err != nil {
		return r.now
	}
	return t
}

// recordedReplicas is a replica count recorded under k; 1 when unreadable (etcd and the control
// plane are never left at 0 by mistake).
func (r *Restore) recordedReplicas(k string) int32 {
	n, err := strconv.ParseInt(r.get(k), 10, 32)
	if err != nil || n < 0 {
		return 1
	}
	return int32(n)
}

// SwapMayHaveBegun reports whether the restore may already have touched the data: the phase is
// past RestoringSnapshot, or the restore Job's UID is recorded.
func (r *Restore) SwapMayHaveBegun() bool {
	switch r.Phase() {
	case kdcv1alpha1.PhaseStartingEtcd, kdcv1alpha1.PhaseStartingControlPlane:
		return true
	}
	return r.get(kdcv1alpha1.AnnotationRestoreJobUID) != "" || r.get(kdcv1alpha1.AnnotationRestoreMembersRevision) != ""
}

// step is what a phase step tells the spine.
type step struct {
	// advanced: the step recorded a transition (next phase, a failure, or the end); the spine
	// runs the next step at once.
	advanced bool
	// requeueAfter is the time left until the phase's deadline while the step waits.
	requeueAfter time.Duration
	waiting      string
}

// phases are the steps of the running phases, in order (docs/restore.md, "Phases").
func (e *Engine) phases() map[kdcv1alpha1.RestorePhase]func(context.Context, *Restore) (step, error) {
	return map[kdcv1alpha1.RestorePhase]func(context.Context, *Restore) (step, error){
		kdcv1alpha1.PhaseValidating:           e.validating,
		kdcv1alpha1.PhaseDrainingControlPlane: e.draining,
		kdcv1alpha1.PhaseStoppingEtcd:         e.stoppingEtcd,
		kdcv1alpha1.PhaseRestoringSnapshot:    e.restoring,
		kdcv1alpha1.PhaseStartingEtcd:         e.startingEtcd,
		kdcv1alpha1.PhaseStartingControlPlane: e.startingControlPlane,
	}
}

// Run runs the restore from wherever its record stands, each step in turn while they advance,
// until one waits or the restore ends (r.Outcome). After a recorded failure it runs the
// recovery. Each step records what it needs before acting, so a Run interrupted anywhere is
// resumed by the next one.
func (e *Engine) Run(ctx context.Context, r *Restore) (Result, error) {
	r.now = e.clock().Now().UTC()
	r.log = ctrl.LoggerFrom(ctx)
	phases := e.phases()
	for r.Outcome == nil {
		var res step
		var err error
		if r.Failed() {
			res, err = e.recover(ctx, r)
		} else {
			phase := r.Phase()
			if phase == "" {
				phase = kdcv1alpha1.PhaseValidating
			}
			run, ok := phases[phase]
			if !ok {
				return Result{}, nil
			}
			res, err = run(ctx, r)
		}
		if err != nil || !res.advanced {
			return Result{RequeueAfter: res.requeueAfter, Waiting: res.waiting}, err
		}
	}
	return Result{}, nil
}

func (e *Engine) clock() clock.PassiveClock {
	if e.Clock == nil {
		return clock.RealClock{}
	}
	return e.Clock
}

func (e *Engine) timeouts() Timeouts { return e.Timeouts.WithDefaults() }

// save records kv through the driver.
func (e *Engine) save(ctx context.Context, r *Restore, kv map[string]string) error {
	return r.Driver.Save(ctx, r, kv)
}

// enter records the transition to phase (and what the next steps need, in extra) before any of
// that phase's side effects.
func (e *Engine) enter(ctx context.Context, r *Restore, phase kdcv1alpha1.RestorePhase, extra map[string]string) (step, error) {
	from, since := r.Phase(), r.phaseSince()
	kv := map[string]string{
		kdcv1alpha1.AnnotationRestoreState:      string(phase),
		kdcv1alpha1.AnnotationRestorePhaseSince: r.now.Format(time.RFC3339),
	}
	for k, v := range extra {
		kv[k] = v
	}
	if err := e.save(ctx, r, kv); err != nil {
		return step{}, err
	}
	r.Driver.Observe(Observation{Phase: from, Duration: r.now.Sub(since)})
	r.log.Info("Restore phase", "from", from, "to", phase, "key", r.Key())
	note := phaseNote(phase)
	if p, err := r.recordedPlan(); err == nil && p.Mode == ModePrefix {
		note = prefixPhaseNote(phase, p.EtcdPrefix)
	}
	r.Driver.Event(r, corev1.EventTypeNormal, string(phase), fmt.Sprintf("Restore from %q: %s", r.Key(), note))
	return step{advanced: true}, nil
}

// phaseNote says what a phase does, for its Event.
func phaseNote(p kdcv1alpha1.RestorePhase) string {
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

// prefixPhaseNote says what a phase does in prefix mode, for its Event.
func prefixPhaseNote(p kdcv1alpha1.RestorePhase, prefix string) string {
	switch p {
	case kdcv1alpha1.PhaseRestoringSnapshot:
		return "control plane drained; converging the keys under " + prefix + "/ to the snapshot (etcd stays up for the other tenants)"
	case kdcv1alpha1.PhaseStartingControlPlane:
		return "the keys under " + prefix + "/ are the snapshot's; starting the control plane with fresh pods"
	}
	return phaseNote(p)
}

// wait returns the requeue until the current phase's deadline, or records failure reason when it
// passed.
func (e *Engine) wait(ctx context.Context, r *Restore, reason, what, status string) (step, error) {
	timeout := e.timeouts().ForPhase(r.Phase())
	left := r.phaseSince().Add(timeout).Sub(r.now)
	if left > 0 {
		r.log.V(1).Info("Waiting", "phase", r.Phase(), "for", what, "deadlineIn", left)
		return step{requeueAfter: left, waiting: status}, nil
	}
	return step{advanced: true}, e.Fail(ctx, r, Violation{Reason: reason, Detail: fmt.Sprintf("%s within %s", what, timeout)})
}

// Fail records a failure and restarts the phase clock for the recovery, which runs next.
func (e *Engine) Fail(ctx context.Context, r *Restore, v Violation) error {
	if err := e.save(ctx, r, map[string]string{
		kdcv1alpha1.AnnotationRestoreFailure:    v.String(),
		kdcv1alpha1.AnnotationRestorePhaseSince: r.now.Format(time.RFC3339),
	}); err != nil {
		return err
	}
	r.Driver.Observe(Observation{Phase: r.Phase(), Duration: r.now.Sub(r.phaseSince())})
	r.log.Info("Restore failed; bringing the cluster back", "phase", r.Phase(), "reason", v.Reason, "detail", v.Detail)
	r.Driver.Event(r, corev1.EventTypeWarning, v.Reason, fmt.Sprintf("Restore from %q failed in %s: %s; bringing the cluster back", r.Key(), r.Phase(), v.Detail))
	return nil
}

// Clear removes restore-from and every bookkeeping key from the record.
func (e *Engine) Clear(ctx context.Context, r *Restore) error {
	kv := map[string]string{}
	for k := range r.Record {
		if k == kdcv1alpha1.AnnotationRestoreFrom || kdcv1alpha1.IsRestoreBookkeeping(k) {
			kv[k] = ""
		}
	}
	if len(kv) == 0 {
		return nil
	}
	return e.save(ctx, r, kv)
}

// objectMeta is a typed PartialObjectMetadata for metadata-only reads of kind.
func objectMeta(kind string) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind(kind))
	return m
}

// replicas is a replica count, defaulting a nil one to 1 like the API server.
func replicas(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

// Now is the time of the current Run.
func (r *Restore) Now() time.Time { return r.now }

// Replicas is a replica count, a nil one defaulting to 1 like the API server.
func Replicas(p *int32) int32 { return replicas(p) }
