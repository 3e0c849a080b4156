package snapshot

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"kube-dc.com/etcd-backup/jobspec"
)

// maxErrorLen keeps a failure's termination message well under Kubernetes' 4096 bytes.
const maxErrorLen = 3000

// DefaultTerminationMessagePath is Kubernetes' default terminationMessagePath.
const DefaultTerminationMessagePath = jobspec.DefaultTerminationMessagePath

// Failure is the termination message of a failed subcommand (a jobspec.Result with Error,
// Reason and ExitCode).
type Failure = jobspec.Result

// NewFailure describes err for the termination message.
func NewFailure(err error) Failure {
	code := CodeOf(err)
	msg := firstLine(err.Error())
	if len(msg) > maxErrorLen {
		msg = msg[:maxErrorLen] + "..."
	}
	return Failure{Error: msg, Reason: code.Reason(), ExitCode: int(code)}
}

// WriteTerminationMessage writes v as one line of JSON to path ("" writes nothing).
func WriteTerminationMessage(path string, v any) error {
	if path == "" {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Finish ends a subcommand: on success it writes result as the termination message; on failure
// it prints err as one line on stderr and writes a Failure (completed by fill) instead. It
// returns the process exit code.
func Finish(stderr io.Writer, terminationPath string, result *jobspec.Result, err error, fill func(*Failure)) int {
	if err == nil {
		if werr := WriteTerminationMessage(terminationPath, result); werr != nil {
			fmt.Fprintf(stderr, "warning: failed to write the termination message to %s: %v\n", terminationPath, werr)
		}
		return int(ExitSucceeded)
	}
	f := NewFailure(err)
	if fill != nil {
		fill(&f)
	}
	fmt.Fprintln(stderr, f.Error)
	if werr := WriteTerminationMessage(terminationPath, f); werr != nil {
		fmt.Fprintf(stderr, "warning: failed to write the termination message to %s: %v\n", terminationPath, werr)
	}
	return f.ExitCode
}
