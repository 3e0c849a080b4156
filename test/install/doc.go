// Package install checks both installs against a real kube-apiserver with cert-manager's CRDs:
// the kustomize tree (manifests/default) and the Helm chart (charts/kdc-etcd-backup) pass a
// server-side dry-run, the chart with default values renders exactly the kustomize objects, its
// values reach the objects they are for, and the pieces that must agree (Service, serving
// Certificate DNS names, inject-ca-from, the Secret the Deployment mounts, RBAC subjects) do.
package install
