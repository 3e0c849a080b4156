package jobspec

import (
	"errors"
	"fmt"
	"syscall"
)

// Command is a Job subcommand of kdc-etcd-backup.
type Command string

// The Job subcommands.
const (
	CommandBackup   Command = "backup"
	CommandVerify   Command = "verify"
	CommandRestore  Command = "restore"
	CommandRollback Command = "rollback"
	// CommandSwap swaps a staged restore in (multi-member restores).
	CommandSwap Command = "swap"
)

// ExitCode is the process exit code of a Job subcommand; each failure class has its own, so a
// controller can tell them apart (and whether a retry can help) from the Pod status alone.
type ExitCode int

// Exit codes of the Job subcommands.
const (
	// ExitSucceeded: the subcommand did what it was asked.
	ExitSucceeded ExitCode = 0
	// ExitFailed: anything not covered below (unexpected).
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
	// ExitNotStaged: swap only; no complete staged restore (at the asked revision) to swap in.
	ExitNotStaged ExitCode = 13
)

// retry says which Jobs a retry can help after a failure.
type retry int

const (
	// retryAny: a transient failure; a retry of any Job may pass.
	retryAny retry = iota + 1
	// retryBackup: the stored object or the data volume is at fault, so verify, restore and
	// rollback would meet it again; a backup retry reads a new snapshot and writes a new object.
	retryBackup
	// retryNever: the Job's arguments, bucket or credentials are wrong; no retry can pass.
	retryNever
)

// exitCodes is the one exit-code table (docs/jobs.md, "Exit codes").
var exitCodes = []struct {
	code   ExitCode
	reason string
	retry  retry
	// only is the one command that exits with the code ("" for any).
	only Command
}{
	{ExitSucceeded, "Succeeded", 0, ""},
	{ExitFailed, "Failed", retryAny, ""},
	{ExitSnapshotTooSmall, "SnapshotTooSmall", retryAny, ""},
	{ExitUsage, "Usage", retryNever, ""},
	{ExitObjectMissing, "ObjectMissing", retryBackup, ""},
	{ExitBucketMissing, "BucketMissing", retryNever, ""},
	{ExitAccessDenied, "AccessDenied", retryNever, ""},
	{ExitS3Unreachable, "S3Unreachable", retryAny, ""},
	{ExitEtcdUnavailable, "EtcdUnavailable", retryAny, ""},
	{ExitIntegrity, "Integrity", retryBackup, ""},
	{ExitDiskFull, "DiskFull", retryBackup, ""},
	{ExitNoPreviousGeneration, "NoPreviousGeneration", retryBackup, ""},
	{ExitLocalIO, "LocalIO", retryBackup, ""},
	{ExitNotStaged, "NotStaged", retryNever, CommandSwap},
}

// Reason is the exit code's name, as written to the termination message's "reason".
func (c ExitCode) Reason() string {
	for _, e := range exitCodes {
		if e.code == c {
			return e.reason
		}
	}
	return fmt.Sprintf("ExitCode%d", int(c))
}

// Retriable reports whether retrying the Job of cmd can help after it exited with c; an unknown
// code is treated as unexpected (ExitFailed).
func (c ExitCode) Retriable(cmd Command) bool {
	for _, e := range exitCodes {
		if e.code == c {
			return e.retry == retryAny || (e.retry == retryBackup && (cmd == CommandBackup || cmd == CommandPrefixBackup))
		}
	}
	return true
}

// NonRetriable are the exit codes a retry of cmd's Job cannot fix, in ascending order: the
// values of its podFailurePolicy rule that fails the Job at once.
func NonRetriable(cmd Command) []int32 {
	var codes []int32
	for _, e := range exitCodes {
		if e.code != ExitSucceeded && !e.code.Retriable(cmd) && (e.only == "" || e.only == cmd) {
			codes = append(codes, int32(e.code))
		}
	}
	return codes
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

// Errorf builds an *Error of class code; %w in format sets its cause.
func Errorf(code ExitCode, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Code: code, Msg: err.Error(), Err: errors.Unwrap(err)}
}

// CodeOf is the exit code of err: nil is ExitSucceeded, an *Error its own code, a full disk
// (ENOSPC, EDQUOT) ExitDiskFull, anything else ExitFailed.
func CodeOf(err error) ExitCode {
	if err == nil {
		return ExitSucceeded
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return ExitDiskFull
	}
	return ExitFailed
}
