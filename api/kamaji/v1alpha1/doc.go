// Package v1alpha1 is a minimal copy of the shape of Kamaji's kamaji.clastix.io/v1alpha1
// TenantControlPlane: only the fields kdc-etcd-backup reads or writes (the pause annotation, the
// control plane's replicas, the datastore's key prefix). The CRD generated from it (under
// test/crds) is for tests and the demo; in production Kamaji installs the real one.
//
// +kubebuilder:object:generate=true
// +groupName=kamaji.clastix.io
package v1alpha1
