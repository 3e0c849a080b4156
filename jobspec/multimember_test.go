package jobspec

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestAgreeRevision checks the revision every member of a multi-member restore is swapped in
// at, and which members must be staged again to reach it.
func TestAgreeRevision(t *testing.T) {
	staged := func(restored int64) Result {
		return Result{Command: CommandRestore, SHA256: "ab", Revision: 7, RestoredRevision: restored, State: StateStaged}
	}
	other := staged(1000000007)
	other.SHA256 = "cd"
	unswapped := staged(1000000007)
	unswapped.State = StateSwapped
	failed := Result{Error: "corrupt", Reason: "Integrity", ExitCode: 9}
	type out struct {
		Revision int64
		Restage  []int
		Err      string
	}
	for _, tc := range []struct {
		name string
		in   []Result
		want out
	}{
		{"one member", []Result{staged(1000000007)}, out{Revision: 1000000007}},
		{"all equal", []Result{staged(1000000009), staged(1000000009), staged(1000000009)}, out{Revision: 1000000009}},
		{"quorum lost: two members without data", []Result{staged(1000000050), staged(1000000007), staged(1000000007)},
			out{Revision: 1000000050, Restage: []int{1, 2}}},
		{"one member behind", []Result{staged(1000000009), staged(1000000009), staged(1000000008)},
			out{Revision: 1000000009, Restage: []int{2}}},
		{"none", nil, out{Err: "no staged restore"}},
		{"a failed member", []Result{staged(1000000009), failed}, out{Err: "member 1's staged restore failed (Integrity): corrupt"}},
		{"a swapped member", []Result{staged(1000000007), unswapped}, out{Err: `member 1's restore is "swapped", not "staged"`}},
		{"another snapshot", []Result{staged(1000000007), other}, out{Err: "member 1 staged snapshot sha256 cd at revision 7, member 0 sha256 ab"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rev, restage, err := AgreeRevision(tc.in)
			got := out{Revision: rev, Restage: restage}
			if err != nil {
				got = out{Err: err.Error()}
				if strings.HasPrefix(got.Err, tc.want.Err) {
					got.Err = tc.want.Err
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("AgreeRevision mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
