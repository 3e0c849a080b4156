package backup

import (
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// DefaultSpreadWindow is the window within which clusters sharing a schedule are spread
// (the manager's --backup-spread-window; docs/backup.md, "Fleet scale").
const DefaultSpreadWindow = time.Hour

// DefaultMaxConcurrentBackups is how many backup Jobs run at once by default (the manager's
// --max-concurrent-backups).
const DefaultMaxConcurrentBackups = 50

// backupSpread is a cluster's effective schedule: spec.backup.schedule moved later by Offset.
type backupSpread struct {
	// Schedule is what the CronJob runs on.
	Schedule string
	// Offset is how far Schedule is moved from the spec's schedule (0: not moved).
	Offset time.Duration
	// Why says why the schedule was not moved, "" when it was (or the offset is 0).
	Why string
}

// backupEffectiveSchedule is the schedule c's CronJob runs on: the spec's schedule offset by a
// deterministic amount below window taken from c's UID, unless c opts out or window is 0.
func backupEffectiveSchedule(c *kdcv1alpha1.KdcCluster, window time.Duration) backupSpread {
	schedule := c.BackupSchedule()
	switch {
	case window < time.Minute:
		return backupSpread{Schedule: schedule, Why: "spreading is off (--backup-spread-window)"}
	case c.Annotations[kdcv1alpha1.AnnotationBackupExactSchedule] == "true":
		return backupSpread{Schedule: schedule, Why: "exact schedule asked for (" + kdcv1alpha1.AnnotationBackupExactSchedule + ")"}
	}
	return spreadSchedule(schedule, backupOffset(string(c.UID), window))
}

// backupOffset is a whole number of minutes below window, the same for a UID every time.
func backupOffset(uid string, window time.Duration) time.Duration {
	h := fnv.New64a()
	_, _ = h.Write([]byte(uid))
	return time.Duration(h.Sum64()%uint64(window/time.Minute)) * time.Minute
}

// spreadSchedule moves the 5-field schedule later by at most offset, so that it still fires as
// often as before, never on another day than before, and never later than offset:
//   - "M H * * *" moves by the offset across hours (and wraps past midnight: daily runs stay daily);
//   - "M H ..." with restricted days stays within that day;
//   - "M <hours> ..." moves within the hour;
//   - "*/S ..." with S dividing 60 becomes "O-59/S" with O = offset mod S.
//
// Anything else is kept as it is, with the reason.
func spreadSchedule(schedule string, offset time.Duration) backupSpread {
	keep := func(why string) backupSpread { return backupSpread{Schedule: schedule, Why: why} }
	f := strings.Fields(schedule)
	if len(f) != 5 {
		return keep("not a 5-field schedule")
	}
	off := int(offset / time.Minute)
	if off <= 0 {
		return backupSpread{Schedule: schedule}
	}
	minute, mErr := strconv.Atoi(f[0])
	hour, hErr := strconv.Atoi(f[1])
	everyDay := f[2] == "*" && f[3] == "*" && f[4] == "*"
	switch {
	case mErr == nil && hErr == nil && minute < 60 && hour < 24:
		at := hour*60 + minute
		if !everyDay {
			off %= 24*60 - at // stay on the same day
		}
		at = (at + off) % (24 * 60)
		f[0], f[1] = strconv.Itoa(at%60), strconv.Itoa(at/60)
	case mErr == nil && minute < 60:
		if f[1] == "*" {
			off %= 60
			f[0] = strconv.Itoa((minute + off) % 60)
		} else {
			off %= 60 - minute // stay within the hour
			f[0] = strconv.Itoa(minute + off)
		}
	case strings.HasPrefix(f[0], "*/"):
		step, err := strconv.Atoi(f[0][2:])
		if err != nil || step < 2 || 60%step != 0 {
			return keep("its minute field " + f[0] + " does not divide the hour")
		}
		off %= step
		if off == 0 {
			return backupSpread{Schedule: schedule}
		}
		f[0] = strconv.Itoa(off) + "-59/" + strconv.Itoa(step)
	default:
		return keep("its minute field " + f[0] + " is not a single minute or a step")
	}
	return backupSpread{Schedule: strings.Join(f, " "), Offset: time.Duration(off) * time.Minute}
}
