package main

import (
	"context"
	"flag"
	"os"

	"kube-dc.com/etcd-backup/jobspec"
	"kube-dc.com/etcd-backup/snapshot"
	"kube-dc.com/etcd-backup/snapshot/datadir"
)

// runRestore is the restore subcommand: download, verify, etcdutl-restore into a staging
// directory and swap it into the data directory, keeping one previous generation (docs/jobs.md).
func runRestore(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	var a jobspec.Restore
	a.Bind(fs)
	termPath := bindTerminationPath(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	o := datadir.RestoreOptions{Restore: a, Logger: newLogger(os.Stdout)}
	res, err := func() (*jobspec.Result, error) {
		cred, err := snapshot.CredentialsFromEnv()
		if err != nil {
			return nil, err
		}
		o.Credentials = cred
		return datadir.Restore(ctx, o)
	}()
	return snapshot.Finish(os.Stderr, *termPath, res, err, func(f *snapshot.Failure) {
		f.Key, f.Bucket, f.ObjectKey, f.DataDir = o.Key, o.Location.Bucket, o.Location.ObjectKey(o.Key), o.Member.DataDir
	})
}
