package jobspec

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"kube-dc.com/etcd-backup/api/v1alpha1"
)

// Defaults of the subcommands' flags.
const (
	DefaultRetentionDays = 7
	// DefaultMinSize is below an empty etcd 3.5+ database, so only a failed read is refused.
	DefaultMinSize  = 16 << 10
	DefaultPartSize = 5 << 20
	// DefaultConcurrency keeps two parts in flight while the third is read (docs/benchmarks.md).
	DefaultConcurrency = 2
	DefaultDialTimeout = 10 * time.Second
	// DefaultBumpRevision is the margin of the restored revision above every revision known
	// before the restore, so clients never see the revision go backwards (docs/restore.md).
	DefaultBumpRevision = 1_000_000_000
	// DefaultTerminationMessagePath is Kubernetes' default terminationMessagePath.
	DefaultTerminationMessagePath = "/dev/termination-log"
)

// Backup are the arguments of `kdc-etcd-backup backup`. Args leaves out the fields left empty, so
// the subcommand's defaults apply.
type Backup struct {
	// Cluster is the tenant cluster C; the key is C/C-<ts>.db.
	Cluster string
	// Endpoints are etcd client URLs; the first that answers is used.
	Endpoints []string
	// CACert, Cert and Key are the client TLS files of the DS-etcd-certs Secret.
	CACert, Cert, Key string
	DialTimeout       time.Duration
	// RetentionDays of the lifecycle rule; parsed, 0 leaves lifecycle alone.
	RetentionDays int
	MinSize       int64
	PartSize      int64
	Concurrency   int
	Location      S3Location
}

// Args are the container args of a backup Job.
func (b Backup) Args() []string {
	args := []string{string(CommandBackup), "--cluster=" + b.Cluster, "--endpoints=" + strings.Join(b.Endpoints, ",")}
	args = append(args, b.Location.Args()...)
	if b.RetentionDays > 0 {
		args = append(args, "--retention-days="+strconv.Itoa(b.RetentionDays))
	}
	args = appendSet(args, "cacert", b.CACert)
	args = appendSet(args, "cert", b.Cert)
	args = appendSet(args, "key", b.Key)
	if b.DialTimeout != 0 {
		args = append(args, "--dial-timeout="+b.DialTimeout.String())
	}
	if b.MinSize != 0 {
		args = append(args, "--min-size="+strconv.FormatInt(b.MinSize, 10))
	}
	return uploadArgs(args, b.PartSize, b.Concurrency)
}

// uploadArgs appends the multipart upload's flags that are set.
func uploadArgs(args []string, partSize int64, concurrency int) []string {
	if partSize != 0 {
		args = append(args, "--part-size="+strconv.FormatInt(partSize, 10))
	}
	if concurrency != 0 {
		args = append(args, "--concurrency="+strconv.Itoa(concurrency))
	}
	return args
}

// bindUpload registers the multipart upload's flags.
func bindUpload(fs *flag.FlagSet, partSize *int64, concurrency *int) {
	fs.Int64Var(partSize, "part-size", DefaultPartSize, "multipart part size in bytes (>= 5 MiB)")
	fs.IntVar(concurrency, "concurrency", DefaultConcurrency, "parts uploaded in parallel")
}

// Bind registers the backup flags on fs.
func (b *Backup) Bind(fs *flag.FlagSet) {
	fs.StringVar(&b.Cluster, "cluster", "", "tenant cluster name C; the key is C/C-<ts>.db")
	fs.Var(listValue{&b.Endpoints}, "endpoints", "comma-separated etcd client URLs (https://...:2379)")
	fs.StringVar(&b.CACert, "cacert", filepath.Join(v1alpha1.EtcdCertsMountPath, v1alpha1.EtcdCertsCAKey), "etcd CA bundle")
	fs.StringVar(&b.Cert, "cert", filepath.Join(v1alpha1.EtcdCertsMountPath, v1alpha1.EtcdCertsCertKey), "etcd client certificate")
	fs.StringVar(&b.Key, "key", filepath.Join(v1alpha1.EtcdCertsMountPath, v1alpha1.EtcdCertsKeyKey), "etcd client key")
	fs.DurationVar(&b.DialTimeout, "dial-timeout", DefaultDialTimeout, "etcd connection timeout")
	fs.IntVar(&b.RetentionDays, "retention-days", DefaultRetentionDays, "lifecycle expiration of the cluster's prefix in days; 0 leaves lifecycle rules alone")
	fs.Int64Var(&b.MinSize, "min-size", DefaultMinSize, "smallest acceptable snapshot in bytes; smaller exits 2 and uploads nothing")
	bindUpload(fs, &b.PartSize, &b.Concurrency)
	b.Location.Bind(fs)
}

// Verify are the arguments of `kdc-etcd-backup verify`.
type Verify struct {
	// Key is the snapshot key C/C-<ts>.db, without the location's prefix.
	Key string
	// Cluster, when set, must own Key.
	Cluster  string
	Location S3Location
}

// Args are the container args of a verify Job.
func (v Verify) Args() []string {
	args := []string{string(CommandVerify), "--key=" + v.Key}
	args = appendSet(args, "cluster", v.Cluster)
	return append(args, v.Location.Args()...)
}

// Bind registers the verify flags on fs.
func (v *Verify) Bind(fs *flag.FlagSet) {
	bindKey(fs, &v.Key, &v.Cluster)
	v.Location.Bind(fs)
}

// Restore are the arguments of `kdc-etcd-backup restore`.
type Restore struct {
	// Key is the snapshot key C/C-<ts>.db, without the location's prefix.
	Key string
	// Cluster, when set, must own Key.
	Cluster string
	Member  Member
	// BumpRevision is the margin above every known revision; 0 (with MarkCompacted false) asks
	// for no bump.
	BumpRevision  uint64
	MarkCompacted bool
	// MinRevision is a revision the tenant's clients may have seen, besides those the restore
	// reads itself; 0 is none.
	MinRevision int64
	// TargetVersion is the etcd version (X.Y or vX.Y.Z) that will run on the data.
	TargetVersion string
	Location      S3Location
	// StageOnly (--swap=false) stops after staging the restore in <data-dir>.staged for `swap`
	// (multi-member restores, docs/restore.md).
	StageOnly bool
	// RestoredRevision pins the restored revision exactly (0: the rule decides), so every member
	// of a multi-member restore gets the same one.
	RestoredRevision int64
}

// Args are the container args of a restore Job: the member, the revision bump and
// mark-compacted are always written out.
func (r Restore) Args() []string {
	args := []string{string(CommandRestore), "--key=" + r.Key}
	args = appendSet(args, "cluster", r.Cluster)
	args = append(args,
		"--data-dir="+r.Member.DataDir,
		"--name="+r.Member.Name,
		"--initial-cluster="+r.Member.InitialCluster,
		"--initial-advertise-peer-urls="+strings.Join(r.Member.PeerURLs, ","),
		"--initial-cluster-token="+r.Member.ClusterToken,
		"--bump-revision="+strconv.FormatUint(r.BumpRevision, 10),
		"--mark-compacted="+strconv.FormatBool(r.MarkCompacted),
	)
	if r.MinRevision != 0 {
		args = append(args, "--min-revision="+strconv.FormatInt(r.MinRevision, 10))
	}
	args = appendSet(args, "target-version", r.TargetVersion)
	args = append(args, r.stageArgs()...)
	return append(args, r.Location.Args()...)
}

// Bind registers the restore flags on fs.
func (r *Restore) Bind(fs *flag.FlagSet) {
	bindKey(fs, &r.Key, &r.Cluster)
	fs.StringVar(&r.Member.DataDir, "data-dir", v1alpha1.EtcdDataDir, "etcd data directory")
	fs.StringVar(&r.Member.Name, "name", DefaultMemberName, "etcd member name")
	fs.StringVar(&r.Member.InitialCluster, "initial-cluster", "", "etcd --initial-cluster (default <name>=<first peer URL>)")
	r.Member.PeerURLs = []string{DefaultPeerURL}
	fs.Var(listValue{&r.Member.PeerURLs}, "initial-advertise-peer-urls", "comma-separated peer URLs")
	fs.StringVar(&r.Member.ClusterToken, "initial-cluster-token", DefaultClusterToken, "etcd --initial-cluster-token")
	fs.Uint64Var(&r.BumpRevision, "bump-revision", DefaultBumpRevision, "the margin the restored revision gets above the snapshot's and above the highest revision known before the restore (the replaced data's, its previous generation's, the newest backup's, --min-revision); 0 disables (with --mark-compacted=false)")
	fs.Int64Var(&r.MinRevision, "min-revision", 0, "a revision the tenant's clients may have seen that the restore must also move past")
	fs.BoolVar(&r.MarkCompacted, "mark-compacted", true, "mark the bumped revision compacted so watchers re-list")
	fs.StringVar(&r.TargetVersion, "target-version", "", "etcd version that will run on the data (X.Y or vX.Y.Z, e.g. the datastore's spec.etcd.version); the storage schema is migrated to it")
	r.bindStage(fs)
	r.Location.Bind(fs)
}

// Rollback are the arguments of `kdc-etcd-backup rollback`.
type Rollback struct {
	// DataDir is etcd's data directory; its previous generation is DataDir + ".previous".
	DataDir string
	// IfSwapped rolls back only what `swap` swapped in, and changes nothing else (multi-member).
	IfSwapped bool
}

// Args are the container args of a rollback Job.
func (r Rollback) Args() []string {
	args := []string{string(CommandRollback), "--data-dir=" + r.DataDir}
	if r.IfSwapped {
		args = append(args, "--if-swapped")
	}
	return args
}

// Bind registers the rollback flags on fs.
func (r *Rollback) Bind(fs *flag.FlagSet) {
	fs.StringVar(&r.DataDir, "data-dir", v1alpha1.EtcdDataDir, "etcd data directory")
	fs.BoolVar(&r.IfSwapped, "if-swapped", false, "roll back only a restore that `swap` swapped in (discarding one staged but never swapped); without one, change nothing and exit 0")
}

// bindKey registers --key and --cluster of verify and restore.
func bindKey(fs *flag.FlagSet, key, cluster *string) {
	fs.StringVar(key, "key", "", "snapshot key C/C-<ts>.db (without the prefix)")
	fs.StringVar(cluster, "cluster", "", "when set, the key must belong to this cluster")
}

// appendSet appends --name=value when value is set.
func appendSet(args []string, name, value string) []string {
	if value == "" {
		return args
	}
	return append(args, "--"+name+"="+value)
}

// listValue is a comma-separated flag; empty elements are dropped.
type listValue struct{ dst *[]string }

func (v listValue) String() string {
	if v.dst == nil {
		return ""
	}
	return strings.Join(*v.dst, ",")
}

func (v listValue) Set(s string) error {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	*v.dst = out
	return nil
}

// ParseBackup reads the arguments of a backup container (`backup --cluster=... ...`) back into
// their Backup, as the subcommand itself would.
func ParseBackup(args []string) (Backup, error) {
	var b Backup
	if len(args) == 0 || args[0] != string(CommandBackup) {
		return b, fmt.Errorf("not the arguments of %s: %q", CommandBackup, args)
	}
	fs := flag.NewFlagSet(string(CommandBackup), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	b.Bind(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return Backup{}, fmt.Errorf("arguments of %s: %w", CommandBackup, err)
	}
	return b, nil
}
