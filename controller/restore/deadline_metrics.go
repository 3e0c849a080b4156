package restore

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/engine"
)

// restoreDeadlineDesc is the deadline of each running restore's current phase. The controller
// fails a phase at its deadline, so a series whose value is in the past means a restore that no
// one is driving (docs/alerts.md, KdcEtcdRestorePastDeadline).
var restoreDeadlineDesc = prometheus.NewDesc(
	"kdc_etcd_backup_restore_phase_deadline_timestamp_seconds",
	"Unix time the deadline of a running restore's current phase passes (phase Recovery: bringing the cluster back after a failure).",
	[]string{"namespace", "cluster", "phase"}, nil)

// restoreDeadlineScrapeTimeout bounds the cache read of one scrape.
const restoreDeadlineScrapeTimeout = 5 * time.Second

// deadlines is computed at scrape time from the KdcClusters' restore annotations, so it
// needs no bookkeeping in the state machine and is right after a manager restart.
var deadlines = &restoreDeadlineCollector{}

type restoreDeadlineCollector struct {
	mu       sync.Mutex
	reader   client.Reader
	timeouts engine.Timeouts
	// elected is closed once this replica leads; only the leader's cache watches KdcClusters.
	elected <-chan struct{}
}

// use points the collector at the manager the restore controller runs in.
func (c *restoreDeadlineCollector) use(reader client.Reader, timeouts engine.Timeouts, elected <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reader, c.timeouts, c.elected = reader, timeouts.WithDefaults(), elected
}

func (c *restoreDeadlineCollector) Describe(ch chan<- *prometheus.Desc) { ch <- restoreDeadlineDesc }

func (c *restoreDeadlineCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	reader, timeouts, elected := c.reader, c.timeouts, c.elected
	c.mu.Unlock()
	if reader == nil {
		return
	}
	if elected != nil {
		select {
		case <-elected:
		default:
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), restoreDeadlineScrapeTimeout)
	defer cancel()
	var list kdcv1alpha1.KdcClusterList
	if err := reader.List(ctx, &list); err != nil {
		ch <- prometheus.NewInvalidMetric(restoreDeadlineDesc, err)
		return
	}
	for i := range list.Items {
		cl := &list.Items[i]
		phase, deadline, ok := restorePhaseDeadline(cl.Annotations, timeouts)
		if !ok {
			continue
		}
		ch <- prometheus.MustNewConstMetric(restoreDeadlineDesc, prometheus.GaugeValue,
			float64(deadline.Unix()), cl.Namespace, cl.Name, string(phase))
	}
}

// restorePhaseDeadline is the phase a running restore is in (Recovery after a failure) and when
// its deadline passes: the phase's start plus its timeout, as the controller measures it. A
// request the controller has not picked up yet counts from the request.
func restorePhaseDeadline(ann map[string]string, t engine.Timeouts) (kdcv1alpha1.RestorePhase, time.Time, bool) {
	if !kdcv1alpha1.RestoreRunning(ann) {
		return "", time.Time{}, false
	}
	since, err := time.Parse(time.RFC3339, ann[kdcv1alpha1.AnnotationRestorePhaseSince])
	if err != nil {
		if since, err = time.Parse(time.RFC3339, ann[kdcv1alpha1.AnnotationRestoreRequestedAt]); err != nil {
			return "", time.Time{}, false
		}
	}
	if ann[kdcv1alpha1.AnnotationRestoreFailure] != "" {
		return engine.PhaseRecovery, since.Add(t.Recovery), true
	}
	phase := kdcv1alpha1.RestorePhaseOf(ann)
	return phase, since.Add(t.ForPhase(phase)), true
}
