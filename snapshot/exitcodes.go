package snapshot

import (
	"kube-dc.com/etcd-backup/jobspec"
)

// The exit codes and their failure type are jobspec's (docs/jobs.md, "Exit codes").
type (
	ExitCode = jobspec.ExitCode
	Error    = jobspec.Error
)

// Exit codes of the Job subcommands.
const (
	ExitSucceeded            = jobspec.ExitSucceeded
	ExitFailed               = jobspec.ExitFailed
	ExitSnapshotTooSmall     = jobspec.ExitSnapshotTooSmall
	ExitUsage                = jobspec.ExitUsage
	ExitObjectMissing        = jobspec.ExitObjectMissing
	ExitBucketMissing        = jobspec.ExitBucketMissing
	ExitAccessDenied         = jobspec.ExitAccessDenied
	ExitS3Unreachable        = jobspec.ExitS3Unreachable
	ExitEtcdUnavailable      = jobspec.ExitEtcdUnavailable
	ExitIntegrity            = jobspec.ExitIntegrity
	ExitDiskFull             = jobspec.ExitDiskFull
	ExitNoPreviousGeneration = jobspec.ExitNoPreviousGeneration
	ExitLocalIO              = jobspec.ExitLocalIO
)

// errorf builds an *Error of class code; %w in format sets its cause.
func errorf(code ExitCode, format string, args ...any) *Error {
	return jobspec.Errorf(code, format, args...)
}

// CodeOf is jobspec.CodeOf: the exit code of err.
func CodeOf(err error) ExitCode { return jobspec.CodeOf(err) }

// LocalIOError classifies a filesystem error on the data volume at path during what.
func LocalIOError(what, path string, err error) *Error {
	if CodeOf(err) == ExitDiskFull {
		return errorf(ExitDiskFull, "failed to %s %s: the data volume is full (%w); free space or grow the etcd data PVC, the data directory is unchanged", what, path, err)
	}
	return errorf(ExitLocalIO, "failed to %s %s: %w; check the etcd data volume is mounted read-write and has free space", what, path, err)
}
