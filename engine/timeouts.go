package engine

import (
	"time"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// Default per-phase deadlines of a restore. A phase that has not finished its wait when its
// deadline (measured from the restore-phase-since annotation) passes fails the restore with the
// phase's failure reason. These are the only timed requeues of the restore controller.
const (
	// DefaultValidatingTimeout bounds the pre-flight verify Job (download and check the snapshot).
	DefaultValidatingTimeout = 15 * time.Minute
	// DefaultDrainTimeout bounds scaling C-cp to zero.
	DefaultDrainTimeout = 5 * time.Minute
	// DefaultEtcdStopTimeout bounds waiting for DS-etcd-0 to go away.
	DefaultEtcdStopTimeout = 5 * time.Minute
	// DefaultRestoreJobTimeout bounds the restore Job (download, etcdutl restore, swap).
	DefaultRestoreJobTimeout = 30 * time.Minute
	// DefaultEtcdStartTimeout bounds waiting for etcd to become ready on the restored data.
	DefaultEtcdStartTimeout = 5 * time.Minute
	// DefaultControlPlaneStartTimeout bounds the control plane's rollout after the restore.
	DefaultControlPlaneStartTimeout = 10 * time.Minute
	// DefaultRecoveryTimeout bounds bringing the cluster back after a failure (stop etcd,
	// rollback Job, start etcd and the control plane); when it passes the restore is reported
	// Failed with what is still not ready.
	DefaultRecoveryTimeout = 15 * time.Minute
)

// Timeouts are the per-phase deadlines of a restore. Zero means the default.
type Timeouts struct {
	Validating, Drain, EtcdStop, RestoreJob, EtcdStart, ControlPlaneStart, Recovery time.Duration
}

// DefaultTimeouts returns the default deadlines.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		Validating:        DefaultValidatingTimeout,
		Drain:             DefaultDrainTimeout,
		EtcdStop:          DefaultEtcdStopTimeout,
		RestoreJob:        DefaultRestoreJobTimeout,
		EtcdStart:         DefaultEtcdStartTimeout,
		ControlPlaneStart: DefaultControlPlaneStartTimeout,
		Recovery:          DefaultRecoveryTimeout,
	}
}

// WithDefaults fills zero fields with the defaults.
func (t Timeouts) WithDefaults() Timeouts {
	d := DefaultTimeouts()
	for _, f := range []struct{ v, def *time.Duration }{
		{&t.Validating, &d.Validating}, {&t.Drain, &d.Drain}, {&t.EtcdStop, &d.EtcdStop},
		{&t.RestoreJob, &d.RestoreJob}, {&t.EtcdStart, &d.EtcdStart},
		{&t.ControlPlaneStart, &d.ControlPlaneStart}, {&t.Recovery, &d.Recovery},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	return t
}

// ForPhase is the deadline of a running phase.
func (t Timeouts) ForPhase(p kdcv1alpha1.RestorePhase) time.Duration {
	switch p {
	case kdcv1alpha1.PhaseValidating:
		return t.Validating
	case kdcv1alpha1.PhaseDrainingControlPlane:
		return t.Drain
	case kdcv1alpha1.PhaseStoppingEtcd:
		return t.EtcdStop
	case kdcv1alpha1.PhaseRestoringSnapshot:
		return t.RestoreJob
	case kdcv1alpha1.PhaseStartingEtcd:
		return t.EtcdStart
	case kdcv1alpha1.PhaseStartingControlPlane:
		return t.ControlPlaneStart
	}
	return t.Recovery
}
