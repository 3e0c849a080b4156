// Package webhook holds the admission webhooks of kdc-etcd-backup, served by the manager:
//
//   - kdccluster_validator.go: rejects bad restore requests (the kube-dc.com/restore-from
//     annotation) synchronously, protects the restore state machine's bookkeeping annotations
//     and checks spec.backup where the CRD schema cannot.
//   - kdccluster_defaulter.go: stamps an accepted restore request (state Validating, requester,
//     request time).
//   - datastore_validator.go: rejects changing spec.etcd.replicas of a datastore while a
//     restore of a cluster using it runs.
//
// Every rule is an exported pure function in rules.go returning field.ErrorList, so the restore
// controller re-checks exactly the same rules. Each error's detail starts with its reason
// (see ReasonOf).
package webhook
