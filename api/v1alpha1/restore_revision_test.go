package v1alpha1

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRestoreRevision(t *testing.T) {
	r := RestoreRevision{Revision: 239, RevisionBefore: 2000000241, BumpRevision: 3000000002, RestoredRevision: 3000000241}
	tests := []struct {
		name, in string
		want     RestoreRevision
		err      string // substring of the error; "" for none
	}{
		{"round trip", r.String(), r, ""},
		{"any order", "snapshot=239 after=3000000241 bump=3000000002 before=2000000241", r, ""},
		{"missing field", "before=1 bump=2 after=3", RestoreRevision{}, "want before=B bump=X after=A snapshot=S"},
		{"unknown field", "before=1 bump=2 after=3 snapshot=4 extra=5", RestoreRevision{}, `unexpected "extra=5"`},
		{"not a number", "before=x bump=2 after=3 snapshot=4", RestoreRevision{}, "before: strconv.ParseInt"},
		{"empty", "", RestoreRevision{}, "want before=B"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRestoreRevision(tc.in)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("ParseRestoreRevision(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseRestoreRevision(%q) mismatch (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}
