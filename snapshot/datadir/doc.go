// Package datadir writes etcd's data directory on the restore side of the data path: Restore
// downloads and checks a snapshot (package snapshot), restores it with etcdutl into a staging
// directory next to the data directory, migrates its storage version when asked, and swaps it in
// atomically, keeping one previous generation; Rollback swaps that generation back. For a
// multi-member restore, Restore with StageOnly stops once staged and Swap swaps in (stage.go).
//
// It links etcd's server storage packages (through etcdutl), so only the kdc-etcd-backup binary
// imports it; package snapshot, which kubectl-kdc imports, does not. docs/jobs.md describes the
// restore and rollback subcommands.
package datadir
