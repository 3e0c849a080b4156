package restore

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	et "kube-dc.com/etcd-backup/engine/enginetest"
)

func TestRestoringNamespaces(t *testing.T) {
	cluster := func(ann map[string]string, dsNamespace string) *kdcv1alpha1.KdcCluster {
		c := et.Cluster("team-a", "prod", "ds", nil)
		c.Annotations = ann
		c.Spec.DataStore.Namespace = dsNamespace
		return c
	}
	cases := []struct {
		name string
		c    *kdcv1alpha1.KdcCluster
		want []string
	}{
		{"no restore", cluster(nil, ""), nil},
		{"requested", cluster(map[string]string{kdcv1alpha1.AnnotationRestoreFrom: "prod/prod-20260101T020000Z.db"}, ""), []string{"team-a"}},
		{"running, datastore elsewhere", cluster(map[string]string{kdcv1alpha1.AnnotationRestoreState: string(kdcv1alpha1.PhaseStoppingEtcd)}, "datastores"), []string{"team-a", "datastores"}},
		{"ended", cluster(map[string]string{kdcv1alpha1.AnnotationRestoreState: string(kdcv1alpha1.PhaseSucceeded)}, ""), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, restoringNamespaces(tc.c)); diff != "" {
				t.Errorf("restoringNamespaces() (-want +got):\n%s", diff)
			}
		})
	}
}
