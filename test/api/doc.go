// Package api checks the CRDs against a real kube-apiserver: defaults and bounds are
// enforced by the API server, and `kubectl get kdccluster` prints the documented columns.
package api
