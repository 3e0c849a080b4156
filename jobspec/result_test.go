package jobspec

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestResultMessage checks the termination messages byte for byte: each subcommand's message
// always has its fields, zero or not, in the documented order (docs/jobs.md).
func TestResultMessage(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Result
		want string
	}{
		{"backup", Result{Command: CommandBackup, Key: tKey, ObjectKey: "tenants/" + tKey, Bucket: "b", Size: 20971552, SHA256: "ab",
			S3ChecksumSHA256: "cd-3", Parts: 3, Revision: 123456, EtcdVersion: "3.5.35", Endpoint: "https://e:2379", DurationSeconds: 1.84, Lifecycle: "applied"},
			`{"key":"prod/prod-20260301T020000Z.db","objectKey":"tenants/prod/prod-20260301T020000Z.db","bucket":"b","size":20971552,"sha256":"ab","s3ChecksumSHA256":"cd-3","parts":3,"revision":123456,"etcdVersion":"3.5.35","storageVersion":"","endpoint":"https://e:2379","durationSeconds":1.84,"lifecycle":"applied"}`},
		{"backup, pruned", Result{Command: CommandBackup, Key: tKey, ObjectKey: tKey, Bucket: "b", Size: 1, SHA256: "ab", Parts: 1, Revision: 2,
			EtcdVersion: "3.6.16", StorageVersion: "3.6.0", Endpoint: "e", DurationSeconds: 0.5, Lifecycle: "pruned", Pruned: 2, TagError: "denied"},
			`{"key":"prod/prod-20260301T020000Z.db","objectKey":"prod/prod-20260301T020000Z.db","bucket":"b","size":1,"sha256":"ab","parts":1,"revision":2,"etcdVersion":"3.6.16","storageVersion":"3.6.0","endpoint":"e","durationSeconds":0.5,"lifecycle":"pruned","pruned":2,"tagError":"denied"}`},
		{"verify of an object without metadata", Result{Command: CommandVerify, Key: tKey, ObjectKey: tKey, Bucket: "b", Size: 1, SHA256: "ab", S3Checksum: "absent", DurationSeconds: 0.1},
			`{"key":"prod/prod-20260301T020000Z.db","objectKey":"prod/prod-20260301T020000Z.db","bucket":"b","size":1,"sha256":"ab","s3Checksum":"absent","revision":0,"etcdVersion":"","durationSeconds":0.1}`},
		{"restore without bump", Result{Command: CommandRestore, Key: tKey, ObjectKey: tKey, Bucket: "b", Size: 1, SHA256: "ab", S3Checksum: "x",
			Revision: 7, RestoredRevision: 7, Marks: &RevisionMarks{Backup: 7, BackupKey: tKey}, EtcdVersion: "3.5.35", DataDir: "/d", DurationSeconds: 0.2},
			`{"key":"prod/prod-20260301T020000Z.db","objectKey":"prod/prod-20260301T020000Z.db","bucket":"b","size":1,"sha256":"ab","s3Checksum":"x","revision":7,"revisionBefore":0,"bumpRevision":0,"restoredRevision":7,"revisionMarks":{"dataRevision":0,"previousDataRevision":0,"backupRevision":7,"backupKey":"prod/prod-20260301T020000Z.db"},"etcdVersion":"3.5.35","dataDir":"/d","durationSeconds":0.2}`},
		{"restore", Result{Command: CommandRestore, Key: tKey, ObjectKey: tKey, Bucket: "b", Size: 1, SHA256: "ab", S3Checksum: "x",
			Revision: 7, RevisionBefore: 9, BumpRevision: 1000000002, RestoredRevision: 1000000009, Marks: &RevisionMarks{Data: 9, DataError: "e", Previous: 3, Backup: 7, Given: 1},
			EtcdVersion: "3.5.35", DataDir: "/d", PreviousDataDir: "/d.previous", DurationSeconds: 0.2},
			`{"key":"prod/prod-20260301T020000Z.db","objectKey":"prod/prod-20260301T020000Z.db","bucket":"b","size":1,"sha256":"ab","s3Checksum":"x","revision":7,"revisionBefore":9,"bumpRevision":1000000002,"restoredRevision":1000000009,"revisionMarks":{"dataRevision":9,"dataRevisionError":"e","previousDataRevision":3,"backupRevision":7,"minRevision":1},"etcdVersion":"3.5.35","dataDir":"/d","previousDataDir":"/d.previous","durationSeconds":0.2}`},
		{"staged restore", Result{Command: CommandRestore, Key: tKey, ObjectKey: tKey, Bucket: "b", Size: 1, SHA256: "ab", S3Checksum: "x",
			Revision: 7, RevisionBefore: 9, BumpRevision: 1000000002, RestoredRevision: 1000000009, Marks: &RevisionMarks{Data: 9, Backup: 7},
			EtcdVersion: "3.5.35", DataDir: "/d", DurationSeconds: 0.2, State: StateStaged, StagedDir: "/d.staged"},
			`{"key":"prod/prod-20260301T020000Z.db","objectKey":"prod/prod-20260301T020000Z.db","bucket":"b","size":1,"sha256":"ab","s3Checksum":"x","revision":7,"revisionBefore":9,"bumpRevision":1000000002,"restoredRevision":1000000009,"revisionMarks":{"dataRevision":9,"previousDataRevision":0,"backupRevision":7},"etcdVersion":"3.5.35","dataDir":"/d","durationSeconds":0.2,"state":"staged","stagedDir":"/d.staged"}`},
		{"swap", Result{Command: CommandSwap, Key: tKey, ObjectKey: tKey, Bucket: "b", SHA256: "ab", Revision: 7, RevisionBefore: 9, BumpRevision: 1000000002,
			RestoredRevision: 1000000009, DataDir: "/d", PreviousDataDir: "/d.previous", DurationSeconds: 0.01, State: StateSwapped, StagedDir: "/d.staged"},
			`{"key":"prod/prod-20260301T020000Z.db","objectKey":"prod/prod-20260301T020000Z.db","bucket":"b","sha256":"ab","revision":7,"revisionBefore":9,"bumpRevision":1000000002,"restoredRevision":1000000009,"dataDir":"/d","previousDataDir":"/d.previous","durationSeconds":0.01,"state":"swapped","stagedDir":"/d.staged"}`},
		{"swap onto a lost data directory", Result{Command: CommandSwap, Key: tKey, ObjectKey: tKey, Bucket: "b", SHA256: "ab", Revision: 7, RevisionBefore: 7, BumpRevision: 1000000000,
			RestoredRevision: 1000000007, DataDir: "/d", DurationSeconds: 0.01, State: StateSwapped, StagedDir: "/d.staged"},
			`{"key":"prod/prod-20260301T020000Z.db","objectKey":"prod/prod-20260301T020000Z.db","bucket":"b","sha256":"ab","revision":7,"revisionBefore":7,"bumpRevision":1000000000,"restoredRevision":1000000007,"dataDir":"/d","previousDataDir":"","durationSeconds":0.01,"state":"swapped","stagedDir":"/d.staged"}`},
		{"rollback of a swap", Result{Command: CommandRollback, DataDir: "/d", PreviousDataDir: "/d.previous", DurationSeconds: 0.01, State: StateRolledBack, StagedDir: "/d.staged"},
			`{"dataDir":"/d","previousDataDir":"/d.previous","durationSeconds":0.01,"state":"rolledBack","stagedDir":"/d.staged"}`},
		{"rollback", Result{Command: CommandRollback, DataDir: "/d", PreviousDataDir: "/d.previous", DurationSeconds: 0.01},
			`{"dataDir":"/d","previousDataDir":"/d.previous","durationSeconds":0.01}`},
		{"failure", Result{Command: CommandVerify, Error: "gone <x>", Reason: "ObjectMissing", ExitCode: 4, Key: tKey, ObjectKey: tKey, Bucket: "b"},
			`{"error":"gone \u003cx\u003e","reason":"ObjectMissing","exitCode":4,"key":"prod/prod-20260301T020000Z.db","objectKey":"prod/prod-20260301T020000Z.db","bucket":"b"}`},
		{"failure before any input", Result{Command: CommandRollback, Error: "--data-dir is required", Reason: "Usage", ExitCode: 3, DataDir: "/d"},
			`{"error":"--data-dir is required","reason":"Usage","exitCode":3,"dataDir":"/d"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, string(b)); diff != "" {
				t.Errorf("message mismatch (-want +got):\n%s", diff)
			}
			got, err := ParseResult(string(b) + "\n")
			if err != nil {
				t.Fatal(err)
			}
			want := tc.in
			want.Command = ""
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ParseResult mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseResultRejects(t *testing.T) {
	for _, msg := range []string{"", "container exited", `{"exitCode":"x"}`} {
		if _, err := ParseResult(msg); err == nil {
			t.Errorf("ParseResult(%q) succeeded, want an error", msg)
		}
	}
}

func TestRevisionMarksHighest(t *testing.T) {
	tests := []struct {
		name  string
		marks RevisionMarks
		want  int64
	}{
		{"none", RevisionMarks{}, 0},
		{"data", RevisionMarks{Data: 7, Previous: 5, Backup: 6}, 7},
		{"previous generation", RevisionMarks{Data: 3, Previous: 9, Backup: 6}, 9},
		{"newest backup, data lost", RevisionMarks{DataError: "corrupt", Backup: 6}, 6},
		{"given", RevisionMarks{Data: 3, Given: 11}, 11},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tc.marks.Highest()); diff != "" {
				t.Errorf("Highest() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
