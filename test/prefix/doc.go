// Package prefix holds the integration tests and benchmarks of per-tenant (prefix) backup and
// restore on a shared etcd (package snapshot/prefix) against real processes only: etcd v3.5,
// v3.6 and v3.7 with client TLS and authentication on (one role per tenant prefix, one user per
// tenant whose client certificate's CN is the user), and a real MinIO, all on 127.0.0.1; the
// scenario of apiserver_test.go runs the two tenants' real kube-apiservers on that etcd. Run
// `make bins` first.
package prefix
