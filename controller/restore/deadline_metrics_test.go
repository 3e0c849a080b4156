package restore

import (
	"strconv"
	"strings"
	"testing"
	"time"

	et "kube-dc.com/etcd-backup/engine/enginetest"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/engine"
)

func TestRestoreDeadlineMetric(t *testing.T) {
	at := func(d time.Duration) string { return et.Start.Add(d).Format(time.RFC3339) }
	cluster := func(name string, ann map[string]string) client.Object {
		return &kdcv1alpha1.KdcCluster{ObjectMeta: metav1.ObjectMeta{Namespace: et.NS, Name: name, Annotations: ann}}
	}
	timeouts := engine.Timeouts{RestoreJob: 30 * time.Minute, Recovery: 15 * time.Minute}
	objs := []client.Object{
		cluster("idle", nil),
		cluster("restoring", map[string]string{
			kdcv1alpha1.AnnotationRestoreState:      string(kdcv1alpha1.PhaseRestoringSnapshot),
			kdcv1alpha1.AnnotationRestorePhaseSince: at(0),
		}),
		cluster("recovering", map[string]string{
			kdcv1alpha1.AnnotationRestoreState:      string(kdcv1alpha1.PhaseStartingEtcd),
			kdcv1alpha1.AnnotationRestorePhaseSince: at(time.Hour),
			kdcv1alpha1.AnnotationRestoreFailure:    "EtcdStartFailed: not ready",
		}),
		// Admitted while the controller was away: counted from the request.
		cluster("requested", map[string]string{
			kdcv1alpha1.AnnotationRestoreState:       string(kdcv1alpha1.PhaseValidating),
			kdcv1alpha1.AnnotationRestoreRequestedAt: at(0),
		}),
		cluster("finished", map[string]string{
			kdcv1alpha1.AnnotationRestoreState: string(kdcv1alpha1.PhaseSucceeded),
		}),
	}
	c := &restoreDeadlineCollector{}
	c.use(fake.NewClientBuilder().WithScheme(et.Scheme(t)).WithObjects(objs...).Build(), timeouts, nil)

	want := `
# HELP kdc_etcd_backup_restore_phase_deadline_timestamp_seconds Unix time the deadline of a running restore's current phase passes (phase Recovery: bringing the cluster back after a failure).
# TYPE kdc_etcd_backup_restore_phase_deadline_timestamp_seconds gauge
kdc_etcd_backup_restore_phase_deadline_timestamp_seconds{cluster="recovering",namespace="tenant",phase="Recovery"} ` + unix(et.Start.Add(time.Hour+15*time.Minute)) + `
kdc_etcd_backup_restore_phase_deadline_timestamp_seconds{cluster="requested",namespace="tenant",phase="Validating"} ` + unix(et.Start.Add(engine.DefaultValidatingTimeout)) + `
kdc_etcd_backup_restore_phase_deadline_timestamp_seconds{cluster="restoring",namespace="tenant",phase="RestoringSnapshot"} ` + unix(et.Start.Add(30*time.Minute)) + `
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}

	// A replica that does not lead reports nothing: its cache does not watch KdcClusters.
	c.use(fake.NewClientBuilder().WithScheme(et.Scheme(t)).WithObjects(objs...).Build(), timeouts, make(chan struct{}))
	if n := testutil.CollectAndCount(c); n != 0 {
		t.Errorf("a replica that does not lead reported %d series, want none", n)
	}
}

func unix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
