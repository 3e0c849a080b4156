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
