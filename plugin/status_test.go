package plugin

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

var testNow = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func testCluster(name string, mutate func(*kdcv1alpha1.KdcCluster)) *kdcv1alpha1.KdcCluster {
	c := &kdcv1alpha1.KdcCluster{ObjectMeta: metav1.ObjectMeta{
		Namespace: "team-a", Name: name, CreationTimestamp: metav1.NewTime(testNow.Add(-30 * 24 * time.Hour)),
	}}
	if mutate != nil {
		mutate(c)
	}
	return c
}

func withBackupReady(status metav1.ConditionStatus, reason, msg string, last time.Time) func(*kdcv1alpha1.KdcCluster) {
	return func(c *kdcv1alpha1.KdcCluster) {
		c.Status.Conditions = append(c.Status.Conditions, metav1.Condition{
			Type: kdcv1alpha1.ConditionBackupReady, Status: status, Reason: reason, Message: msg,
		})
		if !last.IsZero() {
			c.Status.LatestBackupTime = &metav1.Time{Time: last}
			c.Status.LatestBackupKey = c.Name + "/" + c.Name + "-" + last.Format(kdcv1alpha1.SnapshotTimeLayout) + ".db"
		}
	}
}

func TestAssessCluster(t *testing.T) {
	recent := testNow.Add(-10 * time.Hour)
	old := testNow.Add(-3 * 24 * time.Hour)
	tests := []struct {
		name    string
		cluster *kdcv1alpha1.KdcCluster
		want    Health
		reason  string
		restore string
	}{
		{"no verdict", testCluster("a", nil), HealthUnknown, "", ""},
		{"recent success", testCluster("a", withBackupReady("True", kdcv1alpha1.ReasonBackupSucceeded, "", recent)), HealthOK, kdcv1alpha1.ReasonBackupSucceeded, ""},
		{"success older than two daily intervals, not reported", testCluster("a", withBackupReady("True", kdcv1alpha1.ReasonBackupSucceeded, "", old)), HealthStale, kdcv1alpha1.ReasonBackupSucceeded, ""},
		{"hourly schedule makes 10h stale", testCluster("a", func(c *kdcv1alpha1.KdcCluster) {
			c.Spec.Backup.Schedule = "0 * * * *"
			withBackupReady("True", kdcv1alpha1.ReasonBackupSucceeded, "", recent)(c)
		}), HealthStale, kdcv1alpha1.ReasonBackupSucceeded, ""},
		{"scheduled, never ran, cluster old", testCluster("a", withBackupReady("True", kdcv1alpha1.ReasonBackupScheduled, "", time.Time{})), HealthStale, kdcv1alpha1.ReasonBackupScheduled, ""},
		{"scheduled, new cluster", testCluster("a", func(c *kdcv1alpha1.KdcCluster) {
			c.CreationTimestamp = metav1.NewTime(testNow.Add(-time.Hour))
			withBackupReady("True", kdcv1alpha1.ReasonBackupScheduled, "", time.Time{})(c)
		}), HealthOK, kdcv1alpha1.ReasonBackupScheduled, ""},
		{"controller says stale", testCluster("a", withBackupReady("False", kdcv1alpha1.ReasonBackupStale, "stale", old)), HealthStale, kdcv1alpha1.ReasonBackupStale, ""},
		{"failed", testCluster("a", withBackupReady("False", kdcv1alpha1.ReasonBackupFailed, "exit 7", recent)), HealthFailing, kdcv1alpha1.ReasonBackupFailed, ""},
		{"no bucket", testCluster("a", withBackupReady("False", kdcv1alpha1.ReasonS3NotAvailable, "obc", time.Time{})), HealthFailing, kdcv1alpha1.ReasonS3NotAvailable, ""},
		{"disabled", testCluster("a", withBackupReady("False", kdcv1alpha1.ReasonDisabled, "off", time.Time{})), HealthDisabled, kdcv1alpha1.ReasonDisabled, ""},
		{"restore running", testCluster("a", func(c *kdcv1alpha1.KdcCluster) {
			c.Annotations = map[string]string{kdcv1alpha1.AnnotationRestoreState: string(kdcv1alpha1.PhaseStoppingEtcd)}
			withBackupReady("True", kdcv1alpha1.ReasonBackupSucceeded, "", recent)(c)
		}), HealthOK, kdcv1alpha1.ReasonBackupSucceeded, "StoppingEtcd"},
		{"last restore failed", testCluster("a", func(c *kdcv1alpha1.KdcCluster) {
			c.Status.Conditions = append(c.Status.Conditions, metav1.Condition{Type: kdcv1alpha1.ConditionRestoreReady, Status: "False", Reason: kdcv1alpha1.ReasonRestoreFailed})
			withBackupReady("True", kdcv1alpha1.ReasonBackupSucceeded, "", recent)(c)
		}), HealthOK, kdcv1alpha1.ReasonBackupSucceeded, "Failed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := assessCluster(tc.cluster, backupRun{}, testNow)
			type view struct {
				Health          Health
				Reason, Restore string
			}
			if diff := cmp.Diff(view{tc.want, tc.reason, tc.restore}, view{got.Health, got.BackupReason, got.Restore}); diff != "" {
				t.Errorf("assessCluster() mismatch (-want +got):\n%s\nmessage: %s", diff, got.Message)
			}
			if got.Health.needsAttention() && got.Message == "" {
				t.Errorf("assessCluster() = %s without a message saying what to check", got.Health)
			}
		})
	}
}

func TestPrintStatusTable(t *testing.T) {
	rows := []ClusterStatus{
		assessCluster(testCluster("zeta", withBackupReady("True", kdcv1alpha1.ReasonBackupSucceeded, "", testNow.Add(-5*time.Hour))), backupRun{"37 2 * * *", "37m0s", "Waiting", "prefix"}, testNow),
		assessCluster(testCluster("alpha", withBackupReady("False", kdcv1alpha1.ReasonBackupFailed, "Backup Job zeta-etcd-backup-1 failed (exit 8)", testNow.Add(-26*time.Hour))), backupRun{}, testNow),
	}
	sortStatuses(rows)
	var out bytes.Buffer
	if err := printStatusTable(&out, rows, false, testNow); err != nil {
		t.Fatal(err)
	}
	want := `NAME    HEALTH    BACKUP            LAST BACKUP   SCHEDULE     MODE     BACKUP JOB   RESTORE
alpha   Failing   BackupFailed      26h           0 2 * * *    <none>   <none>       <none>
zeta    OK        BackupSucceeded   5h            37 2 * * *   prefix   Waiting      <none>

1 of 2 clusters need attention:
  team-a/alpha: Failing (BackupFailed): Backup Job zeta-etcd-backup-1 failed (exit 8)
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("printStatusTable() mismatch (-want +got):\n%s", diff)
	}
}
