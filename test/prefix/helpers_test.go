package prefix

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"kube-dc.com/etcd-backup/snapshot"
	"kube-dc.com/etcd-backup/snapshot/prefix"
	"kube-dc.com/etcd-backup/test/framework"
)

const bucket = "ns-managed-k8s-backups"

// Two tenants whose prefixes share a leading string, as Kamaji names them.
const (
	prefixA = "/acme_a"
	prefixB = "/acme_ab"
	userA   = "tenant-a"
	userB   = "tenant-b"
)

// tlsFiles are a client's certificate files.
type tlsFiles struct{ CA, Cert, Key string }

// sharedEtcd is one etcd with authentication on, shared by tenants A and B.
type sharedEtcd struct {
	*framework.EtcdServer
	root, a, b tlsFiles
}

// pki writes a CA, a serving certificate for 127.0.0.1 and one client certificate per CN.
func pki(t testing.TB, dir string, cns ...string) (server framework.EtcdCerts, clients map[string]tlsFiles) {
	t.Helper()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(dir, 0o700))
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-etcd-ca"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(err)
	ca, err := x509.ParseCertificate(caDER)
	must(err)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		must(os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return p
	}
	caFile := write("ca.crt", "CERTIFICATE", caDER)
	leaf := func(serial int64, cn string, usage ...x509.ExtKeyUsage) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: usage, DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		must(err)
		kder, err := x509.MarshalECPrivateKey(key)
		must(err)
		return write(cn+".crt", "CERTIFICATE", der), write(cn+".key", "EC PRIVATE KEY", kder)
	}
	sc, sk := leaf(2, "etcd-server", x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	clients = map[string]tlsFiles{}
	for i, cn := range cns {
		c, k := leaf(int64(10+i), cn, x509.ExtKeyUsageClientAuth)
		clients[cn] = tlsFiles{CA: caFile, Cert: c, Key: k}
	}
	root := clients[cns[0]]
	return framework.EtcdCerts{Dir: dir, CAFile: caFile, ServerCert: sc, ServerKey: sk, ClientCert: root.Cert, ClientKey: root.Key}, clients
}

// startSharedEtcd starts etcd of version, creates the root user, one role per tenant with
// readwrite on [prefix/, prefix0) as Kamaji grants it, one user per tenant (certificate CN),
// and turns authentication on.
func startSharedEtcd(t testing.TB, version string, extraArgs ...string) *sharedEtcd {
	t.Helper()
	server, clients := pki(t, filepath.Join(t.TempDir(), "pki"), "root", userA, userB)
	e := framework.StartEtcd(t, framework.EtcdOptions{Version: version, Certs: &server, ExtraArgs: extraArgs})
	s := &sharedEtcd{EtcdServer: e, root: clients["root"], a: clients[userA], b: clients[userB]}
	cli := s.client(t, s.root)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	steps := []func() error{
		func() error {
			_, err := cli.UserAddWithOptions(ctx, "root", "", &clientv3.UserAddOptions{NoPassword: true})
			return err
		},
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
	}
	for user, p := range map[string]string{userA: prefixA, userB: prefixB} {
		rng, err := prefix.RangeOf(p)
		if err != nil {
			t.Fatal(err)
		}
		steps = append(steps,
			func() error { _, err := cli.RoleAdd(ctx, user); return err },
			func() error {
				_, err := cli.RoleGrantPermission(ctx, user, rng.Start, rng.End, clientv3.PermissionType(clientv3.PermReadWrite))
				return err
			},
			func() error {
				_, err := cli.UserAddWithOptions(ctx, user, "", &clientv3.UserAddOptions{NoPassword: true})
				return err
			},
			func() error { _, err := cli.UserGrantRole(ctx, user, user); return err },
		)
	}
	steps = append(steps, func() error { _, err := cli.AuthEnable(ctx); return err })
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("failed to set up etcd authentication: %v", err)
		}
	}
	return s
}

// client is an etcd client authenticated by the certificate f (its CN is the user).
func (s *sharedEtcd) client(t testing.TB, f tlsFiles) *clientv3.Client {
	t.Helper()
	tlsCfg, err := transport.TLSInfo{CertFile: f.Cert, KeyFile: f.Key, TrustedCAFile: f.CA}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.ClientURL}, TLS: tlsCfg, DialTimeout: 5 * time.Second, Logger: zap.NewNop(), MaxCallSendMsgSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// etcdOptions are the prefix package's connection options with the certificate f.
func (s *sharedEtcd) etcdOptions(f tlsFiles) prefix.EtcdOptions {
	return prefix.EtcdOptions{Endpoints: []string{s.ClientURL}, CACert: f.CA, Cert: f.Cert, Key: f.Key}
}

// env is one MinIO with the backup bucket.
type env struct {
	loc  snapshot.S3Location
	cred snapshot.Credentials
}

func newEnv(t testing.TB) *env {
	t.Helper()
	m := framework.StartMinIO(t, framework.MinIOOptions{Buckets: []string{bucket}})
	return &env{loc: snapshot.S3Location{Endpoint: m.Endpoint, Bucket: bucket}, cred: snapshot.Credentials{AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey}}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, nil))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// kv is one key as a test compares it.
type kv struct {
	Value    string
	ModRev   int64
	HasLease bool
}

// state is every key in [start, end) at the current revision (paginated by etcd itself).
func state(t testing.TB, cli *clientv3.Client, p string) map[string]kv {
	t.Helper()
	rng, err := prefix.RangeOf(p)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]kv{}
	key := rng.Start
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp, err := cli.Get(ctx, key, clientv3.WithRange(rng.End), clientv3.WithLimit(500))
		cancel()
		if err != nil {
			t.Fatalf("failed to read %s: %v", p, err)
		}
		for _, k := range resp.Kvs {
			out[string(k.Key)] = kv{Value: string(k.Value), ModRev: k.ModRevision, HasLease: k.Lease != 0}
		}
		if !resp.More {
			return out
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// values drops the mod revisions: what a restore must reproduce.
func values(m map[string]kv) map[string]kv {
	out := make(map[string]kv, len(m))
	for k, v := range m {
		out[k] = kv{Value: v.Value, HasLease: v.HasLease}
	}
	return out
}

// writeTenant writes n objects under p/pods/ and events under p/events/ on a lease, like a
// kube-apiserver: several per transaction.
func writeTenant(t testing.TB, cli *clientv3.Client, p string, n, size int, tag string) {
	t.Helper()
	ctx := context.Background()
	lease, err := cli.Grant(ctx, 3600)
	if err != nil {
		t.Fatal(err)
	}
	var ops []clientv3.Op
	flush := func() {
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatalf("failed to write %s: %v", p, err)
		}
		ops = ops[:0]
	}
	for i := 0; i < n; i++ {
		ops = append(ops, clientv3.OpPut(fmt.Sprintf("%s/pods/ns/pod-%06d", p, i), value(size, i, tag)))
		if i%10 == 0 {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("%s/events/ns/ev-%06d", p, i), value(64, i, tag), clientv3.WithLease(lease.ID)))
		}
		if len(ops) >= 64 {
			flush()
		}
	}
	if len(ops) > 0 {
		flush()
	}
	if _, err := cli.Put(ctx, p+"/masterleases/127.0.0.1", "ip", clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
}

func value(size, i int, tag string) string {
	b := make([]byte, size)
	for k := range b {
		b[k] = byte('a' + (i+k)%26)
	}
	copy(b, tag)
	return string(b)
}

// change edits a tenant: deletes every other event, modifies every third object, deletes every
// seventh, adds new ones.
func change(t testing.TB, cli *clientv3.Client, p string, n int, tag string) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("%s/pods/ns/pod-%06d", p, i)
		var err error
		switch {
		case i%20 == 0:
			_, err = cli.Delete(ctx, fmt.Sprintf("%s/events/ns/ev-%06d", p, i))
		case i%7 == 0:
			_, err = cli.Delete(ctx, k)
		case i%3 == 0:
			_, err = cli.Put(ctx, k, value(100, i, tag))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n/10; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("%s/pods/new/pod-%06d", p, i), value(50, i, tag)); err != nil {
			t.Fatal(err)
		}
	}
}
