package snapshot

import (
	"errors"
	"fmt"
	"syscall"
)

// ExitCode is the process exit code of a Job subcommand; each failure class has its own, so a
// controller can tell them apart (and decide whether a retry can help) from the Pod status alone.
// docs/jobs.md documents them.
type ExitCode int

// Exit codes of the backup, restore, verify and rollback subcommands.
const (
	// ExitSucceeded: the subcommand did what it was asked.
	ExitSucceeded ExitCode = 0
	// ExitFailed: anything not covered below (unexpected); a retry may help.
	ExitFailed ExitCode = 1
	// ExitSnapshotTooSmall: backup only; the etcd snapshot is smaller than the minimum size (the
	// etcd read failed) and nothing was uploaded.
	ExitSnapshotTooSmall ExitCode = 2
	// ExitUsage: a bad or missing flag, a malformed key, or missing credentials in the environment.
	ExitUsage ExitCode = 3
	// ExitObjectMissing: the snapshot object does not exist.
	ExitObjectMissing ExitCode = 4
	// ExitBucketMissing: the bucket does not exist.
	ExitBucketMissing ExitCode = 5
	// ExitAccessDenied: the S3 credentials are wrong or lack a permission.
	ExitAccessDenied ExitCode = 6
	// ExitS3Unreachable: the S3 endpoint cannot be reached (DNS, refused, TLS, timeout).
	ExitS3Unreachable ExitCode = 7
	// ExitEtcdUnavailable: backup only; etcd cannot be reached, its TLS files are unreadable or
	// rejected, or the snapshot stream broke.
	ExitEtcdUnavailable ExitCode = 8
	// ExitIntegrity: the object or the stream is corrupt or truncated (a checksum, hash or size
	// mismatch, or not an etcd snapshot).
	ExitIntegrity ExitCode = 9
	// ExitDiskFull: no space or quota left on the data volume; the data directory is unchanged.
	ExitDiskFull ExitCode = 10
	// ExitNoPreviousGeneration: rollback only; there is no kept previous data directory.
	ExitNoPreviousGeneration ExitCode = 11
	// ExitLocalIO: the data volume cannot be read or written (permissions, read-only filesystem).
	ExitLocalIO ExitCode = 12
)

var exitReasons = map[ExitCode]string{
	ExitSucceeded:            "Succeeded",
	ExitFailed:               "Failed",
	ExitSnapshotTooSmall:     "SnapshotTooSmall",
	ExitUsage:                "Usage",
	ExitObjectMissing:        "ObjectMissing",
	ExitBucketMissing:        "BucketMissing",
	ExitAccessDenied:         "AccessDenied",
	ExitS3Unreachable:        "S3Unreachable",
	ExitEtcdUnavailable:      "EtcdUnavailable",
	ExitIntegrity:            "Integrity",
	ExitDiskFull:             "DiskFull",
	ExitNoPreviousGeneration: "NoPreviousGeneration",
	ExitLocalIO:              "LocalIO",
}

// Reason is the exit code's name, as written to the termination message's "reason".
func (c ExitCode) Reason() string {
	if r, ok := exitReasons[c]; ok {
		return r
	}
	return fmt.Sprintf("ExitCode%d", int(c))
}

// Retriable reports whether retrying the same Job can help.
func (c ExitCode) Retriable() bool {
	switch c {
	case ExitFailed, ExitSnapshotTooSmall, ExitS3Unreachable, ExitEtcdUnavailable:
		return true
	}
	return false
}

// Error is a failure of a subcommand: a one-line message that names the object (or endpoint or
// directory) and what to check, and the exit code of its class.
type Error struct {
	Code ExitCode
	// Msg is the complete one-line message.
	Msg string
	// Err is the underlying cause, for errors.Is/As; it is not printed again.
	Err error
}

func (e *Error) Error() string { return e.Msg }

func (e *Error) Unwrap() error { return e.Err }

// errorf builds an *Error of class code; %w in format sets its cause.
func errorf(code ExitCode, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Code: code, Msg: err.Error(), Err: errors.Unwrap(err)}
}

// CodeOf is the exit code of err: nil is ExitSucceeded, an *Error its own code, a full disk
// ExitDiskFull, anything else ExitFailed.
func CodeOf(err error) ExitCode {
	if err == nil {
		return ExitSucceeded
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if isDiskFull(err) {
		return ExitDiskFull
	}
	return ExitFailed
}

// isDiskFull reports whether err is ENOSPC or EDQUOT.
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// localIOError classifies a filesystem error on the data volume at path during what.
func localIOError(what, path string, err error) *Error {
	if isDiskFull(err) {
		return errorf(ExitDiskFull, "failed to %s %s: the data volume is full (%w); free space or grow the etcd data PVC, the data directory is unchanged", what, path, err)
	}
	return errorf(ExitLocalIO, "failed to %s %s: %w; check the etcd data volume is mounted read-write and has free space", what, path, err)
}
