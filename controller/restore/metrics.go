package restore

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Restore metrics, on the manager's metrics endpoint.
var (
	// phaseDuration is how long each phase took (observed when it ends, from the
	// restore-phase-since annotation, so a restart does not reset it). The phase label "Recovery"
	// is the time spent bringing the cluster back after a failure.
	phaseDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
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

// registerMetrics adds the restore metrics to controller-runtime's registry, once per
// process; SetupRestoreReconciler calls it (see registerBackupMetrics).
var registerMetrics = sync.OnceFunc(func() {
	metrics.Registry.MustRegister(phaseDuration, restoresTotal, restoresStarted, deadlines)
})
