package main

import (
	"context"
	"flag"
	"os"

	"kube-dc.com/etcd-backup/jobspec"
	"kube-dc.com/etcd-backup/snapshot"
	"kube-dc.com/etcd-backup/snapshot/datadir"
)

// runRollback is the rollback subcommand: swap the kept previous data directory back
// (docs/jobs.md).
func runRollback(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("rollback", flag.ContinueOnError)
	var a jobspec.Rollback
	a.Bind(fs)
	termPath := bindTerminationPath(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	o := datadir.RollbackOptions{DataDir: a.DataDir, IfSwapped: a.IfSwapped, Logger: newLogger(os.Stdout)}
	res, err := datadir.Rollback(ctx, o)
	return snapshot.Finish(os.Stderr, *termPath, res, err, func(f *snapshot.Failure) {
		f.DataDir = o.DataDir
	})
}
