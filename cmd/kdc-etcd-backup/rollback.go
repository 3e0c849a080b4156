package main

import (
	"context"
	"flag"
	"os"

	"kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/snapshot"
)

// runRollback is the rollback subcommand: swap the kept previous data directory back
// (docs/jobs.md).
func runRollback(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("rollback", flag.ContinueOnError)
	var o snapshot.RollbackOptions
	var termPath string
	fs.StringVar(&o.DataDir, "data-dir", v1alpha1.EtcdDataDir, "etcd data directory")
	fs.StringVar(&termPath, "termination-message-path", snapshot.DefaultTerminationMessagePath, "where to write the one-line JSON result")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	o.Logger = newLogger(os.Stdout)
	res, err := snapshot.Rollback(ctx, o)
	return snapshot.Finish(os.Stderr, termPath, res, err, func(f *snapshot.Failure) {
		f.DataDir = o.DataDir
	})
}
