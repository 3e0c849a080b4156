package framework

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EtcdCerts are PEM files of a throwaway CA, an etcd serving certificate for 127.0.0.1 and
// localhost, and a client certificate, laid out like the DS-etcd-certs Secret (ca.crt, tls.crt,
// tls.key for the client) plus server.crt/server.key for the server.
type EtcdCerts struct {
	Dir        string
	CAFile     string
	ServerCert string
	ServerKey  string
	ClientCert string
	ClientKey  string
}

// GenerateEtcdCerts writes a new CA, server and client certificate (ECDSA P-256, valid 24h)
// into dir.
func GenerateEtcdCerts(dir string) (*EtcdCerts, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c := &EtcdCerts{
		Dir:        dir,
		CAFile:     filepath.Join(dir, "ca.crt"),
		ServerCert: filepath.Join(dir, "server.crt"),
		ServerKey:  filepath.Join(dir, "server.key"),
		ClientCert: filepath.Join(dir, "tls.crt"),
		ClientKey:  filepath.Join(dir, "tls.key"),
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test-etcd-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	if err := writePEM(c.CAFile, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	leaf := func(serial int64, cn string, usage []x509.ExtKeyUsage, certFile, keyFile string) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage:  usage,
			DNSNames:     []string{"localhost"},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
			return err
		}
		return writePEM(keyFile, "EC PRIVATE KEY", kder)
	}
	if err := leaf(2, "etcd-server", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, c.ServerCert, c.ServerKey); err != nil {
		return nil, err
	}
	if err := leaf(3, "etcd-client", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, c.ClientCert, c.ClientKey); err != nil {
		return nil, err
	}
	return c, nil
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// ClientTLS is the tls.Config of the client certificate.
func (c *EtcdCerts) ClientTLS() (*tls.Config, error) {
	return transport.TLSInfo{CertFile: c.ClientCert, KeyFile: c.ClientKey, TrustedCAFile: c.CAFile}.ClientConfig()
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// EtcdOptions configure StartEtcd. Zero values get working defaults.
type EtcdOptions struct {
	// Version is one of EtcdVersion, EtcdVersion36, EtcdVersion35; default EtcdVersion.
	Version string
	// DataDir is etcd's --data-dir; default a new directory under t.TempDir(). Starting on a
	// restored data directory is how restore tests boot it.
	DataDir string
	// Name is --name; default "default".
	Name string
	// PeerPort and ClientPort; default free ports. A restored data directory must be started
	// with the peer URL it was restored with.
	PeerPort, ClientPort int
	// InitialClusterToken; default "etcd-cluster".
	InitialClusterToken string
	// Certs to use; default new ones under t.TempDir().
	Certs *EtcdCerts
	// ExtraArgs are appended to the etcd command line.
	ExtraArgs []string
	// StartTimeout bounds waiting for the first successful Status; default 60s.
	StartTimeout time.Duration
}

// EtcdServer is a real etcd process serving client TLS (with client certificate
// authentication) on 127.0.0.1 and plain-HTTP peer traffic on 127.0.0.1.
type EtcdServer struct {
	Version   string
	Name      string
	DataDir   string
	ClientURL string
	PeerURL   string
	Certs     *EtcdCerts
	// LogFile holds etcd's stdout and stderr.
	LogFile string

	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// PeerURLFor is the peer URL StartEtcd uses for port.
func PeerURLFor(port int) string { return "http://127.0.0.1:" + strconv.Itoa(port) }

// StartEtcd starts etcd and waits until it answers Status over TLS. The process is stopped (by
// its PID) when the test ends. A missing binary fails the test with how to build it.
func StartEtcd(t testing.TB, o EtcdOptions) *EtcdServer {
	t.Helper()
	e, err := startEtcd(t.TempDir(), o)
	if err != nil {
		t.Fatalf("failed to start etcd: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Logf("failed to stop etcd %s: %v", e.ClientURL, err)
		}
	})
	return e
}

func startEtcd(tmp string, o EtcdOptions) (*EtcdServer, error) {
	if o.Version == "" {
		o.Version = EtcdVersion
	}
	bin, err := RequireBinary(filepath.Join(EtcdDir(o.Version), "etcd"))
	if err != nil {
		return nil, err
	}
	if o.Name == "" {
		o.Name = "default"
	}
	if o.DataDir == "" {
		o.DataDir = filepath.Join(tmp, "data")
	}
	if o.InitialClusterToken == "" {
		o.InitialClusterToken = "etcd-cluster"
	}
	if o.Certs == nil {
		if o.Certs, err = GenerateEtcdCerts(filepath.Join(tmp, "pki")); err != nil {
			return nil, err
		}
	}
	for _, p := range []*int{&o.PeerPort, &o.ClientPort} {
		if *p == 0 {
			if *p, err = FreePort(); err != nil {
				return nil, err
			}
		}
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 60 * time.Second
	}
	e := &EtcdServer{
		Version:   o.Version,
		Name:      o.Name,
		DataDir:   o.DataDir,
		ClientURL: "https://127.0.0.1:" + strconv.Itoa(o.ClientPort),
		PeerURL:   PeerURLFor(o.PeerPort),
		Certs:     o.Certs,
		LogFile:   filepath.Join(tmp, "etcd.log"),
		done:      make(chan struct{}),
	}
	args := []string{
		"--name", o.Name,
		"--data-dir", o.DataDir,
		"--listen-client-urls", e.ClientURL,
		"--advertise-client-urls", e.ClientURL,
		"--listen-peer-urls", e.PeerURL,
		"--initial-advertise-peer-urls", e.PeerURL,
		"--initial-cluster", o.Name + "=" + e.PeerURL,
		"--initial-cluster-token", o.InitialClusterToken,
		"--cert-file", o.Certs.ServerCert,
		"--key-file", o.Certs.ServerKey,
		"--trusted-ca-file", o.Certs.CAFile,
		"--client-cert-auth",
		"--log-level", "warn",
	}
	args = append(args, o.ExtraArgs...)
	logf, err := os.Create(e.LogFile)
	if err != nil {
		return nil, err
	}
	e.cmd = exec.Command(bin, args...)
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	if err := e.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("failed to start %s: %w", bin, err)
	}
	go func() {
		e.err = e.cmd.Wait()
		logf.Close()
		close(e.done)
	}()
	if err := e.waitReady(o.StartTimeout); err != nil {
		_ = e.Stop()
		return nil, err
	}
	return e, nil
}

// waitReady polls Status until it succeeds, the process exits, or the deadline passes.
func (e *EtcdServer) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-e.done:
			return fmt.Errorf("etcd %s exited during start (%v); log %s:\n%s", e.Version, e.err, e.LogFile, tail(e.LogFile, 2000))
		default:
		}
		cli, err := e.newClient()
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err = cli.Status(ctx, e.ClientURL)
			cancel()
			cli.Close()
			if err == nil {
				return nil
			}
		}
		last = err
		select {
		case <-e.done:
		case <-time.After(100 * time.Millisecond): // poll interval, not a fixed wait
		}
	}
	return fmt.Errorf("etcd %s did not become ready within %s: %v; log %s:\n%s", e.Version, timeout, last, e.LogFile, tail(e.LogFile, 2000))
}

func (e *EtcdServer) newClient() (*clientv3.Client, error) {
	tlsCfg, err := e.Certs.ClientTLS()
	if err != nil {
		return nil, err
	}
	return clientv3.New(clientv3.Config{
		Endpoints:   []string{e.ClientURL},
		TLS:         tlsCfg,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
}

// Client is a TLS client of this server, closed when the test ends.
func (e *EtcdServer) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := e.newClient()
	if err != nil {
		t.Fatalf("failed to create an etcd client for %s: %v", e.ClientURL, err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// PID is the etcd process id.
func (e *EtcdServer) PID() int { return e.cmd.Process.Pid }

// Stop sends SIGTERM to the etcd process (by PID) and waits up to 30s for it to exit, then
// SIGKILLs it. Stopping a stopped server is a no-op.
func (e *EtcdServer) Stop() error {
	return stopProcess(e.cmd.Process, e.done, 30*time.Second)
}

// tail returns at most the last n bytes of a file, for error messages.
func tail(path string, n int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return string(b)
}
