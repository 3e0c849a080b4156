package jobspec

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// EtcdCerts is the Secret of an etcd client certificate a Job mounts at EtcdCertsMountPath.
type EtcdCerts struct {
	// Secret is the Secret's name.
	Secret string `json:"secret"`
	// Kamaji: the Secret is a TenantControlPlane's datastore certificate (ca.crt, server.crt,
	// server.key: the tenant's own, limited to its prefix), mounted under the names of
	// DS-etcd-certs so the subcommands' default paths find it.
	Kamaji bool `json:"kamaji,omitempty"`
}

// Volume is the Secret volume of c.
func (c EtcdCerts) Volume(name string) corev1.Volume {
	src := &corev1.SecretVolumeSource{SecretName: c.Secret, DefaultMode: ptr.To[int32](0o440)}
	if c.Kamaji {
		src.Items = []corev1.KeyToPath{
			{Key: kdcv1alpha1.EtcdCertsCAKey, Path: kdcv1alpha1.EtcdCertsCAKey},
			{Key: "server.crt", Path: kdcv1alpha1.EtcdCertsCertKey},
			{Key: "server.key", Path: kdcv1alpha1.EtcdCertsKeyKey},
		}
	}
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: src}}
}
