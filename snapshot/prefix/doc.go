// Package prefix is the Job-side data path of one tenant on a shared etcd: the tenant's key
// prefix (the kube-apiserver's --etcd-prefix) is backed up and restored through the etcd API while
// etcd keeps serving every co-tenant.
//
//   - Backup reads every key under "<prefix>/" at one revision, page by page, and streams it into
//     S3 in the prefix snapshot form (format.go) with snapshot's upload guarantees.
//   - Restore converges the prefix to a snapshot: a merge of the snapshot's and etcd's key-sorted
//     sequences (converge.go) deletes, puts or keeps each key, in transactions within etcd's
//     limits, each guarded by the key's mod revision. The prefix as it was before the first
//     write is uploaded first (the pre-restore copy), and a failure converges back to it (Undo).
//   - Verify and Inspect check and print a stored snapshot.
//
// Errors are *snapshot.Error with snapshot's exit codes. docs/jobs.md is the contract with the
// controllers (subcommands prefix-backup, prefix-restore, prefix-verify, prefix-inspect).
package prefix
