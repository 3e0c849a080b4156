// Package snapshot is the Job-side data path of kdc-etcd-backup that needs no etcd server code:
// it streams an etcd snapshot from a live member (client TLS) into an S3 multipart upload with
// SHA-256 checksums and etcd metadata (Backup), applies the retention lifecycle rule of the
// cluster's prefix (lifecycle.go), and checks a stored snapshot end to end without touching any
// data directory (Verify, and the download Restore uses). Restoring into a data directory and
// rolling it back live in snapshot/datadir, which links etcdutl; kubectl-kdc imports this package
// only.
//
// Every failure is an *Error carrying an ExitCode (jobspec's table); the subcommands in
// cmd/kdc-etcd-backup print its one-line message and exit with its code. docs/jobs.md is the
// contract with the controllers that build the Jobs: flags, exit codes, object metadata and the
// termination message.
package snapshot
