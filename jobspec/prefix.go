package jobspec

import (
	"flag"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"kube-dc.com/etcd-backup/api/v1alpha1"
)

// The subcommands of prefix mode: one tenant's etcd key prefix on a shared datastore
// (docs/jobs.md, "Prefix mode").
const (
	CommandPrefixBackup  Command = "prefix-backup"
	CommandPrefixRestore Command = "prefix-restore"
	CommandPrefixVerify  Command = "prefix-verify"
)

// Defaults of the prefix subcommands' flags.
const (
	// DefaultMinKeys is the fewest keys a prefix backup accepts.
	DefaultMinKeys = 1
	// DefaultMaxTxnOps and DefaultMaxRequestBytes are etcd's --max-txn-ops and
	// --max-request-bytes defaults, the bounds of a prefix restore's transactions.
	DefaultMaxTxnOps       = 128
	DefaultMaxRequestBytes = 1572864
	// PrefixWorkDir is where a prefix-restore Job mounts the room for the downloaded snapshot.
	PrefixWorkDir = "/work"
)

// PrefixEtcd is how a prefix subcommand reaches etcd: the tenant's prefix, the endpoints and the
// client TLS files (the tenant's own prefix-limited certificate where one exists).
type PrefixEtcd struct {
	Prefix                string
	Endpoints             []string
	CACert, Cert, KeyFile string
	DialTimeout           time.Duration
}

func (e PrefixEtcd) args() []string {
	args := []string{"--etcd-prefix=" + e.Prefix, "--endpoints=" + strings.Join(e.Endpoints, ",")}
	args = appendSet(args, "cacert", e.CACert)
	args = appendSet(args, "cert", e.Cert)
	args = appendSet(args, "key-file", e.KeyFile)
	if e.DialTimeout != 0 {
		args = append(args, "--dial-timeout="+e.DialTimeout.String())
	}
	return args
}

func (e *PrefixEtcd) bind(fs *flag.FlagSet) {
	fs.StringVar(&e.Prefix, "etcd-prefix", "", "the tenant kube-apiserver's --etcd-prefix, e.g. /registry or /<Kamaji schema>; the keys under <prefix>/ are the tenant's")
	fs.Var(listValue{&e.Endpoints}, "endpoints", "comma-separated etcd client URLs (https://...:2379)")
	fs.StringVar(&e.CACert, "cacert", filepath.Join(v1alpha1.EtcdCertsMountPath, v1alpha1.EtcdCertsCAKey), "etcd CA bundle")
	fs.StringVar(&e.Cert, "cert", filepath.Join(v1alpha1.EtcdCertsMountPath, v1alpha1.EtcdCertsCertKey), "etcd client certificate (the tenant's prefix-limited one where it exists)")
	fs.StringVar(&e.KeyFile, "key-file", filepath.Join(v1alpha1.EtcdCertsMountPath, v1alpha1.EtcdCertsKeyKey), "etcd client key")
	fs.DurationVar(&e.DialTimeout, "dial-timeout", DefaultDialTimeout, "etcd connection timeout")
}

// PrefixBackup are the arguments of `kdc-etcd-backup prefix-backup`.
type PrefixBackup struct {
	Cluster       string
	Etcd          PrefixEtcd
	RetentionDays int
	MinKeys       int
	PartSize      int64
	Concurrency   int
	Location      S3Location
}

// Args are the container args of a prefix backup Job.
func (b PrefixBackup) Args() []string {
	args := append([]string{string(CommandPrefixBackup), "--cluster=" + b.Cluster}, b.Etcd.args()...)
	args = append(args, b.Location.Args()...)
	if b.RetentionDays > 0 {
		args = append(args, "--retention-days="+strconv.Itoa(b.RetentionDays))
	}
	if b.MinKeys != 0 {
		args = append(args, "--min-keys="+strconv.Itoa(b.MinKeys))
	}
	return uploadArgs(args, b.PartSize, b.Concurrency)
}

// Bind registers the prefix-backup flags on fs.
func (b *PrefixBackup) Bind(fs *flag.FlagSet) {
	fs.StringVar(&b.Cluster, "cluster", "", "tenant cluster name C; the key is C/C-<ts>.db")
	b.Etcd.bind(fs)
	fs.IntVar(&b.RetentionDays, "retention-days", DefaultRetentionDays, "lifecycle expiration of the cluster's prefix in days; 0 leaves lifecycle rules alone")
	fs.IntVar(&b.MinKeys, "min-keys", DefaultMinKeys, "fewest keys accepted; fewer exits 2 and uploads nothing")
	bindUpload(fs, &b.PartSize, &b.Concurrency)
	b.Location.Bind(fs)
}

// PrefixRestore are the arguments of `kdc-etcd-backup prefix-restore`.
type PrefixRestore struct {
	Cluster string
	Key     string
	// Attempt names the restore request, the same on every re-run; the pre-restore copy is
	// C/pre-restore/<attempt>.db.
	Attempt string
	// Undo converges the prefix back to the attempt's pre-restore copy.
	Undo            bool
	Etcd            PrefixEtcd
	MaxTxnOps       int
	MaxRequestBytes int
	WorkDir         string
	PartSize        int64
	Concurrency     int
	Location        S3Location
}

// Args are the container args of a prefix restore (or undo) Job.
func (r PrefixRestore) Args() []string {
	args := []string{string(CommandPrefixRestore), "--cluster=" + r.Cluster, "--key=" + r.Key, "--attempt=" + r.Attempt}
	if r.Undo {
		args = append(args, "--undo")
	}
	args = append(args, r.Etcd.args()...)
	if r.MaxTxnOps != 0 {
		args = append(args, "--max-txn-ops="+strconv.Itoa(r.MaxTxnOps))
	}
	if r.MaxRequestBytes != 0 {
		args = append(args, "--max-request-bytes="+strconv.Itoa(r.MaxRequestBytes))
	}
	args = appendSet(args, "work-dir", r.WorkDir)
	return append(uploadArgs(args, r.PartSize, r.Concurrency), r.Location.Args()...)
}

// Bind registers the prefix-restore flags on fs; workDir is the default of --work-dir.
func (r *PrefixRestore) Bind(fs *flag.FlagSet, workDir string) {
	fs.StringVar(&r.Cluster, "cluster", "", "tenant cluster name C")
	fs.StringVar(&r.Key, "key", "", "prefix snapshot key C/C-<ts>.db (without the prefix)")
	fs.StringVar(&r.Attempt, "attempt", "", "names this restore request, the same on every re-run of it; the pre-restore copy is C/pre-restore/<attempt>.db")
	fs.BoolVar(&r.Undo, "undo", false, "converge the prefix back to the attempt's pre-restore copy instead")
	r.Etcd.bind(fs)
	fs.IntVar(&r.MaxTxnOps, "max-txn-ops", DefaultMaxTxnOps, "etcd's --max-txn-ops: operations per transaction")
	fs.IntVar(&r.MaxRequestBytes, "max-request-bytes", DefaultMaxRequestBytes, "etcd's --max-request-bytes")
	fs.StringVar(&r.WorkDir, "work-dir", workDir, "directory holding the downloaded snapshot while it is applied (needs its size free)")
	fs.Int64Var(&r.PartSize, "part-size", DefaultPartSize, "multipart part size of the pre-restore copy (>= 5 MiB)")
	fs.IntVar(&r.Concurrency, "concurrency", DefaultConcurrency, "parts of the pre-restore copy uploaded in parallel")
	r.Location.Bind(fs)
}

// PrefixVerify are the arguments of `kdc-etcd-backup prefix-verify`.
type PrefixVerify struct {
	Key, Cluster, Prefix string
	Location             S3Location
}

// Args are the container args of a prefix verify Job.
func (v PrefixVerify) Args() []string {
	args := []string{string(CommandPrefixVerify), "--key=" + v.Key}
	args = appendSet(args, "cluster", v.Cluster)
	args = appendSet(args, "etcd-prefix", v.Prefix)
	return append(args, v.Location.Args()...)
}

// Bind registers the prefix-verify flags on fs.
func (v *PrefixVerify) Bind(fs *flag.FlagSet) {
	fs.StringVar(&v.Key, "key", "", "prefix snapshot key C/C-<ts>.db (without the prefix), or a pre-restore copy C/pre-restore/<attempt>.db")
	fs.StringVar(&v.Cluster, "cluster", "", "when set, the snapshot must be this cluster's")
	fs.StringVar(&v.Prefix, "etcd-prefix", "", "when set, the snapshot must hold this prefix")
	v.Location.Bind(fs)
}
