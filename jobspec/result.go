package jobspec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"kube-dc.com/etcd-backup/api/v1alpha1"
)

// Result is the termination message of every subcommand: one line of JSON, on success and on
// failure (docs/jobs.md, "Termination message"). A field a subcommand does not report is left
// out; written with Command set, the fields of that subcommand's message are always there (see
// messageFields), zero or not.
type Result struct {
	// Command is the subcommand that wrote the message; it is not part of the message.
	Command Command `json:"-"`

	// Error, Reason and ExitCode describe a failure: the one-line message, ExitCode.Reason().
	Error    string `json:"error,omitempty"`
	Reason   string `json:"reason,omitempty"`
	ExitCode int    `json:"exitCode,omitempty"`

	// Key is the snapshot key C/C-<ts>.db; ObjectKey the same with the location's prefix.
	Key       string `json:"key,omitempty"`
	ObjectKey string `json:"objectKey,omitempty"`
	Bucket    string `json:"bucket,omitempty"`
	// Size is the object's size in bytes and SHA256 its whole-object SHA-256 (hex).
	Size   int64  `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	// S3ChecksumSHA256 is the x-amz-checksum-sha256 S3 recorded for a backup.
	S3ChecksumSHA256 string `json:"s3ChecksumSHA256,omitempty"`
	// S3Checksum is the checksum verify and restore checked, "absent" when the object has none.
	S3Checksum string `json:"s3Checksum,omitempty"`
	Parts      int    `json:"parts,omitempty"`
	// Revision is the snapshot's revision; the next three are how a restore moved it (the fields
	// of v1alpha1.RestoreRevision).
	Revision         int64          `json:"revision,omitempty"`
	RevisionBefore   int64          `json:"revisionBefore,omitempty"`
	BumpRevision     int64          `json:"bumpRevision,omitempty"`
	RestoredRevision int64          `json:"restoredRevision,omitempty"`
	Marks            *RevisionMarks `json:"revisionMarks,omitempty"`
	EtcdVersion      string         `json:"etcdVersion,omitempty"`
	StorageVersion   string         `json:"storageVersion,omitempty"`
	// Endpoint is the etcd endpoint a backup read from.
	Endpoint        string  `json:"endpoint,omitempty"`
	DataDir         string  `json:"dataDir,omitempty"`
	PreviousDataDir string  `json:"previousDataDir,omitempty"`
	DurationSeconds float64 `json:"durationSeconds,omitempty"`
	// Lifecycle is the backup's retention state (snapshot.Lifecycle*), with LifecycleError and,
	// for "pruned", how many expired snapshots it deleted.
	Lifecycle      string `json:"lifecycle,omitempty"`
	LifecycleError string `json:"lifecycleError,omitempty"`
	Pruned         int    `json:"pruned,omitempty"`
	TagError       string `json:"tagError,omitempty"`
	// State is where a restore, swap or rollback left the data (State*, multi-member restores),
	// and StagedDir the staged restore it is about.
	State     string `json:"state,omitempty"`
	StagedDir string `json:"stagedDir,omitempty"`
}

// RevisionMarks are the highest revisions known before a restore (docs/restore.md, "Revisions");
// a zero mark is one that does not exist or could not be read.
type RevisionMarks struct {
	// Data is the revision of the data directory being replaced.
	Data int64 `json:"dataRevision"`
	// DataError says why the data directory's revision could not be read ("" when it was read or
	// there is no data directory).
	DataError string `json:"dataRevisionError,omitempty"`
	// Previous is the revision of the kept previous generation.
	Previous int64 `json:"previousDataRevision"`
	// Backup is the revision the newest backup of the cluster recorded (BackupKey).
	Backup    int64  `json:"backupRevision"`
	BackupKey string `json:"backupKey,omitempty"`
	// Given is the restore's --min-revision.
	Given int64 `json:"minRevision,omitempty"`
}

// Highest is the largest mark.
func (m RevisionMarks) Highest() int64 { return max(m.Data, m.Previous, m.Backup, m.Given) }

// messageFields are the fields each message always has, zero or not: a failure's, and each
// subcommand's on success.
var (
	failureFields = []string{"error", "reason", "exitCode"}
	messageFields = map[Command][]string{
		CommandBackup:   {"key", "objectKey", "bucket", "size", "sha256", "parts", "revision", "etcdVersion", "storageVersion", "endpoint", "durationSeconds", "lifecycle"},
		CommandVerify:   {"key", "objectKey", "bucket", "size", "sha256", "s3Checksum", "revision", "etcdVersion", "durationSeconds"},
		CommandRestore:  {"key", "objectKey", "bucket", "size", "sha256", "s3Checksum", "revision", "revisionBefore", "bumpRevision", "restoredRevision", "revisionMarks", "etcdVersion", "dataDir", "durationSeconds"},
		CommandRollback: {"dataDir", "previousDataDir", "durationSeconds"},
		CommandSwap:     {"key", "objectKey", "bucket", "sha256", "revision", "revisionBefore", "bumpRevision", "restoredRevision", "dataDir", "previousDataDir", "durationSeconds", "state", "stagedDir"},
	}
)

// Failed reports whether the message describes a failure.
func (r Result) Failed() bool { return r.ExitCode != 0 || r.Error != "" }

// RestoreRevision is how the restore moved etcd's revision.
func (r Result) RestoreRevision() v1alpha1.RestoreRevision {
	return v1alpha1.RestoreRevision{Revision: r.Revision, RevisionBefore: r.RevisionBefore, BumpRevision: r.BumpRevision, RestoredRevision: r.RestoredRevision}
}

// MarshalJSON writes the fields in their declared order, the set ones and those the message of
// r.Command always has.
func (r Result) MarshalJSON() ([]byte, error) {
	always := messageFields[r.Command]
	if r.Failed() {
		always = failureFields
	}
	v := reflect.ValueOf(r)
	var b bytes.Buffer
	b.WriteByte('{')
	for i := range v.NumField() {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		f := v.Field(i)
		if name == "-" || (f.IsZero() && (f.Kind() == reflect.Pointer || !slices.Contains(always, name))) {
			continue
		}
		val, err := json.Marshal(f.Interface())
		if err != nil {
			return nil, fmt.Errorf("failed to encode %s: %w", name, err)
		}
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:", name)
		b.Write(val)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// ParseResult reads a termination message.
func ParseResult(msg string) (Result, error) {
	var r Result
	if err := json.Unmarshal([]byte(strings.TrimSpace(msg)), &r); err != nil {
		return Result{}, fmt.Errorf("termination message %q is not a result: %w", msg, err)
	}
	return r, nil
}
