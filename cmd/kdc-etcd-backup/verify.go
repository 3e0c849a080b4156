package main

import (
	"context"
	"flag"
	"os"

	"kube-dc.com/etcd-backup/jobspec"
	"kube-dc.com/etcd-backup/snapshot"
)

// runVerify is the verify subcommand: download a snapshot and run every check, touching no data
// directory (docs/jobs.md).
func runVerify(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	var a jobspec.Verify
	a.Bind(fs)
	termPath := bindTerminationPath(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	o := snapshot.VerifyOptions{Key: a.Key, Cluster: a.Cluster, Location: a.Location, Logger: newLogger(os.Stdout)}
	res, err := func() (*jobspec.Result, error) {
		cred, err := snapshot.CredentialsFromEnv()
		if err != nil {
			return nil, err
		}
		o.Credentials = cred
		return snapshot.Verify(ctx, o)
	}()
	return snapshot.Finish(os.Stderr, *termPath, res, err, func(f *snapshot.Failure) {
		f.Key, f.Bucket, f.ObjectKey = o.Key, o.Location.Bucket, o.Location.ObjectKey(o.Key)
	})
}
