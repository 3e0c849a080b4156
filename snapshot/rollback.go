package snapshot

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"
)

// RollbackOptions configure Rollback.
type RollbackOptions struct {
	// DataDir is etcd's data directory; its previous generation is DataDir + ".previous".
	DataDir string
	Logger  *slog.Logger
}

// RollbackResult is rollback's termination message.
type RollbackResult struct {
	DataDir         string  `json:"dataDir"`
	PreviousDataDir string  `json:"previousDataDir"`
	DurationSeconds float64 `json:"durationSeconds"`
}

// Rollback swaps the kept previous generation back into DataDir, atomically. The data it
// replaces becomes the previous generation, so a second Rollback undoes the first. etcd must be
// stopped.
func Rollback(_ context.Context, o RollbackOptions) (*RollbackResult, error) {
	start := time.Now()
	if o.DataDir == "" {
		return nil, errorf(ExitUsage, "--data-dir is required")
	}
	dataDir := filepath.Clean(o.DataDir)
	prev := PreviousDataDir(dataDir)
	res := &RollbackResult{DataDir: dataDir, PreviousDataDir: prev}
	ok, err := exists(prev)
	if err != nil {
		return res, localIOError("read", prev, err)
	}
	if !ok {
		return res, errorf(ExitNoPreviousGeneration, "there is no previous data directory %s to roll back to; the data directory %s is unchanged", prev, dataDir)
	}
	cur, err := exists(dataDir)
	if err != nil {
		return res, localIOError("read", dataDir, err)
	}
	if cur {
		err = exchange(prev, dataDir)
	} else {
		err = renameNoReplace(prev, dataDir)
	}
	if err != nil {
		return res, localIOError("swap "+prev+" into", dataDir, err)
	}
	if err := syncDir(filepath.Dir(dataDir)); err != nil {
		return res, localIOError("sync", filepath.Dir(dataDir), err)
	}
	if o.Logger != nil {
		o.Logger.Info("Rolled back the data directory", "dataDir", dataDir, "previousDataDir", prev)
	}
	res.DurationSeconds = time.Since(start).Seconds()
	return res, nil
}
