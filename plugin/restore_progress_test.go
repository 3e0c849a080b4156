package plugin

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

func TestRestoreProgress(t *testing.T) {
	const key = "a/a-20261124T020000Z.db"
	state := func(phase kdcv1alpha1.RestorePhase, extra ...string) *kdcv1alpha1.KdcCluster {
		c := testCluster("a", nil)
		c.Annotations = map[string]string{kdcv1alpha1.AnnotationRestoreFrom: key}
		if phase != "" {
			c.Annotations[kdcv1alpha1.AnnotationRestoreState] = string(phase)
		}
		for i := 0; i+1 < len(extra); i += 2 {
			c.Annotations[extra[i]] = extra[i+1]
		}
		return c
	}
	ended := func(status metav1.ConditionStatus, reason, msg string) *kdcv1alpha1.KdcCluster {
		c := testCluster("a", nil)
		c.Status.Conditions = []metav1.Condition{{Type: kdcv1alpha1.ConditionRestoreReady, Status: status, Reason: reason, Message: msg}}
		return c
	}
	type step struct {
		at    time.Duration
		state *kdcv1alpha1.KdcCluster
	}
	tests := []struct {
		name    string
		steps   []step
		want    []string
		wantErr string
	}{{
		name: "three members: each member's Jobs, the agreed revision",
		steps: []step{
			{0, state(kdcv1alpha1.PhaseStoppingEtcd)},
			{time.Second, state(kdcv1alpha1.PhaseRestoringSnapshot, kdcv1alpha1.AnnotationRestorePlan,
				`{"key":"`+key+`","members":[{"name":"ds-etcd-0"},{"name":"ds-etcd-1"},{"name":"ds-etcd-2"}]}`)},
			{2 * time.Second, state(kdcv1alpha1.PhaseRestoringSnapshot, kdcv1alpha1.AnnotationRestoreMembersRevision, "3000000241")},
		},
		want: []string{
			"[     0s] StoppingEtcd",
			"[     1s] RestoringSnapshot          (StoppingEtcd took 1s)",
			"[     1s] Restoring 3 members: ds-etcd-0 (Jobs *-etcd-restore-0, *-etcd-swap-0), ds-etcd-1 (Jobs *-etcd-restore-1, *-etcd-swap-1), ds-etcd-2 (Jobs *-etcd-restore-2, *-etcd-swap-2); each staged, then swapped in at one revision",
			"[     2s] Every member's staged restore agreed on revision 3000000241; swapping them in",
		},
	}, {
		name: "success, with repeated states",
		steps: []step{
			{0, state(kdcv1alpha1.PhaseValidating)},
			{800 * time.Millisecond, state(kdcv1alpha1.PhaseDrainingControlPlane)},
			{900 * time.Millisecond, state(kdcv1alpha1.PhaseDrainingControlPlane)},
			{2 * time.Second, state(kdcv1alpha1.PhaseStoppingEtcd)},
			{3 * time.Second, state(kdcv1alpha1.PhaseRestoringSnapshot)},
			{5 * time.Second, state(kdcv1alpha1.PhaseStartingEtcd, kdcv1alpha1.AnnotationRestoreRevision, "before=2000000241 bump=3000000002 after=3000000241 snapshot=239")},
			{6 * time.Second, state(kdcv1alpha1.PhaseStartingControlPlane, kdcv1alpha1.AnnotationRestoreRevision, "before=2000000241 bump=3000000002 after=3000000241 snapshot=239")},
			{75 * time.Second, ended("True", kdcv1alpha1.ReasonRestoreSucceeded, `Restore from "`+key+`" complete`)},
		},
		want: []string{
			"[     0s] Validating",
			"[  800ms] DrainingControlPlane       (Validating took 800ms)",
			"[     2s] StoppingEtcd               (DrainingControlPlane took 1.2s)",
			"[     3s] RestoringSnapshot          (StoppingEtcd took 1s)",
			"[     5s] StartingEtcd               (RestoringSnapshot took 2s)",
			"[     5s] Restored etcd revision 2000000241 before the restore, 3000000241 after it (the snapshot's 239 + 3000000002)",
			"[     6s] StartingControlPlane       (StartingEtcd took 1s)",
			"[  1m15s] Succeeded                  (StartingControlPlane took 1m9s)",
			`Restore from "` + key + `" complete`,
		},
	}, {
		name: "failure with recovery",
		steps: []step{
			{0, state(kdcv1alpha1.PhaseStartingEtcd)},
			{time.Second, state(kdcv1alpha1.PhaseStartingEtcd, kdcv1alpha1.AnnotationRestoreFailure, "EtcdStartFailed: pod not ready")},
			{3 * time.Second, ended("False", kdcv1alpha1.ReasonRestoreFailed, `Restore from "`+key+`" failed (EtcdStartFailed): pod not ready`)},
		},
		want: []string{
			"[     0s] StartingEtcd",
			"[     1s] StartingEtcd failed: EtcdStartFailed: pod not ready; the controller brings the cluster back",
			"[     3s] Failed                     (StartingEtcd took 3s)",
		},
		wantErr: `Restore from "` + key + `" failed (EtcdStartFailed): pod not ready`,
	}, {
		name: "requested while the webhook was absent: no phase until the controller stamps it",
		steps: []step{
			{0, state("")},
			{time.Second, state(kdcv1alpha1.PhaseValidating)},
		},
		want: []string{"[     1s] Validating"},
	}, {
		name:    "deleted",
		steps:   []step{{0, state(kdcv1alpha1.PhaseValidating)}, {time.Second, nil}},
		want:    []string{"[     0s] Validating"},
		wantErr: "the KdcCluster was deleted while restoring from \"" + key + "\"",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := testNow
			p := &restoreProgress{key: key, start: start}
			var got []string
			var err error
			for _, s := range tc.steps {
				var lines []string
				var done bool
				lines, done, err = p.observe(s.state, start.Add(s.at))
				got = append(got, lines...)
				if done {
					break
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("progress lines mismatch (-want +got):\n%s", diff)
			}
			if gotErr := errString(err); gotErr != tc.wantErr {
				t.Errorf("error = %q, want %q", gotErr, tc.wantErr)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestNewestRestorable(t *testing.T) {
	snap := func(key, checksum string) Snapshot { return Snapshot{Key: key, Checksum: checksum} }
	tests := []struct {
		name        string
		snaps       []Snapshot
		want        string
		wantSkipped []string
	}{
		{"newest is good", []Snapshot{snap("a", "sha256"), snap("b", "sha256")}, "a", nil},
		{"skips invalid and foreign objects", []Snapshot{snap("a", checksumInvalid), snap("b", checksumMissing), snap("c", "no-tag")}, "c", []string{"a", "b"}},
		{"none", []Snapshot{snap("a", checksumInvalid)}, "", []string{"a"}},
		{"empty", nil, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, skipped := newestRestorable(tc.snaps)
			gotKey := ""
			if got != nil {
				gotKey = got.Key
			}
			var gotSkipped []string
			for _, s := range skipped {
				gotSkipped = append(gotSkipped, s.Key)
			}
			if diff := cmp.Diff(tc.want, gotKey); diff != "" {
				t.Errorf("newestRestorable() key (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantSkipped, gotSkipped); diff != "" {
				t.Errorf("newestRestorable() skipped (-want +got):\n%s", diff)
			}
		})
	}
}
