package env

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/test/framework"
)

// DirectSteps are the durations of the restore's underlying steps done by hand, without the
// controller, Jobs or pods: the baseline the controller's overhead is measured against.
type DirectSteps struct {
	StopAPIServer  time.Duration // SIGTERM kube-apiserver, wait for it to exit
	StopEtcd       time.Duration // SIGTERM etcd, wait for it to exit
	Restore        time.Duration // etcdutl snapshot restore from a local file into a staging dir, swap it in
	StartEtcd      time.Duration // start etcd, wait until /health is ok
	StartAPIServer time.Duration // start kube-apiserver, wait until /readyz is ok
	SnapshotBytes  int64
}

// Total is the sum of the steps.
func (d *DirectSteps) Total() time.Duration {
	return d.StopAPIServer + d.StopEtcd + d.Restore + d.StartEtcd + d.StartAPIServer
}

// DirectRestore downloads the snapshot key of the tenant's bucket to a local file, brings up
// etcd (etcd version of the tenant) and kube-apiserver as plain processes on that data, then
// times the same steps a restore does: stop kube-apiserver, stop etcd, `etcdutl snapshot
// restore` from the local file, start etcd, start kube-apiserver (each wait polls every 20ms).
func (t *Tenant) DirectRestore(ctx context.Context, key string) (*DirectSteps, error) {
	dir, err := os.MkdirTemp(t.env.Dir, "direct-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	etcdDir := framework.EtcdDir(t.EtcdVersion)
	for _, b := range []string{"etcd", "etcdutl"} {
		if _, err := framework.RequireBinary(filepath.Join(etcdDir, b)); err != nil {
			return nil, err
		}
	}
	d := &DirectSteps{}
	snap := filepath.Join(dir, "snapshot.db")
	if d.SnapshotBytes, err = t.download(ctx, key, snap); err != nil {
		return nil, err
	}

	// PKI and ports.
	ca, err := newCA("direct-ca")
	if err != nil {
		return nil, err
	}
	server, err := ca.issue("direct", []string{"system:masters"}, "localhost", "127.0.0.1")
	if err != nil {
		return nil, err
	}
	saKey, saPub, err := serviceAccountKeys()
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{"ca.crt": ca.certPEM, "tls.crt": server.Cert, "tls.key": server.Key, "sa.key": saKey, "sa.pub": saPub}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	ports := make([]int, 4)
	for i := range ports {
		if ports[i], err = framework.FreePort(); err != nil {
			return nil, err
		}
	}
	clientURL := "https://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	metricsURL := "http://127.0.0.1:" + strconv.Itoa(ports[2])
	apiPort := ports[3]
	dataDir := filepath.Join(dir, "default.etcd")
	pki := func(f string) string { return filepath.Join(dir, f) }

	restore := func(target string) error {
		out, err := exec.CommandContext(ctx, filepath.Join(etcdDir, "etcdutl"), "snapshot", "restore", snap,
			"--data-dir", target, "--name", "default", "--initial-cluster", "default="+peerURL,
			"--initial-advertise-peer-urls", peerURL, "--initial-cluster-token", "direct").CombinedOutput()
		if err != nil {
			return fmt.Errorf("etcdutl snapshot restore: %w: %s", err, out)
		}
		return nil
	}
	startEtcd := func() (*proc, error) {
		p, err := startProc(filepath.Join(etcdDir, "etcd"), filepath.Join(dir, "etcd.log"),
			"--name", "default", "--data-dir", dataDir,
			"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
			"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
			"--initial-cluster", "default="+peerURL, "--initial-cluster-token", "direct",
			"--listen-metrics-urls", metricsURL,
			"--cert-file", pki("tls.crt"), "--key-file", pki("tls.key"), "--trusted-ca-file", pki("ca.crt"), "--client-cert-auth",
			"--log-level", "warn")
		if err != nil {
			return nil, err
		}
		return p, waitHTTP(ctx, p, metricsURL+"/health")
	}
	startAPIServer := func() (*proc, error) {
		args := []string{"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port=" + strconv.Itoa(apiPort),
			"--etcd-servers=" + clientURL, "--etcd-cafile=" + pki("ca.crt"), "--etcd-certfile=" + pki("tls.crt"), "--etcd-keyfile=" + pki("tls.key"),
			"--client-ca-file=" + pki("ca.crt"), "--tls-cert-file=" + pki("tls.crt"), "--tls-private-key-file=" + pki("tls.key"),
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + pki("sa.pub"), "--service-account-signing-key-file=" + pki("sa.key"),
			"--service-cluster-ip-range=10.96.0.0/16", "--authorization-mode=RBAC", "--endpoint-reconciler-type=none", "--profiling=false"}
		if t.EtcdPrefix != "" {
			// The tenant's own keys, as its control plane reads them (docs/backup.md, "Shared datastores").
			args = append(args, "--etcd-prefix="+t.EtcdPrefix)
		}
		p, err := startProc(filepath.Join(framework.KubeAssetsDir(), "kube-apiserver"), filepath.Join(dir, "kube-apiserver.log"), args...)
		if err != nil {
			return nil, err
		}
		return p, waitHTTP(ctx, p, "https://127.0.0.1:"+strconv.Itoa(apiPort)+"/readyz")
	}

	// The running cluster: etcd on the snapshot's data (restored untimed) and kube-apiserver.
	if err := restore(dataDir); err != nil {
		return nil, err
	}
	etcd, err := startEtcd()
	if err != nil {
		etcd.Stop()
		return nil, err
	}
	defer func() { etcd.Stop() }()
	api, err := startAPIServer()
	if err != nil {
		api.Stop()
		return nil, err
	}
	defer func() { api.Stop() }()

	// The timed steps.
	step := func(dst *time.Duration, f func() error) error {
		start := time.Now()
		err := f()
		*dst = time.Since(start)
		return err
	}
	if err := step(&d.StopAPIServer, func() error { api.Stop(); return nil }); err != nil {
		return nil, err
	}
	if err := step(&d.StopEtcd, func() error { etcd.Stop(); return nil }); err != nil {
		return nil, err
	}
	if err := step(&d.Restore, func() error {
		staging := dataDir + ".restoring"
		if err := restore(staging); err != nil {
			return err
		}
		if err := os.Rename(dataDir, dataDir+".previous"); err != nil {
			return err
		}
		return os.Rename(staging, dataDir)
	}); err != nil {
		return nil, err
	}
	if err := step(&d.StartEtcd, func() (err error) { etcd, err = startEtcd(); return err }); err != nil {
		return nil, err
	}
	if err := step(&d.StartAPIServer, func() (err error) { api, err = startAPIServer(); return err }); err != nil {
		return nil, err
	}
	return d, nil
}

// download writes the object key of the tenant's bucket to path and returns its size.
func (t *Tenant) download(ctx context.Context, key, path string) (int64, error) {
	obj, err := t.env.S3().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(kdcv1alpha1.DefaultBucketName(t.Namespace)), Key: aws.String(key)})
	if err != nil {
		return 0, fmt.Errorf("failed to download %s: %w", key, err)
	}
	defer obj.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, obj.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// proc is a process started by the direct steps, stopped by its PID.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func startProc(bin, logPath string, args ...string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan struct{}), log: logPath}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("failed to start %s: %w", bin, err)
	}
	go func() {
		_ = p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// Stop sends SIGTERM (by PID), waits up to 10s, then SIGKILLs. Nil or stopped: no-op.
func (p *proc) Stop() {
	if p == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitHTTP polls url every 20ms until it answers 200, the process exits or a minute passes.
func waitHTTP(ctx context.Context, p *proc, url string) error {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // readiness probe, like the kubelet's
	return poll(ctx, time.Minute, 20*time.Millisecond, func() error {
		select {
		case <-p.done:
			return permanent(fmt.Errorf("%s exited; log %s", filepath.Base(p.cmd.Path), p.log))
		default:
		}
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
		}
		return nil
	})
}
