// Package framework is the test framework of kdc-etcd-backup's integration and e2e tests: it
// finds the real binaries hack/bins.sh builds (kube-apiserver, kube-controller-manager, kubectl,
// etcd of several versions, MinIO) without any environment variable, starts envtest with them,
// gives each test a fresh namespace, and runs the built kubectl. Modelled on Kueue's
// test/integration/framework.
package framework
