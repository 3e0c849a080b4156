package datadir

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"kube-dc.com/etcd-backup/jobspec"
)

func TestRevisionBump(t *testing.T) {
	const margin = jobspec.DefaultBumpRevision
	tests := []struct {
		name             string
		snapshot, before int64
		margin           uint64
		want             uint64
	}{
		{"nothing known beyond the snapshot", 239, 0, margin, margin},
		{"data below the snapshot", 239, 100, margin, margin},
		{"data at the snapshot", 239, 239, margin, margin},
		{"data above the snapshot", 239, 2000000241, margin, margin + 2000000241 - 239},
		{"no bump asked for", 239, 2000000241, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := revisionBump(tc.snapshot, tc.before, tc.margin)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("revisionBump(%d, %d, %d) mismatch (-want +got):\n%s", tc.snapshot, tc.before, tc.margin, diff)
			}
			if tc.margin > 0 && tc.snapshot+int64(got) <= max(tc.snapshot, tc.before) {
				t.Errorf("restored revision %d is not above %d", tc.snapshot+int64(got), max(tc.snapshot, tc.before))
			}
		})
	}
}

func TestPinnedBump(t *testing.T) {
	type out struct {
		Bump uint64
		Err  bool
	}
	tests := []struct {
		name     string
		snapshot int64
		ruleBump uint64
		pinned   int64
		want     out
	}{
		{"not pinned", 239, 1000000000, 0, out{Bump: 1000000000}},
		{"pinned at the rule's revision", 239, 1000000000, 1000000239, out{Bump: 1000000000}},
		{"pinned above: another member's data was newer", 239, 1000000000, 1000000500, out{Bump: 1000000261}},
		{"pinned below the rule", 239, 1000000261, 1000000239, out{Err: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bump, err := pinnedBump(tc.snapshot, tc.ruleBump, tc.pinned)
			if diff := cmp.Diff(tc.want, out{Bump: bump, Err: err != nil}); diff != "" {
				t.Errorf("pinnedBump(%d, %d, %d) mismatch (-want +got):\n%s (err %v)", tc.snapshot, tc.ruleBump, tc.pinned, diff, err)
			}
		})
	}
}
