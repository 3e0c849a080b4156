package datadir

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"

	"kube-dc.com/etcd-backup/jobspec"
	"kube-dc.com/etcd-backup/snapshot"
)

// RollbackOptions configure Rollback.
type RollbackOptions struct {
	// DataDir is etcd's data directory; its previous generation is DataDir + ".previous".
	DataDir string
	// IfSwapped undoes only the swap of a staged restore (RollbackSwapped).
	IfSwapped bool
	Logger    *slog.Logger
}

// Rollback swaps the kept previous generation back into DataDir, atomically. The data it
// replaces becomes the previous generation, so a second Rollback undoes the first. etcd must be
// stopped.
func Rollback(ctx context.Context, o RollbackOptions) (*jobspec.Result, error) {
	if o.IfSwapped {
		return RollbackSwapped(ctx, o)
	}
	start := time.Now()
	if o.DataDir == "" {
		return nil, jobspec.Errorf(jobspec.ExitUsage, "--data-dir is required")
	}
	dataDir := filepath.Clean(o.DataDir)
	prev := PreviousDataDir(dataDir)
	res := &jobspec.Result{Command: jobspec.CommandRollback, DataDir: dataDir, PreviousDataDir: prev}
	ok, err := exists(prev)
	if err != nil {
		return res, snapshot.LocalIOError("read", prev, err)
	}
	if !ok {
		return res, jobspec.Errorf(jobspec.ExitNoPreviousGeneration, "there is no previous data directory %s to roll back to; the data directory %s is unchanged", prev, dataDir)
	}
	cur, err := exists(dataDir)
	if err != nil {
		return res, snapshot.LocalIOError("read", dataDir, err)
	}
	if cur {
		err = exchange(prev, dataDir)
	} else {
		err = renameNoReplace(prev, dataDir)
	}
	if err != nil {
		return res, snapshot.LocalIOError("swap "+prev+" into", dataDir, err)
	}
	if err := syncDir(filepath.Dir(dataDir)); err != nil {
		return res, snapshot.LocalIOError("sync", filepath.Dir(dataDir), err)
	}
	if o.Logger != nil {
		o.Logger.Info("Rolled back the data directory", "dataDir", dataDir, "previousDataDir", prev)
	}
	res.DurationSeconds = time.Since(start).Seconds()
	return res, nil
}
