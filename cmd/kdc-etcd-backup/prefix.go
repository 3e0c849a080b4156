package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/snapshot"
	"kube-dc.com/etcd-backup/snapshot/prefix"
)

// The prefix-* subcommands back up and restore one tenant's etcd key prefix on a shared etcd
// (docs/jobs.md, "Prefix mode").

// prefixBackupMemoryLimit is the soft memory limit of prefix-backup and prefix-restore: the
// part buffers plus pages read ahead from etcd; at backup's 32 MiB the collector ran all the
// time (docs/benchmarks.md).
const prefixBackupMemoryLimit = 64 << 20

// prefixEtcdFlags registers the etcd connection flags of prefix-backup and prefix-restore.
func prefixEtcdFlags(fs *flag.FlagSet, o *prefix.EtcdOptions, endpoints *string, etcdPrefix *string) {
	fs.StringVar(etcdPrefix, "etcd-prefix", "", "the tenant kube-apiserver's --etcd-prefix, e.g. /registry or /<Kamaji schema>; the keys under <prefix>/ are the tenant's")
	fs.StringVar(endpoints, "endpoints", "", "comma-separated etcd client URLs (https://...:2379)")
	fs.StringVar(&o.CACert, "cacert", filepath.Join(v1alpha1.EtcdCertsMountPath, v1alpha1.EtcdCertsCAKey), "etcd CA bundle")
	fs.StringVar(&o.Cert, "cert", filepath.Join(v1alpha1.EtcdCertsMountPath, v1alpha1.EtcdCertsCertKey), "etcd client certificate (the tenant's prefix-limited one where it exists)")
	fs.StringVar(&o.Key, "key-file", filepath.Join(v1alpha1.EtcdCertsMountPath, v1alpha1.EtcdCertsKeyKey), "etcd client key")
	fs.DurationVar(&o.DialTimeout, "dial-timeout", snapshot.DefaultDialTimeout, "etcd connection timeout")
}

// runPrefixBackup is the prefix-backup subcommand: stream the tenant's prefix to S3.
func runPrefixBackup(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("prefix-backup", flag.ContinueOnError)
	var o prefix.BackupOptions
	var endpoints, termPath string
	var retention int
	fs.StringVar(&o.Cluster, "cluster", "", "tenant cluster name C; the key is C/C-<ts>.db")
	prefixEtcdFlags(fs, &o.Etcd, &endpoints, &o.Prefix)
	fs.IntVar(&retention, "retention-days", 7, "lifecycle expiration of the cluster's prefix in days; 0 leaves lifecycle rules alone")
	fs.IntVar(&o.MinKeys, "min-keys", prefix.DefaultMinKeys, "fewest keys accepted; fewer exits 2 and uploads nothing")
	fs.Int64Var(&o.PartSize, "part-size", snapshot.DefaultPartSize, "multipart part size in bytes (>= 5 MiB)")
	fs.IntVar(&o.Concurrency, "concurrency", snapshot.DefaultConcurrency, "parts uploaded in parallel")
	o.Location.Bind(fs)
	fs.StringVar(&termPath, "termination-message-path", snapshot.DefaultTerminationMessagePath, "where to write the one-line JSON result")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(prefixBackupMemoryLimit)
	}
	o.Etcd.Endpoints = splitList(endpoints)
	o.RetentionDays = int32(retention)
	o.Logger = newLogger(os.Stdout)
	res, err := func() (*prefix.BackupResult, error) {
		cred, err := snapshot.CredentialsFromEnv()
		if err != nil {
			return nil, err
		}
		o.Credentials = cred
		return prefix.Backup(ctx, o)
	}()
	return finishResult(termPath, res, err, func(f *snapshot.Failure) {
		f.Bucket = o.Location.Bucket
		if res != nil {
			f.Key, f.ObjectKey = res.Key, res.ObjectKey
		}
	})
}

// runPrefixRestore is the prefix-restore subcommand: converge the tenant's prefix to a prefix
// snapshot, or back to the pre-restore copy with --undo.
func runPrefixRestore(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("prefix-restore", flag.ContinueOnError)
	var o prefix.RestoreOptions
	var endpoints, termPath string
	var undo bool
	fs.StringVar(&o.Cluster, "cluster", "", "tenant cluster name C")
	fs.StringVar(&o.Key, "key", "", "prefix snapshot key C/C-<ts>.db (without the prefix)")
	fs.StringVar(&o.Attempt, "attempt", "", "names this restore request, the same on every re-run of it; the pre-restore copy is C/pre-restore/<attempt>.db")
	fs.BoolVar(&undo, "undo", false, "converge the prefix back to the attempt's pre-restore copy instead")
	prefixEtcdFlags(fs, &o.Etcd, &endpoints, &o.Prefix)
	fs.IntVar(&o.Limits.MaxTxnOps, "max-txn-ops", prefix.DefaultMaxTxnOps, "etcd's --max-txn-ops: operations per transaction")
	fs.IntVar(&o.Limits.MaxRequestBytes, "max-request-bytes", prefix.DefaultMaxRequestBytes, "etcd's --max-request-bytes")
	fs.StringVar(&o.WorkDir, "work-dir", os.TempDir(), "directory holding the downloaded snapshot while it is applied (needs its size free)")
	fs.Int64Var(&o.PartSize, "part-size", snapshot.DefaultPartSize, "multipart part size of the pre-restore copy (>= 5 MiB)")
	fs.IntVar(&o.Concurrency, "concurrency", snapshot.DefaultConcurrency, "parts of the pre-restore copy uploaded in parallel")
	o.Location.Bind(fs)
	fs.StringVar(&termPath, "termination-message-path", snapshot.DefaultTerminationMessagePath, "where to write the one-line JSON result")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(prefixBackupMemoryLimit)
	}
	o.Etcd.Endpoints = splitList(endpoints)
	o.Logger = newLogger(os.Stdout)
	res, err := func() (*prefix.RestoreResult, error) {
		cred, err := snapshot.CredentialsFromEnv()
		if err != nil {
			return nil, err
		}
		o.Credentials = cred
		if undo {
			return prefix.Undo(ctx, o)
		}
		return prefix.Restore(ctx, o)
	}()
	if err == nil {
		return finishResult(termPath, res, nil, nil)
	}
	f := prefix.NewRestoreFailure(err, res)
	fmt.Fprintln(os.Stderr, f.Error)
	if werr := snapshot.WriteTerminationMessage(termPath, f); werr != nil {
		fmt.Fprintf(os.Stderr, "warning: failed to write the termination message to %s: %v\n", termPath, werr)
	}
	return f.ExitCode
}

// runPrefixVerify is the prefix-verify subcommand: download a prefix snapshot and check it.
func runPrefixVerify(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("prefix-verify", flag.ContinueOnError)
	var o prefix.VerifyOptions
	var termPath string
	fs.StringVar(&o.Key, "key", "", "prefix snapshot key C/C-<ts>.db (without the prefix), or a pre-restore copy C/pre-restore/<attempt>.db")
	fs.StringVar(&o.Cluster, "cluster", "", "when set, the snapshot must be this cluster's")
	fs.StringVar(&o.Prefix, "etcd-prefix", "", "when set, the snapshot must hold this prefix")
	o.Location.Bind(fs)
	fs.StringVar(&termPath, "termination-message-path", snapshot.DefaultTerminationMessagePath, "where to write the one-line JSON result")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	o.Logger = newLogger(os.Stdout)
	res, err := func() (*prefix.VerifyResult, error) {
		cred, err := snapshot.CredentialsFromEnv()
		if err != nil {
			return nil, err
		}
		o.Credentials = cred
		return prefix.Verify(ctx, o)
	}()
	return finishResult(termPath, res, err, func(f *snapshot.Failure) {
		f.Key, f.Bucket, f.ObjectKey = o.Key, o.Location.Bucket, o.Location.ObjectKey(o.Key)
	})
}

// runPrefixInspect is the prefix-inspect subcommand: print a prefix snapshot's header, keys and
// trailer, from S3 (--key) or a local file (--file), checking all of it.
func runPrefixInspect(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("prefix-inspect", flag.ContinueOnError)
	var loc snapshot.S3Location
	var key, file string
	var io prefix.InspectOptions
	fs.StringVar(&key, "key", "", "object key to read from S3 (C/C-<ts>.db or C/pre-restore/<attempt>.db)")
	fs.StringVar(&file, "file", "", "a local prefix snapshot file to read instead")
	fs.BoolVar(&io.Values, "values", false, "print every value too")
	loc.Bind(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	err := func() error {
		if (key == "") == (file == "") {
			return &snapshot.Error{Code: snapshot.ExitUsage, Msg: "give exactly one of --key and --file"}
		}
		if file != "" {
			f, err := os.Open(file)
			if err != nil {
				return &snapshot.Error{Code: snapshot.ExitLocalIO, Msg: err.Error(), Err: err}
			}
			defer f.Close()
			if err := prefix.Inspect(f, os.Stdout, io); err != nil {
				return &snapshot.Error{Code: snapshot.ExitIntegrity, Msg: fmt.Sprintf("%s: %v", file, err), Err: err}
			}
			return nil
		}
		cred, err := snapshot.CredentialsFromEnv()
		if err != nil {
			return err
		}
		return prefix.InspectObject(ctx, loc, cred, key, os.Stdout, io)
	}()
	return snapshot.Finish(os.Stderr, "", nil, err, nil)
}

// finishResult writes a prefix subcommand's result, or its failure, as its termination message.
func finishResult[R any](termPath string, res *R, err error, fill func(*snapshot.Failure)) int {
	if err != nil {
		return snapshot.Finish(os.Stderr, termPath, nil, err, fill)
	}
	if werr := snapshot.WriteTerminationMessage(termPath, res); werr != nil {
		fmt.Fprintf(os.Stderr, "warning: failed to write the termination message to %s: %v\n", termPath, werr)
	}
	return int(snapshot.ExitSucceeded)
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
