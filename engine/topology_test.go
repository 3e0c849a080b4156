package engine

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	kamajiv1alpha1 "kube-dc.com/etcd-backup/api/kamaji/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	et "kube-dc.com/etcd-backup/engine/enginetest"
	"kube-dc.com/etcd-backup/jobspec"
)

func TestModeOf(t *testing.T) {
	a := et.Cluster("team-a", "a", "ds", nil)
	b := et.Cluster("team-a", "b", "ds", nil)
	other := et.Cluster("team-a", "c", "ds2", nil)
	dedicated := a.DeepCopy()
	dedicated.Spec.DataStore.Dedicated = true
	ds := func(refs int32) *kdcv1alpha1.KdcClusterDatastore {
		d := &kdcv1alpha1.KdcClusterDatastore{}
		d.Namespace, d.Name, d.Status.ReferenceCount = "team-a", "ds", refs
		return d
	}
	cases := []struct {
		name  string
		c     *kdcv1alpha1.KdcCluster
		ds    *kdcv1alpha1.KdcClusterDatastore
		users []kdcv1alpha1.KdcCluster
		want  Mode
	}{
		{"only user", a, ds(1), []kdcv1alpha1.KdcCluster{*a, *other}, ModeWholeEtcd},
		{"only user, no count", a, ds(0), []kdcv1alpha1.KdcCluster{*a}, ModeWholeEtcd},
		{"another KdcCluster on it", a, ds(1), []kdcv1alpha1.KdcCluster{*a, *b}, ModePrefix},
		{"referenceCount counts others (clusters this product does not see)", a, ds(3), []kdcv1alpha1.KdcCluster{*a}, ModePrefix},
		{"dedicated wins", dedicated, ds(3), []kdcv1alpha1.KdcCluster{*dedicated, *b}, ModeWholeEtcd},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, why := ModeOf(tc.c, tc.ds, tc.users)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("mode (-want +got):\n%s (%s)", diff, why)
			}
		})
	}
}

func TestEtcdPrefixOf(t *testing.T) {
	deploy := func(args ...string) *appsv1.Deployment {
		d := et.ControlPlane("ns", "c", 1)
		d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "kube-apiserver", Command: []string{"kube-apiserver"}, Args: args}}
		return d
	}
	tcp := func(schema string) *kamajiv1alpha1.TenantControlPlane {
		t := &kamajiv1alpha1.TenantControlPlane{}
		t.Namespace, t.Name = "ns", "c-cp"
		t.Status.Storage.Setup.Schema = schema
		return t
	}
	cases := []struct {
		name    string
		d       *appsv1.Deployment
		tcp     *kamajiv1alpha1.TenantControlPlane
		want    string
		wantErr bool
	}{
		{"TCP schema", deploy("--etcd-prefix=/ignored"), tcp("acme_production_dev_cp"), "/acme_production_dev_cp", false},
		{"TCP without schema yet", deploy(), tcp(""), "", true},
		{"flag", deploy("--etcd-servers=https://x:2379", "--etcd-prefix=/acme_a"), nil, "/acme_a", false},
		{"flag, space form, trailing slash", deploy("--etcd-prefix", "/acme_ab/"), nil, "/acme_ab", false},
		{"no flag: the kube-apiserver's default", deploy("--etcd-servers=https://x:2379"), nil, "/registry", false},
		{"relative", deploy("--etcd-prefix=acme"), nil, "", true},
		{"root", deploy("--etcd-prefix=/"), nil, "", true},
		{"unresolved variable", deploy("--etcd-prefix=$(PREFIX)"), nil, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := EtcdPrefixOf(tc.d, tc.tcp)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %t", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("prefix (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTenantEtcdCerts(t *testing.T) {
	c := et.Cluster("team-a", "a", "ds", nil)
	tcp := &kamajiv1alpha1.TenantControlPlane{}
	tcp.Namespace, tcp.Name = "team-a", "a-cp"
	withCert := tcp.DeepCopy()
	withCert.Status.Storage.Certificate.SecretName = "a-cp-datastore-certificate"
	cases := []struct {
		name   string
		tcp    *kamajiv1alpha1.TenantControlPlane
		want   jobspec.EtcdCerts
		wantNS string
	}{
		{"no TCP: the datastore's certificate", nil, jobspec.EtcdCerts{Secret: "ds-etcd-certs"}, "team-a"},
		{"a TCP without a certificate yet", tcp, jobspec.EtcdCerts{Secret: "ds-etcd-certs"}, "team-a"},
		{"the tenant's own, prefix-limited certificate", withCert, jobspec.EtcdCerts{Secret: "a-cp-datastore-certificate", Kamaji: true}, "team-a"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ns := TenantEtcdCerts(c, tc.tcp)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("certs (-want +got):\n%s", diff)
			}
			if ns != tc.wantNS {
				t.Errorf("namespace %q, want %q", ns, tc.wantNS)
			}
		})
	}
	vol := jobspec.EtcdCerts{Secret: "a-cp-datastore-certificate", Kamaji: true}.Volume("etcd-certs")
	if diff := cmp.Diff([]corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}, {Key: "server.crt", Path: "tls.crt"}, {Key: "server.key", Path: "tls.key"}}, vol.Secret.Items); diff != "" {
		t.Errorf("Kamaji's key names mounted as DS-etcd-certs' (-want +got):\n%s", diff)
	}
}
