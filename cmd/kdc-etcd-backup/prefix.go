package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/debug"

	"kube-dc.com/etcd-backup/jobspec"
	"kube-dc.com/etcd-backup/snapshot"
	"kube-dc.com/etcd-backup/snapshot/prefix"
)

// The prefix-* subcommands back up and restore one tenant's etcd key prefix on a shared etcd
// (docs/jobs.md, "Prefix mode").

// prefixBackupMemoryLimit is the soft memory limit of prefix-backup and prefix-restore: the
// part buffers plus pages read ahead from etcd; at backup's 32 MiB the collector ran all the
// time (docs/benchmarks.md).
const prefixBackupMemoryLimit = 64 << 20

// etcdOptions are the etcd connection of a prefix subcommand's arguments.
func etcdOptions(e jobspec.PrefixEtcd) prefix.EtcdOptions {
	return prefix.EtcdOptions{Endpoints: e.Endpoints, CACert: e.CACert, Cert: e.Cert, Key: e.KeyFile, DialTimeout: e.DialTimeout}
}

// runPrefixBackup is the prefix-backup subcommand: stream the tenant's prefix to S3.
func runPrefixBackup(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet(string(jobspec.CommandPrefixBackup), flag.ContinueOnError)
	var a jobspec.PrefixBackup
	var termPath string
	a.Bind(fs)
	fs.StringVar(&termPath, "termination-message-path", snapshot.DefaultTerminationMessagePath, "where to write the one-line JSON result")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	o := prefix.BackupOptions{Cluster: a.Cluster, Prefix: a.Etcd.Prefix, Etcd: etcdOptions(a.Etcd), Location: a.Location,
		RetentionDays: int32(a.RetentionDays), MinKeys: a.MinKeys, PartSize: a.PartSize, Concurrency: a.Concurrency}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(prefixBackupMemoryLimit)
	}
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
	fs := flag.NewFlagSet(string(jobspec.CommandPrefixRestore), flag.ContinueOnError)
	var a jobspec.PrefixRestore
	var termPath string
	a.Bind(fs, os.TempDir())
	fs.StringVar(&termPath, "termination-message-path", snapshot.DefaultTerminationMessagePath, "where to write the one-line JSON result")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	undo := a.Undo
	o := prefix.RestoreOptions{Cluster: a.Cluster, Key: a.Key, Prefix: a.Etcd.Prefix, Attempt: a.Attempt, Etcd: etcdOptions(a.Etcd),
		Limits: prefix.Limits{MaxTxnOps: a.MaxTxnOps, MaxRequestBytes: a.MaxRequestBytes}, Location: a.Location,
		PartSize: a.PartSize, Concurrency: a.Concurrency, WorkDir: a.WorkDir}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(prefixBackupMemoryLimit)
	}
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
	fs := flag.NewFlagSet(string(jobspec.CommandPrefixVerify), flag.ContinueOnError)
	var a jobspec.PrefixVerify
	var termPath string
	a.Bind(fs)
	fs.StringVar(&termPath, "termination-message-path", snapshot.DefaultTerminationMessagePath, "where to write the one-line JSON result")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	o := prefix.VerifyOptions{Key: a.Key, Cluster: a.Cluster, Prefix: a.Prefix, Location: a.Location}
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
