package main

import (
	"context"
	"flag"
	"os"

	"kube-dc.com/etcd-backup/snapshot"
)

// runVerify is the verify subcommand: download a snapshot and run every check, touching no data
// directory (docs/jobs.md).
func runVerify(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	var o snapshot.VerifyOptions
	var termPath string
	fs.StringVar(&o.Key, "key", "", "snapshot key C/C-<ts>.db (without the prefix)")
	fs.StringVar(&o.Cluster, "cluster", "", "when set, the key must belong to this cluster")
	s3Flags(fs, &o.Location)
	fs.StringVar(&termPath, "termination-message-path", snapshot.DefaultTerminationMessagePath, "where to write the one-line JSON result")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	o.Logger = newLogger(os.Stdout)
	res, err := func() (*snapshot.VerifyResult, error) {
		cred, err := snapshot.CredentialsFromEnv()
		if err != nil {
			return nil, err
		}
		o.Credentials = cred
		return snapshot.Verify(ctx, o)
	}()
	return snapshot.Finish(os.Stderr, termPath, res, err, func(f *snapshot.Failure) {
		f.Key, f.Bucket, f.ObjectKey = o.Key, o.Location.Bucket, o.Location.ObjectKey(o.Key)
	})
}
