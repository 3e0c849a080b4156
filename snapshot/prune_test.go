package snapshot

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestExpiredSnapshots(t *testing.T) {
	now := time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC)
	keys := []string{
		"prod/prod-20261124T020000Z.db", // just uploaded
		"prod/prod-20261120T020000Z.db", // 4 days
		"prod/prod-20261116T020000Z.db", // 8 days
		"prod/prod-20261001T020000Z.db", // old
		"prod/notes.txt",                // not a snapshot
		"prod/prod-20261001T020000Z.db.bak",
		"prod/other-20261001T020000Z.db", // another cluster's name inside prod/
	}
	tests := []struct {
		name   string
		keys   []string
		prefix string
		days   int32
		keep   string
		want   []string
	}{
		{"older than 7 days", keys, "", 7, "prod/prod-20261124T020000Z.db",
			[]string{"prod/prod-20261001T020000Z.db", "prod/prod-20261116T020000Z.db"}},
		{"1 day keeps only today's", keys, "", 1, "prod/prod-20261124T020000Z.db",
			[]string{"prod/prod-20261001T020000Z.db", "prod/prod-20261116T020000Z.db", "prod/prod-20261120T020000Z.db"}},
		{"the newest survives even when everything is old", []string{"prod/prod-20261001T020000Z.db", "prod/prod-20260901T020000Z.db"}, "", 7, "",
			[]string{"prod/prod-20260901T020000Z.db"}},
		{"keep survives even when it is not the newest (a skewed clock)", []string{"prod/prod-20261124T020000Z.db", "prod/prod-20260901T020000Z.db", "prod/prod-20260801T020000Z.db"}, "", 7, "prod/prod-20260901T020000Z.db",
			[]string{"prod/prod-20260801T020000Z.db"}},
		{"under a destinationPath prefix", []string{"tenants/prod/prod-20261124T020000Z.db", "tenants/prod/prod-20261001T020000Z.db", "prod/prod-20261001T020000Z.db"}, "tenants/", 7, "",
			[]string{"tenants/prod/prod-20261001T020000Z.db"}},
		{"nothing", nil, "", 7, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := expiredSnapshots(tc.keys, tc.prefix, "prod", tc.days, now, tc.keep)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("expiredSnapshots() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
