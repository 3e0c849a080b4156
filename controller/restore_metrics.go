package controller

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// Restore metrics, on the manager's metrics endpoint.
var (
	// restorePhaseDuration is how long each phase took (observed when it ends, from the
	// restore-phase-since annotation, so a restart does not reset it). The phase label "Recovery"
	// is the time spent bringing the cluster back after a failure.
	restorePhaseDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "kdc_etcd_backup_restore_phase_duration_seconds",
		Help:    "Duration of each restore phase.",
		Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600},
	}, []string{"phase"})
	// restoresTotal counts finished restores by outcome (Succeeded, Failed) and failure reason.
	restoresTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kdc_etcd_backup_restores_total",
		Help: "Finished restores by outcome and failure reason.",
	}, []string{"outcome", "reason"})
	// restoresStarted counts restores the controller started.
	restoresStarted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kdc_etcd_backup_restores_started_total",
		Help: "Restores started by the controller.",
	})
)

// restoreRecoveryPhase is the phase label of the recovery after a failure.
const restoreRecoveryPhase kdcv1alpha1.RestorePhase = "Recovery"

// registerRestoreMetrics adds the restore metrics to controller-runtime's registry, once per
// process; SetupRestoreReconciler calls it (see registerBackupMetrics).
var registerRestoreMetrics = sync.OnceFunc(func() {
	metrics.Registry.MustRegister(restorePhaseDuration, restoresTotal, restoresStarted, restoreDeadlines)
})

// restoreObservePhase records the duration of a phase that ended.
func restoreObservePhase(p kdcv1alpha1.RestorePhase, d time.Duration) {
	if p == "" || d < 0 {
		return
	}
	restorePhaseDuration.WithLabelValues(string(p)).Observe(d.Seconds())
}

// restoreStarted counts a started restore.
func restoreStarted() { restoresStarted.Inc() }

// restoreFinished counts a finished restore.
func restoreFinished(outcome, reason string) { restoresTotal.WithLabelValues(outcome, reason).Inc() }
