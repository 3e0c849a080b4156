package v1alpha1

// Keys of the etcd client TLS Secret DS-etcd-certs, which the backup Job mounts at
// EtcdCertsMountPath. The backup subcommand's --cacert, --cert and --key default to these files.
const (
	// EtcdCertsCAKey is the CA bundle that signed etcd's serving certificate.
	EtcdCertsCAKey = "ca.crt"
	// EtcdCertsCertKey is the etcd client certificate.
	EtcdCertsCertKey = "tls.crt"
	// EtcdCertsKeyKey is the etcd client certificate's private key.
	EtcdCertsKeyKey = "tls.key"
)
