package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"

	"kube-dc.com/etcd-backup/jobspec"
	"kube-dc.com/etcd-backup/snapshot"
)

// runBackup is the backup subcommand: stream an etcd snapshot to S3 (docs/jobs.md).
func runBackup(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	var a jobspec.Backup
	a.Bind(fs)
	termPath := bindTerminationPath(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// Memory is the part buffers plus a small rest; a soft limit keeps the garbage collector
		// from letting the heap grow to twice that (docs/benchmarks.md).
		debug.SetMemoryLimit(backupMemoryLimit)
	}
	o := snapshot.BackupOptions{
		Cluster: a.Cluster, Endpoints: a.Endpoints, CACert: a.CACert, Cert: a.Cert, Key: a.Key, DialTimeout: a.DialTimeout,
		Location: a.Location, RetentionDays: int32(a.RetentionDays), MinSize: a.MinSize, PartSize: a.PartSize, Concurrency: a.Concurrency,
		Logger: newLogger(os.Stdout),
	}
	res, err := func() (*jobspec.Result, error) {
		cred, err := snapshot.CredentialsFromEnv()
		if err != nil {
			return nil, err
		}
		o.Credentials = cred
		return snapshot.Backup(ctx, o)
	}()
	return snapshot.Finish(os.Stderr, *termPath, res, err, func(f *snapshot.Failure) {
		f.Bucket = o.Location.Bucket
		if res != nil {
			f.Key, f.ObjectKey = res.Key, res.ObjectKey
		}
	})
}

// backupMemoryLimit is the backup process's soft memory limit (GOMEMLIMIT overrides it).
const backupMemoryLimit = 32 << 20

// bindTerminationPath registers --termination-message-path, which every subcommand has.
func bindTerminationPath(fs *flag.FlagSet) *string {
	return fs.String("termination-message-path", snapshot.DefaultTerminationMessagePath, "where to write the one-line JSON result")
}

// parseFlags parses args; done is true when the caller must return code (help or a usage error).
func parseFlags(fs *flag.FlagSet, args []string) (code int, done bool) {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case err == flag.ErrHelp:
		fs.SetOutput(os.Stdout)
		fmt.Fprintf(os.Stdout, "Usage of %s (see docs/jobs.md):\n", fs.Name())
		fs.PrintDefaults()
		return int(snapshot.ExitSucceeded), true
	case err != nil:
		fmt.Fprintf(os.Stderr, "%s: %v; run with -h for the flags\n", fs.Name(), err)
		return int(snapshot.ExitUsage), true
	case fs.NArg() > 0:
		fmt.Fprintf(os.Stderr, "%s: unexpected arguments %q; run with -h for the flags\n", fs.Name(), fs.Args())
		return int(snapshot.ExitUsage), true
	}
	return 0, false
}

// newLogger logs progress to w (stdout); stderr is kept for the one-line failure.
func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}
