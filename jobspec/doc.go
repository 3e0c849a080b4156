// Package jobspec is the contract between the controllers that build the backup and restore
// Jobs and the Job subcommands of kdc-etcd-backup (backup, verify, restore, swap, rollback): the typed
// arguments of each subcommand (rendered to container args by the builders, parsed back by the
// subcommands), the S3 location, etcd's member defaults, the exit-code table with its
// retriable/non-retriable split, and the one-line JSON termination message. docs/jobs.md
// describes it for operators.
//
// It imports the standard library and the API types only, so every side can import it.
package jobspec
