package schedule

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
)

// BackupJobDeadline ends a backup Job (all retries included) that hangs: its
// activeDeadlineSeconds.
const BackupJobDeadline = 30 * time.Minute

// StaleDeadline is when a backup whose last success (or, without one, whose scheduling start) was
// at ref becomes stale: twice the schedule interval after ref, and never before the second run
// scheduled after ref plus a grace for it to finish (a tenth of the interval, at most the Job's
// deadline), so irregular schedules such as weekdays only are not stale over a weekend. The
// interval is the gap between the two runs scheduled after ref, in UTC.
func StaleDeadline(schedule string, ref time.Time) (deadline time.Time, interval time.Duration, err error) {
	sched, err := cron.ParseStandard(schedule)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("failed to parse schedule %q: %w", schedule, err)
	}
	ref = ref.UTC()
	n1 := sched.Next(ref)
	n2 := sched.Next(n1)
	if n1.IsZero() || n2.IsZero() {
		return time.Time{}, 0, fmt.Errorf("schedule %q never runs twice", schedule)
	}
	interval = n2.Sub(n1)
	grace := min(interval/10, BackupJobDeadline)
	deadline = ref.Add(2 * interval)
	if late := n2.Add(grace); late.After(deadline) {
		deadline = late
	}
	return deadline, interval, nil
}
