// Package install checks the kustomize install tree (manifests/default) against a real
// kube-apiserver with cert-manager's CRDs: a server-side dry-run of the whole install succeeds,
// and the pieces that must agree (Service, serving Certificate DNS names, inject-ca-from, the
// Secret the Deployment mounts, RBAC subjects) do.
package install
