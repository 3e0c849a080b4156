package main

import (
	"context"
	"flag"
	"os"

	"kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/snapshot"
)

// runRestore is the restore subcommand: download, verify, etcdutl-restore into a staging
// directory and swap it into the data directory, keeping one previous generation (docs/jobs.md).
func runRestore(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	var o snapshot.RestoreOptions
	var peerURLs, termPath string
	fs.StringVar(&o.Key, "key", "", "snapshot key C/C-<ts>.db (without the prefix)")
	fs.StringVar(&o.Cluster, "cluster", "", "when set, the key must belong to this cluster")
	fs.StringVar(&o.DataDir, "data-dir", v1alpha1.EtcdDataDir, "etcd data directory")
	fs.StringVar(&o.Name, "name", snapshot.DefaultMemberName, "etcd member name")
	fs.StringVar(&o.InitialCluster, "initial-cluster", "", "etcd --initial-cluster (default <name>=<first peer URL>)")
	fs.StringVar(&peerURLs, "initial-advertise-peer-urls", snapshot.DefaultPeerURL, "comma-separated peer URLs")
	fs.StringVar(&o.InitialClusterToken, "initial-cluster-token", snapshot.DefaultClusterToken, "etcd --initial-cluster-token")
	fs.Uint64Var(&o.BumpRevision, "bump-revision", snapshot.DefaultBumpRevision, "the margin the restored revision gets above the snapshot's and above the highest revision known before the restore (the replaced data's, its previous generation's, the newest backup's, --min-revision); 0 disables (with --mark-compacted=false)")
	fs.Int64Var(&o.MinRevision, "min-revision", 0, "a revision the tenant's clients may have seen that the restore must also move past")
	fs.BoolVar(&o.MarkCompacted, "mark-compacted", true, "mark the bumped revision compacted so watchers re-list")
	fs.StringVar(&o.TargetVersion, "target-version", "", "etcd version that will run on the data (X.Y or vX.Y.Z, e.g. the datastore's spec.etcd.version); the storage schema is migrated to it")
	s3Flags(fs, &o.Location)
	fs.StringVar(&termPath, "termination-message-path", snapshot.DefaultTerminationMessagePath, "where to write the one-line JSON result")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	o.PeerURLs = splitList(peerURLs)
	o.Logger = newLogger(os.Stdout)
	res, err := func() (*snapshot.RestoreResult, error) {
		cred, err := snapshot.CredentialsFromEnv()
		if err != nil {
			return nil, err
		}
		o.Credentials = cred
		return snapshot.Restore(ctx, o)
	}()
	return snapshot.Finish(os.Stderr, termPath, res, err, func(f *snapshot.Failure) {
		f.Key, f.Bucket, f.ObjectKey, f.DataDir = o.Key, o.Location.Bucket, o.Location.ObjectKey(o.Key), o.DataDir
	})
}
