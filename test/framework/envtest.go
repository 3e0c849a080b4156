package framework

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
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/rand"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	kamajiv1alpha1 "kube-dc.com/etcd-backup/api/kamaji/v1alpha1"
	obcv1alpha1 "kube-dc.com/etcd-backup/api/objectbucket/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// Scheme has the built-in types, the project's API and the ObjectBucketClaim and
// TenantControlPlane test types.
var Scheme = NewScheme()

// NewScheme returns a scheme with every type the tests use.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, kdcv1alpha1.AddToScheme, obcv1alpha1.AddToScheme, kamajiv1alpha1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}

// CRDPaths are the CRDs every test installs: the product's and the ObjectBucketClaim test CRD.
func CRDPaths() []string {
	return []string{
		filepath.Join(RootDir(), "manifests", "crd", "bases"),
		filepath.Join(RootDir(), "test", "crds"),
	}
}

// Env is a running envtest control plane: a real kube-apiserver and etcd.
type Env struct {
	*envtest.Environment
	Config     *rest.Config
	Client     client.Client
	Kubeconfig string // admin kubeconfig file, for kubectl and kube-controller-manager
	dir        string
}

// Options tune Start.
type Options struct {
	// Webhooks, when set, installs these webhook configurations (envtest serves them on
	// loopback with its own certificate, see envtest.WebhookInstallOptions).
	Webhooks *envtest.WebhookInstallOptions
	// ExtraCRDPaths are installed besides CRDPaths.
	ExtraCRDPaths []string
	// APIServerFlags are set on kube-apiserver (key without "--").
	APIServerFlags map[string]string
}

// Start starts envtest with the binaries of bin/k8s (no KUBEBUILDER_ASSETS needed).
func Start(opts Options) (*Env, error) {
	assets := KubeAssetsDir()
	if _, err := RequireBinary(filepath.Join(assets, "kube-apiserver")); err != nil {
		return nil, err
	}
	e := &envtest.Environment{
		BinaryAssetsDirectory:   assets,
		CRDDirectoryPaths:       append(CRDPaths(), opts.ExtraCRDPaths...),
		ErrorIfCRDPathMissing:   true,
		Scheme:                  Scheme,
		ControlPlaneStopTimeout: 30 * time.Second,
	}
	if opts.Webhooks != nil {
		e.WebhookInstallOptions = *opts.Webhooks
	}
	apiserver := e.ControlPlane.GetAPIServer()
	for k, v := range opts.APIServerFlags {
		apiserver.Configure().Set(k, v)
	}
	cfg, err := e.Start()
	if err != nil {
		return nil, fmt.Errorf("failed to start envtest with %s: %w", assets, err)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	c, err := client.New(cfg, client.Options{Scheme: Scheme})
	if err != nil {
		_ = e.Stop()
		return nil, fmt.Errorf("failed to create client: %w", err)
	}
	dir, err := os.MkdirTemp("", "kdc-envtest-")
	if err != nil {
		_ = e.Stop()
		return nil, err
	}
	env := &Env{Environment: e, Config: cfg, Client: c, dir: dir}
	if env.Kubeconfig, err = env.WriteKubeconfig("admin", []string{"system:masters"}); err != nil {
		_ = env.Stop()
		return nil, err
	}
	return env, nil
}

// WriteKubeconfig adds a user to the control plane and writes a kubeconfig for it.
func (e *Env) WriteKubeconfig(name string, groups []string) (string, error) {
	u, err := e.ControlPlane.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return "", fmt.Errorf("failed to add user %s: %w", name, err)
	}
	data, err := u.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(e.dir, name+".kubeconfig")
	return path, os.WriteFile(path, data, 0o600)
}

// UserConfig returns a rest.Config that authenticates as name in groups.
func (e *Env) UserConfig(name string, groups []string) (*rest.Config, error) {
	u, err := e.ControlPlane.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, err
	}
	cfg := u.Config()
	cfg.QPS, cfg.Burst = 500, 1000
	return cfg, nil
}

// Stop stops the control plane and removes the kubeconfigs.
func (e *Env) Stop() error {
	err := e.Environment.Stop()
	_ = os.RemoveAll(e.dir)
	return err
}

// NewNamespace creates a fresh namespace with a random suffix and returns its name.
func (e *Env) NewNamespace(ctx context.Context, prefix string) (string, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: prefix + "-" + rand.String(5)}}
	if err := e.Client.Create(ctx, ns); err != nil {
		return "", err
	}
	return ns.Name, nil
}

// Kubectl runs the built kubectl against the control plane as the admin user and returns
// its combined output.
func (e *Env) Kubectl(ctx context.Context, args ...string) (string, error) {
	return e.KubectlAs(ctx, e.Kubeconfig, args...)
}

// KubectlInput runs the built kubectl as the admin user with stdin as its standard input.
func (e *Env) KubectlInput(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, Kubectl(), append([]string{"--kubeconfig", e.Kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECTL_COMMAND_HEADERS=false", "NO_COLOR=1")
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// KubectlAs runs the built kubectl with the given kubeconfig.
func (e *Env) KubectlAs(ctx context.Context, kubeconfig string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, Kubectl(), append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECTL_COMMAND_HEADERS=false", "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// ControllerManager is a real kube-controller-manager process.
type ControllerManager struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// DefaultControllers are the controllers tests need: workloads, Jobs, CronJobs and garbage collection.
var DefaultControllers = []string{
	"deployment-controller", "replicaset-controller", "statefulset-controller",
	"job-controller", "cronjob-controller", "garbage-collector-controller",
}

// StartControllerManager runs kube-controller-manager against the control plane. Its log goes
// to a file in the env's directory (path in the returned value's LogPath).
func (e *Env) StartControllerManager(controllers ...string) (*ControllerManager, error) {
	if len(controllers) == 0 {
		controllers = DefaultControllers
	}
	bin, err := RequireBinary(filepath.Join(KubeAssetsDir(), "kube-controller-manager"))
	if err != nil {
		return nil, err
	}
	logf, err := os.CreateTemp(e.dir, "kube-controller-manager-*.log")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		logf.Close()
		return nil, err
	}
	cmd := exec.Command(bin,
		"--kubeconfig="+e.Kubeconfig,
		"--controllers="+strings.Join(controllers, ","),
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(port), "--leader-elect=false",
		"--concurrent-job-syncs=20", "--concurrent-cron-job-syncs=20",
		"--kube-api-qps=500", "--kube-api-burst=1000",
		"--v=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("failed to start kube-controller-manager: %w", err)
	}
	cm := &ControllerManager{cmd: cmd, done: make(chan struct{}), log: logf}
	go func() { _ = cmd.Wait(); close(cm.done) }()
	if err := cm.waitHealthy(port, time.Minute); err != nil {
		_ = cm.Stop()
		return nil, fmt.Errorf("kube-controller-manager did not start: %w; see its log %s", err, logf.Name())
	}
	return cm, nil
}

// waitHealthy polls kube-controller-manager's /healthz on 127.0.0.1:port until it answers ok,
// failing at once when the process exits (a bad flag, a port in use) instead of leaving the
// tests to time out on controllers that never run.
func (cm *ControllerManager) waitHealthy(port int, timeout time.Duration) error {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		// Its serving certificate is self-signed, on loopback.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback health check of a process we started
	}}
	defer hc.CloseIdleConnections()
	url := fmt.Sprintf("https://127.0.0.1:%d/healthz", port)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := errors.New("no answer yet")
	for {
		select {
		case <-cm.done:
			return fmt.Errorf("it exited (%v)", cm.cmd.ProcessState)
		case <-deadline.C:
			return fmt.Errorf("/healthz not ok after %s: %w", timeout, last)
		case <-tick.C:
			resp, err := hc.Get(url)
			if err != nil {
				last = err
				continue
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
		}
	}
}

// LogPath is the file kube-controller-manager logs to.
func (cm *ControllerManager) LogPath() string { return cm.log.Name() }

// Stop ends the process this helper started (by its PID) and waits for it.
func (cm *ControllerManager) Stop() error {
	if cm == nil || cm.cmd.Process == nil {
		return nil
	}
	if err := stopProcess(cm.cmd.Process, cm.done, 10*time.Second); err != nil {
		return err
	}
	return cm.log.Close()
}
