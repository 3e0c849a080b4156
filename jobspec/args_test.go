package jobspec

import (
	"flag"
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const tKey = "prod/prod-20260301T020000Z.db"

var tMember = Member{Name: "ds-etcd-0", PeerURLs: []string{"https://ds-etcd-0.ds-etcd.ns1.svc:2380"},
	InitialCluster: "ds-etcd-0=https://ds-etcd-0.ds-etcd.ns1.svc:2380", ClusterToken: "kamaji", DataDir: "/var/run/etcd/default.etcd"}

// args is what a Job's container args are: Args() of one of the typed arguments.
type args interface{ Args() []string }

// TestArgs checks the args the Job builders render: exactly those of the builders in
// controller/ (their table tests hold the same lists).
func TestArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   args
		want []string
	}{
		{"backup", Backup{Cluster: "prod", Endpoints: []string{"https://ds1-etcd-0.ds1-etcd.team-a.svc:2379"},
			Location: S3Location{Endpoint: "http://rgw.rook-ceph.svc", Bucket: "team-a-managed-k8s-backups"}, RetentionDays: 7},
			[]string{"backup", "--cluster=prod", "--endpoints=https://ds1-etcd-0.ds1-etcd.team-a.svc:2379",
				"--s3-endpoint=http://rgw.rook-ceph.svc", "--bucket=team-a-managed-k8s-backups", "--retention-days=7"}},
		{"backup with prefix, region and endpoints", Backup{Cluster: "prod", Endpoints: []string{"https://a:2379", "https://b:2379"},
			Location: S3Location{Endpoint: "http://rgw.rook-ceph.svc", Bucket: "shared", Prefix: "tenants/a", Region: "eu-1"}, RetentionDays: 30},
			[]string{"backup", "--cluster=prod", "--endpoints=https://a:2379,https://b:2379",
				"--s3-endpoint=http://rgw.rook-ceph.svc", "--bucket=shared", "--prefix=tenants/a", "--region=eu-1", "--retention-days=30"}},
		{"backup without retention", Backup{Cluster: "prod", Endpoints: []string{"https://a:2379"}, Location: S3Location{Endpoint: "http://s3", Bucket: "b"}},
			[]string{"backup", "--cluster=prod", "--endpoints=https://a:2379", "--s3-endpoint=http://s3", "--bucket=b"}},
		{"verify", Verify{Key: tKey, Cluster: "prod", Location: S3Location{Endpoint: "http://rgw:80", Bucket: "b", Prefix: "tenants"}},
			[]string{"verify", "--key=" + tKey, "--cluster=prod", "--s3-endpoint=http://rgw:80", "--bucket=b", "--prefix=tenants"}},
		{"restore", Restore{Key: tKey, Cluster: "prod", Member: tMember, BumpRevision: DefaultBumpRevision, MarkCompacted: true,
			Location: S3Location{Endpoint: "http://rgw:80", Bucket: "b", Prefix: "tenants"}},
			[]string{"restore", "--key=" + tKey, "--cluster=prod",
				"--data-dir=/var/run/etcd/default.etcd", "--name=ds-etcd-0",
				"--initial-cluster=ds-etcd-0=https://ds-etcd-0.ds-etcd.ns1.svc:2380",
				"--initial-advertise-peer-urls=https://ds-etcd-0.ds-etcd.ns1.svc:2380",
				"--initial-cluster-token=kamaji", "--bump-revision=1000000000", "--mark-compacted=true",
				"--s3-endpoint=http://rgw:80", "--bucket=b", "--prefix=tenants"}},
		{"restore with target version", Restore{Key: tKey, Cluster: "prod", Member: tMember, BumpRevision: DefaultBumpRevision, MarkCompacted: true,
			TargetVersion: "v3.5.21", Location: S3Location{Endpoint: "http://rgw:80", Bucket: "b"}},
			[]string{"restore", "--key=" + tKey, "--cluster=prod",
				"--data-dir=/var/run/etcd/default.etcd", "--name=ds-etcd-0",
				"--initial-cluster=ds-etcd-0=https://ds-etcd-0.ds-etcd.ns1.svc:2380",
				"--initial-advertise-peer-urls=https://ds-etcd-0.ds-etcd.ns1.svc:2380",
				"--initial-cluster-token=kamaji", "--bump-revision=1000000000", "--mark-compacted=true",
				"--target-version=v3.5.21", "--s3-endpoint=http://rgw:80", "--bucket=b"}},
		{"rollback", Rollback{DataDir: "/var/run/etcd/default.etcd"}, []string{"rollback", "--data-dir=/var/run/etcd/default.etcd"}},
		{"staged restore of a member", Restore{Key: tKey, Cluster: "prod", Member: tMember, BumpRevision: DefaultBumpRevision, MarkCompacted: true,
			MinRevision: 41, StageOnly: true, Location: S3Location{Endpoint: "http://rgw:80", Bucket: "b"}},
			[]string{"restore", "--key=" + tKey, "--cluster=prod",
				"--data-dir=/var/run/etcd/default.etcd", "--name=ds-etcd-0",
				"--initial-cluster=ds-etcd-0=https://ds-etcd-0.ds-etcd.ns1.svc:2380",
				"--initial-advertise-peer-urls=https://ds-etcd-0.ds-etcd.ns1.svc:2380",
				"--initial-cluster-token=kamaji", "--bump-revision=1000000000", "--mark-compacted=true",
				"--min-revision=41", "--swap=false", "--s3-endpoint=http://rgw:80", "--bucket=b"}},
		{"staged restore at a pinned revision", Restore{Key: tKey, Member: tMember, BumpRevision: DefaultBumpRevision, MarkCompacted: true,
			RestoredRevision: 2000000041, StageOnly: true, Location: S3Location{Endpoint: "http://rgw:80", Bucket: "b"}},
			[]string{"restore", "--key=" + tKey,
				"--data-dir=/var/run/etcd/default.etcd", "--name=ds-etcd-0",
				"--initial-cluster=ds-etcd-0=https://ds-etcd-0.ds-etcd.ns1.svc:2380",
				"--initial-advertise-peer-urls=https://ds-etcd-0.ds-etcd.ns1.svc:2380",
				"--initial-cluster-token=kamaji", "--bump-revision=1000000000", "--mark-compacted=true",
				"--restored-revision=2000000041", "--swap=false", "--s3-endpoint=http://rgw:80", "--bucket=b"}},
		{"swap", Swap{DataDir: "/var/run/etcd/default.etcd", RestoredRevision: 2000000041},
			[]string{"swap", "--data-dir=/var/run/etcd/default.etcd", "--restored-revision=2000000041"}},
		{"swap of any revision", Swap{DataDir: "/d"}, []string{"swap", "--data-dir=/d"}},
		{"rollback of a swap", Rollback{DataDir: "/d", IfSwapped: true}, []string{"rollback", "--data-dir=/d", "--if-swapped"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tc.in.Args()); diff != "" {
				t.Errorf("Args() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// parse parses args (without the subcommand) into the flags bind registers, as the subcommands do.
func parse(t *testing.T, bind func(*flag.FlagSet), args []string) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	bind(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("failed to parse %q: %v", args, err)
	}
}

// TestArgsRoundTrip checks that what a builder renders is what the subcommand parses.
func TestArgsRoundTrip(t *testing.T) {
	defaults := func() (b Backup, v Verify, r Restore, rb Rollback, sw Swap) {
		parse(t, b.Bind, nil)
		parse(t, v.Bind, nil)
		parse(t, r.Bind, nil)
		parse(t, rb.Bind, nil)
		parse(t, sw.Bind, nil)
		return
	}
	b, v, r, rb, sw := defaults()
	loc := S3Location{Endpoint: "https://s3.example.com", Bucket: "shared", Prefix: "tenants/a", Region: "eu-1"}
	for _, tc := range []struct {
		name string
		in   args
		// parsed is a pointer to a zero value of in's type, bound and parsed from in.Args().
		parsed interface {
			args
			Bind(*flag.FlagSet)
		}
	}{
		{"backup defaults", b, &Backup{}},
		{"backup", Backup{Cluster: "prod", Endpoints: []string{"https://a:2379", "https://b:2379"}, CACert: "/ca", Cert: "/c", Key: "/k",
			DialTimeout: 3 * time.Second, RetentionDays: 30, MinSize: 1, PartSize: 6 << 20, Concurrency: 1, Location: loc}, &Backup{}},
		{"verify defaults", v, &Verify{}},
		{"verify", Verify{Key: tKey, Cluster: "prod", Location: loc}, &Verify{}},
		{"restore defaults", r, &Restore{}},
		{"restore", Restore{Key: tKey, Cluster: "prod", Member: tMember, BumpRevision: 5, MarkCompacted: true, MinRevision: 42,
			TargetVersion: "3.6", Location: loc}, &Restore{}},
		{"restore without bump", Restore{Key: tKey, Member: Member{Name: "m", PeerURLs: []string{"http://a:2380", "http://b:2380"}, DataDir: "/d"},
			Location: loc}, &Restore{}},
		{"rollback defaults", rb, &Rollback{}},
		{"rollback", Rollback{DataDir: "/data/x.etcd"}, &Rollback{}},
		{"staged restore", Restore{Key: tKey, Member: tMember, BumpRevision: 5, MarkCompacted: true, RestoredRevision: 77, StageOnly: true,
			Location: loc}, &Restore{}},
		{"rollback of a swap", Rollback{DataDir: "/data/x.etcd", IfSwapped: true}, &Rollback{}},
		{"swap defaults", sw, &Swap{}},
		{"swap", Swap{DataDir: "/data/x.etcd", RestoredRevision: 77}, &Swap{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.in.Args()
			parse(t, tc.parsed.Bind, args[1:])
			got := reflectValue(tc.parsed)
			if diff := cmp.Diff(tc.in, got); diff != "" {
				t.Errorf("parsed %q mismatch (-want +got):\n%s", args, diff)
			}
		})
	}
}

// reflectValue is the value p points to.
func reflectValue(p args) args {
	switch p := p.(type) {
	case *Backup:
		return *p
	case *Verify:
		return *p
	case *Restore:
		return *p
	case *Rollback:
		return *p
	case *Swap:
		return *p
	}
	return nil
}

func TestPrefixArgsRoundTrip(t *testing.T) {
	loc := S3Location{Endpoint: "http://rgw:80", Bucket: "b", Prefix: "tenants", Region: "us-east-1"}
	etcd := PrefixEtcd{Prefix: "/acme_a", Endpoints: []string{"https://ds-etcd-0.ds-etcd.ns.svc:2379", "https://ds-etcd-1.ds-etcd.ns.svc:2379"},
		CACert: "/etc/etcd/pki/ca.crt", Cert: "/etc/etcd/pki/tls.crt", KeyFile: "/etc/etcd/pki/tls.key", DialTimeout: 5 * time.Second}
	backup := PrefixBackup{Cluster: "c", Etcd: etcd, RetentionDays: 7, MinKeys: 1, PartSize: DefaultPartSize, Concurrency: DefaultConcurrency, Location: loc}
	restore := PrefixRestore{Cluster: "c", Key: "c/c-20260101T020000Z.db", Attempt: "2026-01-01T02:00:00Z", Undo: true, Etcd: etcd,
		MaxTxnOps: DefaultMaxTxnOps, MaxRequestBytes: DefaultMaxRequestBytes, WorkDir: PrefixWorkDir, PartSize: DefaultPartSize, Concurrency: DefaultConcurrency, Location: loc}
	verify := PrefixVerify{Key: "c/c-20260101T020000Z.db", Cluster: "c", Prefix: "/acme_a", Location: loc}
	parse := func(t *testing.T, args []string, bind func(fs *flag.FlagSet)) {
		t.Helper()
		fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
		bind(fs)
		if err := fs.Parse(args[1:]); err != nil {
			t.Fatal(err)
		}
	}
	var gotB PrefixBackup
	parse(t, backup.Args(), gotB.Bind)
	if diff := cmp.Diff(backup, gotB); diff != "" {
		t.Errorf("prefix-backup (-want +got):\n%s", diff)
	}
	var gotR PrefixRestore
	parse(t, restore.Args(), func(fs *flag.FlagSet) { gotR.Bind(fs, "/tmp") })
	if diff := cmp.Diff(restore, gotR); diff != "" {
		t.Errorf("prefix-restore (-want +got):\n%s", diff)
	}
	var gotV PrefixVerify
	parse(t, verify.Args(), gotV.Bind)
	if diff := cmp.Diff(verify, gotV); diff != "" {
		t.Errorf("prefix-verify (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(NonRetriable(CommandBackup), NonRetriable(CommandPrefixBackup)); diff != "" {
		t.Errorf("prefix-backup retries like backup (-want +got):\n%s", diff)
	}
}

// TestSwapFlag checks --swap's forms: the default swaps, --swap=false and --swap false stage only.
func TestSwapFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"--swap"}, false},
		{[]string{"--swap=true"}, false},
		{[]string{"--swap=false"}, true},
		{[]string{"-swap=0"}, true},
	} {
		var r Restore
		parse(t, r.Bind, tc.args)
		if diff := cmp.Diff(tc.want, r.StageOnly); diff != "" {
			t.Errorf("%q: StageOnly mismatch (-want +got):\n%s", tc.args, diff)
		}
	}
}
