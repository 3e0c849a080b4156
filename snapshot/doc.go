// Package snapshot is the Job-side data path of kdc-etcd-backup: it streams an etcd snapshot
// from a live member (client TLS) into an S3 multipart upload with SHA-256 checksums and etcd
// metadata (Backup), applies the retention lifecycle rule of the cluster's prefix (lifecycle.go),
// checks a stored snapshot end to end without touching any data directory (Verify), restores one
// into an etcd data directory through a staging directory and an atomic swap that keeps one
// previous generation (Restore), and swaps that generation back (Rollback).
//
// Every failure is an *Error carrying an ExitCode (exitcodes.go); the subcommands in
// cmd/kdc-etcd-backup print its one-line message and exit with its code. docs/jobs.md is the
// contract with the controllers that build the Jobs: flags, exit codes, object metadata and the
// termination message.
package snapshot
