package schedule

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestStaleDeadline(t *testing.T) {
	cases := map[string]struct {
		schedule     string
		ref          string
		wantDeadline string
		wantInterval time.Duration
	}{
		"daily: twice the interval, plus the grace past the second run": {
			schedule: "0 2 * * *", ref: "2025-01-06T02:00:40Z",
			wantDeadline: "2025-01-08T02:30:00Z", wantInterval: 24 * time.Hour,
		},
		"hourly: grace is a tenth of the interval": {
			schedule: "0 * * * *", ref: "2025-01-06T10:00:05Z",
			wantDeadline: "2025-01-06T12:06:00Z", wantInterval: time.Hour,
		},
		"weekdays: not stale over the weekend": {
			schedule: "0 2 * * 1-5", ref: "2025-01-10T02:00:30Z", // a Friday
			wantDeadline: "2025-01-14T02:30:00Z", wantInterval: 24 * time.Hour,
		},
		"every 15 minutes, reference between runs": {
			schedule: "*/15 * * * *", ref: "2025-01-06T10:07:00Z",
			wantDeadline: "2025-01-06T10:37:00Z", wantInterval: 15 * time.Minute,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d, iv, err := StaleDeadline(tc.schedule, mustTime(tc.ref))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(mustTime(tc.wantDeadline), d); diff != "" {
				t.Errorf("deadline mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantInterval, iv); diff != "" {
				t.Errorf("interval mismatch (-want +got):\n%s", diff)
			}
		})
	}
	if _, _, err := StaleDeadline("not a cron", time.Now()); err == nil {
		t.Error("StaleDeadline(invalid) returned no error")
	}
}

// backupTestJob is a finished Job fixture.
func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}
