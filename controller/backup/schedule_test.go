package backup

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/robfig/cron/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

func TestSpreadSchedule(t *testing.T) {
	m := time.Minute
	tests := []struct {
		name, schedule string
		offset         time.Duration
		want           backupSpread
	}{
		{"daily, within the hour", "0 2 * * *", 37 * m, backupSpread{"37 2 * * *", 37 * m, ""}},
		{"daily, across hours", "50 2 * * *", 45 * m, backupSpread{"35 3 * * *", 45 * m, ""}},
		{"daily, past midnight stays daily", "30 23 * * *", 45 * m, backupSpread{"15 0 * * *", 45 * m, ""}},
		{"weekdays stay on their day", "30 23 * * 1-5", 45 * m, backupSpread{"45 23 * * 1-5", 15 * m, ""}},
		{"no offset", "0 2 * * *", 0, backupSpread{"0 2 * * *", 0, ""}},
		{"hourly", "5 * * * *", 70 * m, backupSpread{"15 * * * *", 10 * m, ""}},
		{"hourly, wrapping the hour", "50 * * * *", 20 * m, backupSpread{"10 * * * *", 20 * m, ""}},
		{"every 6 hours stays within the hour", "50 */6 * * *", 20 * m, backupSpread{"50 */6 * * *", 0, ""}},
		{"every 6 hours", "10 */6 * * *", 20 * m, backupSpread{"30 */6 * * *", 20 * m, ""}},
		{"every 15 minutes", "*/15 * * * *", 37 * m, backupSpread{"7-59/15 * * * *", 7 * m, ""}},
		{"every 15 minutes, offset a multiple", "*/15 * * * *", 30 * m, backupSpread{"*/15 * * * *", 0, ""}},
		{"a step not dividing the hour", "*/7 * * * *", 3 * m, backupSpread{"*/7 * * * *", 0, "its minute field */7 does not divide the hour"}},
		{"a list of minutes", "0,30 * * * *", 3 * m, backupSpread{"0,30 * * * *", 0, "its minute field 0,30 is not a single minute or a step"}},
		{"every minute", "* * * * *", 3 * m, backupSpread{"* * * * *", 0, "its minute field * is not a single minute or a step"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := spreadSchedule(tc.schedule, tc.offset)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("spreadSchedule(%q, %s) mismatch (-want +got):\n%s", tc.schedule, tc.offset, diff)
			}
			// The spread schedule fires as often as the original.
			orig, err1 := cron.ParseStandard(tc.schedule)
			spread, err2 := cron.ParseStandard(got.Schedule)
			if err1 != nil || err2 != nil {
				t.Fatalf("parse: %v, %v", err1, err2)
			}
			from := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
			if a, b := countRuns(orig, from), countRuns(spread, from); a != b {
				t.Errorf("%q runs %d times a week, %q %d times", tc.schedule, a, got.Schedule, b)
			}
		})
	}
}

func countRuns(s cron.Schedule, from time.Time) int {
	n := 0
	for t := s.Next(from.Add(-time.Second)); t.Before(from.Add(7 * 24 * time.Hour)); t = s.Next(t) {
		n++
	}
	return n
}

func TestBackupEffectiveSchedule(t *testing.T) {
	cluster := func(uid string, ann map[string]string) *kdcv1alpha1.KdcCluster {
		return &kdcv1alpha1.KdcCluster{ObjectMeta: metav1.ObjectMeta{UID: k8stypes.UID("uid-" + uid), Annotations: ann}}
	}
	a, b := cluster("a", nil), cluster("b", nil)
	if diff := cmp.Diff(backupEffectiveSchedule(a, time.Hour), backupEffectiveSchedule(a, time.Hour)); diff != "" {
		t.Errorf("not deterministic (-first +second):\n%s", diff)
	}
	tests := []struct {
		name   string
		c      *kdcv1alpha1.KdcCluster
		window time.Duration
		want   backupSpread
	}{
		{"off", a, 0, backupSpread{"0 2 * * *", 0, "spreading is off (--backup-spread-window)"}},
		{"opted out", cluster("a", map[string]string{kdcv1alpha1.AnnotationBackupExactSchedule: "true"}), time.Hour,
			backupSpread{"0 2 * * *", 0, "exact schedule asked for (kube-dc.com/backup-exact-schedule)"}},
		{"spread", a, time.Hour, spreadSchedule("0 2 * * *", backupOffset("uid-a", time.Hour))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, backupEffectiveSchedule(tc.c, tc.window)); diff != "" {
				t.Errorf("backupEffectiveSchedule mismatch (-want +got):\n%s", diff)
			}
		})
	}
	// Offsets of many clusters cover the window about evenly.
	perMinute := make([]int, 60)
	for i := range 6000 {
		perMinute[backupOffset(string(b.UID)+string(rune(i)), time.Hour)/time.Minute]++
	}
	for minute, n := range perMinute {
		if n < 50 || n > 150 {
			t.Errorf("minute %d of the window got %d of 6000 clusters, want about 100", minute, n)
		}
	}
}
