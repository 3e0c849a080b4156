package datadir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"kube-dc.com/etcd-backup/jobspec"
	"kube-dc.com/etcd-backup/snapshot"
)

// Staged restores of multi-member datastores (docs/restore.md, "Multi-member datastores"): the record keeps the restored directory's inode, so a rerun after a crash finds that data.

// StagedSuffix names the staged restore of a data directory: <data-dir>.staged.
const StagedSuffix = ".staged"

// StagedDir is the staged restore of dataDir.
func StagedDir(dataDir string) string { return filepath.Clean(dataDir) + StagedSuffix }

const (
	stagedDataName   = "data"
	stagedRecordName = "staged.json"
)

// stagedRecord is staged.json, written only once the restored data is complete and durable.
type stagedRecord struct {
	// Inode is the restored data directory's.
	Inode uint64 `json:"inode"`
	// Result is the staged restore's termination message.
	Result   jobspec.Result `json:"result"`
	Member   jobspec.Member `json:"member"`
	StagedAt time.Time      `json:"stagedAt"`
}

// stage is where the restored data of a staged restore is, relative to the data directory.
type stage int

const (
	// stageNone: nothing was staged.
	stageNone stage = iota
	// stagePending: staged, not swapped in.
	stagePending
	// stageExchanged: swapped in, the replaced data still staged (a swap cut short between renames).
	stageExchanged
	// stageSwapped: swapped in, the replaced data kept as the previous generation.
	stageSwapped
	// stageRolledBack: swapped in and rolled back: it is the previous generation.
	stageRolledBack
	// stageLost: the record's data is in none of those places.
	stageLost
)

// stageOf tells the stage from the inodes of the record's data, of the data directory, of the
// staged data and of the previous generation (0: absent).
func stageOf(record, dataDir, staged, previous uint64) stage {
	switch {
	case record == 0:
		return stageNone
	case staged == record && dataDir != record:
		return stagePending
	case dataDir == record && staged != 0:
		return stageExchanged
	case dataDir == record:
		return stageSwapped
	case previous == record:
		return stageRolledBack
	}
	return stageLost
}

// staging are the paths of a data directory's staged restore.
type staging struct {
	dataDir, previous, dir, data, record string
}

func stagingOf(dataDir string) staging {
	dataDir = filepath.Clean(dataDir)
	dir := StagedDir(dataDir)
	return staging{dataDir: dataDir, previous: PreviousDataDir(dataDir), dir: dir,
		data: filepath.Join(dir, stagedDataName), record: filepath.Join(dir, stagedRecordName)}
}

// read reads the record (nil when there is none) and the stage of its data.
func (s staging) read() (*stagedRecord, stage, error) {
	b, err := os.ReadFile(s.record)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, stageNone, nil
	}
	if err != nil {
		return nil, stageNone, snapshot.LocalIOError("read", s.record, err)
	}
	var rec stagedRecord
	if err := json.Unmarshal(b, &rec); err != nil || rec.Inode == 0 {
		// Written complete and synced before its directory got its name: never guess past it.
		return nil, stageNone, jobspec.Errorf(jobspec.ExitLocalIO, "the staged restore's record %s is unreadable (%v): check %s by hand (its data/ is a staged restore, or the data directory a swap replaced) and move it aside; the data directory %s is unchanged", s.record, err, s.dir, s.dataDir)
	}
	var inodes [3]uint64
	for i, p := range []string{s.dataDir, s.data, s.previous} {
		if inodes[i], err = inode(p); err != nil {
			return nil, stageNone, snapshot.LocalIOError("read", p, err)
		}
	}
	return &rec, stageOf(rec.Inode, inodes[0], inodes[1], inodes[2]), nil
}

// finishExchanged completes a swap that stopped after its exchange: the replaced data, still in
// the staged directory, becomes the previous generation.
func (s staging) finishExchanged() (string, error) {
	trash := filepath.Join(s.dir, olderPrevious)
	if err := os.RemoveAll(trash); err != nil {
		return "", snapshot.LocalIOError("remove", trash, err)
	}
	prev, err := keepPrevious(s.data, s.dataDir, trash)
	if err != nil {
		return "", err
	}
	return prev, os.RemoveAll(trash)
}

// clearStaged is what every restore does first: finish a swap a crash interrupted (so no data
// directory is lost), then drop any earlier staged restore, which the new restore supersedes.
func clearStaged(dataDir string, log *slog.Logger) error {
	s := stagingOf(dataDir)
	_, st, err := s.read()
	if err != nil {
		return err
	}
	if st == stageExchanged {
		log.Info("Finishing an interrupted swap before the restore", "staged", s.dir)
		if _, err := s.finishExchanged(); err != nil {
			return err
		}
	}
	return s.discard(log)
}

// discard removes the staged directory; it is first renamed to a staging name, so a removal cut
// short never leaves a record beside partial data (the next restore removes the rest).
func (s staging) discard(log *slog.Logger) error {
	ok, err := exists(s.dir)
	if err != nil || !ok {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(s.dir), stagingPrefix)
	if err != nil {
		return snapshot.LocalIOError("create a staging directory in", filepath.Dir(s.dir), err)
	}
	trash := filepath.Join(tmp, "discarded")
	if err := os.Rename(s.dir, trash); err != nil {
		return snapshot.LocalIOError("discard the staged restore", s.dir, err)
	}
	if err := syncDir(filepath.Dir(s.dir)); err != nil {
		return snapshot.LocalIOError("sync", filepath.Dir(s.dir), err)
	}
	log.Info("Discarded a staged restore", "staged", s.dir)
	if err := os.RemoveAll(tmp); err != nil {
		log.Warn("Failed to remove a discarded staged restore", "path", tmp, "err", err)
	}
	return nil
}

// commitStaged makes the complete, synced restore in stagingDir/data the data directory's staged
// restore: record first (durable), then one rename of the whole staging directory.
func commitStaged(stagingDir, restored string, member jobspec.Member, res *jobspec.Result) error {
	s := stagingOf(member.DataDir)
	ino, err := inode(restored)
	if err != nil || ino == 0 {
		return snapshot.LocalIOError("read", restored, errors.Join(err, fs.ErrNotExist))
	}
	res.State, res.StagedDir = jobspec.StateStaged, s.dir
	rec := stagedRecord{Inode: ino, Result: *res, Member: member, StagedAt: time.Now().UTC()}
	rec.Result.Command = ""
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("failed to encode the staged restore's record: %w", err)
	}
	path := filepath.Join(stagingDir, stagedRecordName)
	if err := writeFileSync(path, b); err != nil {
		return snapshot.LocalIOError("write", path, err)
	}
	if err := syncDir(stagingDir); err != nil {
		return snapshot.LocalIOError("sync", stagingDir, err)
	}
	if err := renameNoReplace(stagingDir, s.dir); err != nil {
		return snapshot.LocalIOError("move the staged restore to", s.dir, err)
	}
	if err := syncDir(filepath.Dir(s.dir)); err != nil {
		return snapshot.LocalIOError("sync", filepath.Dir(s.dir), err)
	}
	return nil
}

// writeFileSync writes a new file and fsyncs it.
func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// SwapOptions configure Swap: the swap subcommand's arguments and the logger.
type SwapOptions struct {
	jobspec.Swap
	Logger *slog.Logger
}

// Swap swaps the restore staged by `restore --swap=false` into DataDir, atomically, keeping the
// replaced data directory as DataDir.previous (one generation), exactly as a restore's last step.
// It refuses (ExitNotStaged) when nothing complete is staged or the staged restore is not at
// RestoredRevision, and does nothing more when that restore is swapped in already. etcd must be
// stopped.
func Swap(_ context.Context, o SwapOptions) (*jobspec.Result, error) {
	start := time.Now()
	if o.DataDir == "" || !filepath.IsAbs(o.DataDir) || filepath.Clean(o.DataDir) == "/" {
		return nil, jobspec.Errorf(jobspec.ExitUsage, "--data-dir %q must be an absolute path below /", o.DataDir)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := stagingOf(o.DataDir)
	res := &jobspec.Result{Command: jobspec.CommandSwap, DataDir: s.dataDir, StagedDir: s.dir}
	rec, st, err := s.read()
	if err != nil {
		return res, err
	}
	if rec == nil {
		return res, jobspec.Errorf(jobspec.ExitNotStaged, "nothing is staged in %s: stage the restore of this member with `restore --swap=false` first; the data directory %s is unchanged", s.dir, s.dataDir)
	}
	r := rec.Result
	res.Key, res.ObjectKey, res.Bucket, res.SHA256 = r.Key, r.ObjectKey, r.Bucket, r.SHA256
	res.Revision, res.RevisionBefore, res.BumpRevision, res.RestoredRevision = r.Revision, r.RevisionBefore, r.BumpRevision, r.RestoredRevision
	log := o.Logger.With("dataDir", s.dataDir, "staged", s.dir, "objectKey", r.ObjectKey, "restoredRevision", r.RestoredRevision)
	if o.RestoredRevision != 0 && r.RestoredRevision != o.RestoredRevision {
		return res, jobspec.Errorf(jobspec.ExitNotStaged, "the restore staged in %s is at revision %d, not --restored-revision %d: stage this member again with `restore --swap=false --restored-revision=%d`; the data directory %s is unchanged", s.dir, r.RestoredRevision, o.RestoredRevision, o.RestoredRevision, s.dataDir)
	}
	switch st {
	case stagePending:
		// The staged data must still be what was staged before it becomes etcd's.
		if got, err := dataDirRevision(s.data); err != nil || got != r.RestoredRevision {
			return res, jobspec.Errorf(jobspec.ExitIntegrity, "the restore staged in %s is not intact (its revision is %d, the record says %d: %v); stage this member again; the data directory %s is unchanged", s.dir, got, r.RestoredRevision, err, s.dataDir)
		}
		trash := filepath.Join(s.dir, olderPrevious)
		if err := os.RemoveAll(trash); err != nil {
			return res, snapshot.LocalIOError("remove", trash, err)
		}
		if res.PreviousDataDir, err = swapIn(s.data, s.dataDir, s.dir); err != nil {
			return res, err
		}
		if err := os.RemoveAll(trash); err != nil {
			log.Warn("Failed to remove the dropped older generation", "path", trash, "err", err)
		}
		res.State = jobspec.StateSwapped
	case stageExchanged:
		log.Info("Finishing an interrupted swap")
		if res.PreviousDataDir, err = s.finishExchanged(); err != nil {
			return res, err
		}
		res.State = jobspec.StateSwapped
	case stageSwapped:
		res.State = jobspec.StateAlreadySwapped
		if ok, _ := exists(s.previous); ok {
			res.PreviousDataDir = s.previous
		}
	case stageRolledBack:
		return res, jobspec.Errorf(jobspec.ExitNotStaged, "the restore staged in %s was swapped in and rolled back since (it is %s now): stage it again with `restore --swap=false` to swap it in; the data directory %s is unchanged", s.dir, s.previous, s.dataDir)
	default:
		return res, jobspec.Errorf(jobspec.ExitNotStaged, "the restored data recorded in %s is gone (neither %s, %s nor %s): stage the restore again with `restore --swap=false`; the data directory %s is unchanged", s.record, s.data, s.dataDir, s.previous, s.dataDir)
	}
	log.Info("Swapped the staged restore in", "state", res.State, "previousDataDir", res.PreviousDataDir)
	res.DurationSeconds = time.Since(start).Seconds()
	return res, nil
}

// RollbackSwapped is `rollback --if-swapped`: it brings DataDir back to the data from before the
// staged restore, whatever step that restore reached, and is idempotent. Swapped in: the previous
// generation is swapped back (or, when there was no data directory before, the restored data goes
// back to the staged directory). Staged only: the staged restore is discarded and DataDir is not
// touched. Nothing staged, or already rolled back: nothing changes. etcd must be stopped.
func RollbackSwapped(_ context.Context, o RollbackOptions) (*jobspec.Result, error) {
	start := time.Now()
	if o.DataDir == "" || !filepath.IsAbs(o.DataDir) || filepath.Clean(o.DataDir) == "/" {
		return nil, jobspec.Errorf(jobspec.ExitUsage, "--data-dir %q must be an absolute path below /", o.DataDir)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := stagingOf(o.DataDir)
	res := &jobspec.Result{Command: jobspec.CommandRollback, DataDir: s.dataDir, PreviousDataDir: s.previous, StagedDir: s.dir}
	_, st, err := s.read()
	if err != nil {
		return res, err
	}
	switch st {
	case stageNone, stageLost:
		res.State = jobspec.StateNotSwapped
	case stagePending:
		if err := s.discard(log); err != nil {
			return res, err
		}
		res.State = jobspec.StateDiscarded
	case stageRolledBack:
		res.State = jobspec.StateAlreadyRolledBack
	case stageExchanged, stageSwapped:
		if st == stageExchanged {
			if _, err := s.finishExchanged(); err != nil {
				return res, err
			}
		}
		hadPrev, err := exists(s.previous)
		if err != nil {
			return res, snapshot.LocalIOError("read", s.previous, err)
		}
		if hadPrev {
			err = exchange(s.previous, s.dataDir)
		} else {
			// No data directory before the swap: the restored data goes back to staged, none left.
			err = renameNoReplace(s.dataDir, s.data)
		}
		if err != nil {
			return res, snapshot.LocalIOError("swap the data from before the restore back into", s.dataDir, err)
		}
		if err := syncDir(filepath.Dir(s.dataDir)); err != nil {
			return res, snapshot.LocalIOError("sync", filepath.Dir(s.dataDir), err)
		}
		res.State = jobspec.StateRolledBack
	}
	log.Info("Rolled back the swap of the staged restore", "dataDir", s.dataDir, "staged", s.dir, "state", res.State)
	res.DurationSeconds = time.Since(start).Seconds()
	return res, nil
}
