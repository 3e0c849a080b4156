package main

import (
	"context"
	"flag"
	"os"

	"kube-dc.com/etcd-backup/jobspec"
	"kube-dc.com/etcd-backup/snapshot"
	"kube-dc.com/etcd-backup/snapshot/datadir"
)

// runSwap is the swap subcommand: swap the restore staged by `restore --swap=false` into the data
// directory, keeping one previous generation (multi-member restores, docs/jobs.md).
func runSwap(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("swap", flag.ContinueOnError)
	var a jobspec.Swap
	a.Bind(fs)
	termPath := bindTerminationPath(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	res, err := datadir.Swap(ctx, datadir.SwapOptions{Swap: a, Logger: newLogger(os.Stdout)})
	return snapshot.Finish(os.Stderr, *termPath, res, err, func(f *snapshot.Failure) {
		f.DataDir = a.DataDir
		if res != nil {
			f.Key, f.Bucket, f.ObjectKey = res.Key, res.Bucket, res.ObjectKey
		}
	})
}
