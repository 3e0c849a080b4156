package jobspec

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestExitCodeReasons(t *testing.T) {
	got := map[int]string{}
	for c := ExitSucceeded; c <= ExitNotStaged+1; c++ {
		got[int(c)] = c.Reason()
	}
	want := map[int]string{0: "Succeeded", 1: "Failed", 2: "SnapshotTooSmall", 3: "Usage", 4: "ObjectMissing",
		5: "BucketMissing", 6: "AccessDenied", 7: "S3Unreachable", 8: "EtcdUnavailable", 9: "Integrity",
		10: "DiskFull", 11: "NoPreviousGeneration", 12: "LocalIO", 13: "NotStaged", 14: "ExitCode14"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reasons mismatch (-want +got):\n%s", diff)
	}
}

// TestNonRetriable checks the podFailurePolicy values of each Job: the backup fails at once only
// on a wrong configuration, the restore's Jobs on anything but a transient failure.
func TestNonRetriable(t *testing.T) {
	restoreSide := []int32{3, 4, 5, 6, 9, 10, 11, 12}
	for _, tc := range []struct {
		cmd  Command
		want []int32
	}{
		{CommandBackup, []int32{3, 5, 6}},
		{CommandVerify, restoreSide},
		{CommandRestore, restoreSide},
		{CommandRollback, restoreSide},
		{CommandSwap, append(restoreSide, 13)},
	} {
		t.Run(string(tc.cmd), func(t *testing.T) {
			if diff := cmp.Diff(tc.want, NonRetriable(tc.cmd)); diff != "" {
				t.Errorf("NonRetriable(%s) mismatch (-want +got):\n%s", tc.cmd, diff)
			}
		})
	}
}

func TestCodeOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want ExitCode
	}{
		{"nil", nil, ExitSucceeded},
		{"classified", Errorf(ExitObjectMissing, "gone"), ExitObjectMissing},
		{"classified, wrapped", fmt.Errorf("restore: %w", Errorf(ExitIntegrity, "bad")), ExitIntegrity},
		{"ENOSPC", &os.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC}, ExitDiskFull},
		{"EDQUOT", syscall.EDQUOT, ExitDiskFull},
		{"other", errors.New("boom"), ExitFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, CodeOf(tc.err)); diff != "" {
				t.Errorf("CodeOf mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
