// Package v1alpha1 is a minimal copy of the shape of Rook's objectbucket.io/v1alpha1
// ObjectBucketClaim: only the fields kdc-etcd-backup reads. The CRD generated from it (under
// test/crds) is for tests and the demo; in production Rook installs the real one.
//
// +kubebuilder:object:generate=true
// +groupName=objectbucket.io
package v1alpha1
