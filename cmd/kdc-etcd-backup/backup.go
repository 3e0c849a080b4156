package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/snapshot"
)

// runBackup is the backup subcommand: stream an etcd snapshot to S3 (docs/jobs.md).
func runBackup(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	var o snapshot.BackupOptions
	var endpoints, termPath string
	var retention int
	fs.StringVar(&o.Cluster, "cluster", "", "tenant cluster name C; the key is C/C-<ts>.db")
	fs.StringVar(&endpoints, "endpoints", "", "comma-separated etcd client URLs (https://...:2379)")
	fs.StringVar(&o.CACert, "cacert", filepath.Join(v1alpha1.EtcdCertsMountPath, v1alpha1.EtcdCertsCAKey), "etcd CA bundle")
	fs.StringVar(&o.Cert, "cert", filepath.Join(v1alpha1.EtcdCertsMountPath, v1alpha1.EtcdCertsCertKey), "etcd client certificate")
	fs.StringVar(&o.Key, "key", filepath.Join(v1alpha1.EtcdCertsMountPath, v1alpha1.EtcdCertsKeyKey), "etcd client key")
	fs.DurationVar(&o.DialTimeout, "dial-timeout", snapshot.DefaultDialTimeout, "etcd connection timeout")
	fs.IntVar(&retention, "retention-days", 7, "lifecycle expiration of the cluster's prefix in days; 0 leaves lifecycle rules alone")
	fs.Int64Var(&o.MinSize, "min-size", snapshot.DefaultMinSize, "smallest acceptable snapshot in bytes; smaller exits 2 and uploads nothing")
	fs.Int64Var(&o.PartSize, "part-size", snapshot.DefaultPartSize, "multipart part size in bytes (>= 5 MiB)")
	fs.IntVar(&o.Concurrency, "concurrency", snapshot.DefaultConcurrency, "parts uploaded in parallel")
	s3Flags(fs, &o.Location)
	fs.StringVar(&termPath, "termination-message-path", snapshot.DefaultTerminationMessagePath, "where to write the one-line JSON result")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// Memory is the part buffers plus a small rest; a soft limit keeps the garbage collector
		// from letting the heap grow to twice that (docs/benchmarks.md).
		debug.SetMemoryLimit(backupMemoryLimit)
	}
	o.Endpoints = splitList(endpoints)
	o.RetentionDays = int32(retention)
	o.Logger = newLogger(os.Stdout)
	res, err := func() (*snapshot.BackupResult, error) {
		cred, err := snapshot.CredentialsFromEnv()
		if err != nil {
			return nil, err
		}
		o.Credentials = cred
		return snapshot.Backup(ctx, o)
	}()
	return snapshot.Finish(os.Stderr, termPath, res, err, func(f *snapshot.Failure) {
		f.Bucket = o.Location.Bucket
		if res != nil {
			f.Key, f.ObjectKey = res.Key, res.ObjectKey
		}
	})
}

// backupMemoryLimit is the backup process's soft memory limit (GOMEMLIMIT overrides it).
const backupMemoryLimit = 32 << 20

// s3Flags registers the S3 location flags every data-path subcommand shares.
func s3Flags(fs *flag.FlagSet, loc *snapshot.S3Location) {
	fs.StringVar(&loc.Endpoint, "s3-endpoint", "", "S3 endpoint URL (path-style addressing)")
	fs.StringVar(&loc.Bucket, "bucket", "", "bucket of the snapshots")
	fs.StringVar(&loc.Prefix, "prefix", "", "key prefix from destinationPath s3://bucket/prefix")
	fs.StringVar(&loc.Region, "region", snapshot.DefaultRegion, "S3 signing region")
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

// splitList splits a comma-separated flag value, dropping empty elements.
func splitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// newLogger logs progress to w (stdout); stderr is kept for the one-line failure.
func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}
