package env

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2/textlogger"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	obcv1alpha1 "kube-dc.com/etcd-backup/api/objectbucket/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/test/certmanager"
	"kube-dc.com/etcd-backup/test/framework"
	"kube-dc.com/etcd-backup/test/kamaji"
	"kube-dc.com/etcd-backup/test/nodeagent"
)

// Names of the install (the chart, or manifests/default).
const (
	ManagerNamespace  = "kdc-etcd-backup-system"
	ManagerDeployment = "kdc-etcd-backup-manager"
	WebhookService    = "kdc-etcd-backup-webhook-service"
	// ValidatingWebhook and MutatingWebhook are the webhook configurations cert-manager's CA
	// injector fills.
	ValidatingWebhook = "kdc-etcd-backup-validating-webhook-configuration"
	MutatingWebhook   = "kdc-etcd-backup-mutating-webhook-configuration"
)

// Controllers are the kube-controller-manager controllers the story needs: the workload
// controllers that drive the pods and the garbage collector. No endpoint controllers: they
// cannot publish loopback pod addresses.
var Controllers = framework.DefaultControllers

// Options tune Start.
type Options struct {
	// Logf receives one line per step (the demo prints it with timings, the test logs it).
	Logf func(format string, args ...any)
	// Dir holds logs and state; default a new directory under /var/tmp (not /tmp, which Job pods
	// mount an emptyDir over), kept on Stop so the logs can be read unless RemoveDir is set.
	Dir string
	// RemoveDir removes Dir on Stop.
	RemoveDir bool
	// MaxProbePeriod caps readiness probe periods of the node agent; default its own (1s).
	MaxProbePeriod time.Duration
	// Install is how the manager is installed: InstallHelm (default, the chart) or
	// InstallKustomize (`kubectl apply -k manifests/default`).
	Install string
}

// The two installs of the manager.
const (
	InstallHelm      = "helm"
	InstallKustomize = "kustomize"
)

// ReleaseName is the Helm release of the manager.
const ReleaseName = "kdc-etcd-backup"

// Env is the whole management environment on loopback: control plane (kube-apiserver, etcd,
// kube-controller-manager), MinIO, cert-manager, the node agent and the manager, running the
// working tree's image, installed with the Helm chart (or manifests/default).
type Env struct {
	Mgmt   *framework.Env
	Client client.Client
	Kube   kubernetes.Interface
	Agent  *nodeagent.Agent
	// Kamaji is the in-process stand-in for Kamaji's TenantControlPlane controller (test/kamaji).
	Kamaji *kamaji.StandIn
	// Dir holds the logs: kube-controller-manager, MinIO, the node agent (agent.log) and the
	// pods' containers (nodeagent/pods/*/logs).
	Dir string
	// Kubeconfig is the management cluster's admin kubeconfig (kept in Dir).
	Kubeconfig string

	minio *framework.MinIO
	opts  Options
	// binDir holds the working tree's kubectl-kdc.
	binDir string
	stops  []namedStop
}

type namedStop struct {
	name string
	f    func() error
}

func (e *Env) logf(format string, args ...any) {
	if e.opts.Logf != nil {
		e.opts.Logf(format, args...)
	}
}

func (e *Env) onStop(name string, f func() error) { e.stops = append(e.stops, namedStop{name, f}) }

// Start brings the whole environment up. On error everything started so far is stopped.
func Start(ctx context.Context, opts Options) (_ *Env, err error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("the e2e environment needs root: the node agent runs each pod in its own mount namespace (uid %d)", os.Geteuid())
	}
	if err := requireBinaries(); err != nil {
		return nil, err
	}
	e := &Env{opts: opts}
	defer func() {
		if err != nil {
			_ = e.Stop()
		}
	}()
	if e.Dir = opts.Dir; e.Dir == "" {
		// Not under /tmp: a pod that mounts an emptyDir at /tmp (the verify and restore Jobs)
		// would hide its own hosts file and binary there.
		if e.Dir, err = os.MkdirTemp("/var/tmp", "kdc-e2e-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(e.Dir, 0o755); err != nil {
		return nil, err
	}
	// Pods run as non-root users and exec binaries from here.
	if err := os.Chmod(e.Dir, 0o755); err != nil {
		return nil, err
	}
	if e.binDir, err = pluginBinary(filepath.Join(e.Dir, "bin")); err != nil {
		return nil, err
	}
	archive, err := framework.BuildImage(filepath.Join(e.Dir, "image"))
	if err != nil {
		return nil, err
	}
	digest, err := imageDigest(archive)
	if err != nil {
		return nil, err
	}
	e.logf("image %s built from the working tree (make image): %s", ImageRef, digest)
	// cert-manager's CA injector and the framework log through controller-runtime's global logger.
	ctrl.SetLogger(logr.Discard())
	// What runs in this process (cert-manager, the node agent) lives until Stop, not until ctx
	// ends: ctx only bounds the start, so that Stop can still tear down in order after the
	// caller's context was cancelled (Ctrl-C, the end of a test function).
	runCtx, cancelRun := context.WithCancel(context.Background())
	e.onStop("in-process components", func() error { cancelRun(); return nil })

	cmCRDs, err := certmanager.CRDPaths()
	if err != nil {
		return nil, fmt.Errorf("failed to find cert-manager's CRDs: %w", err)
	}
	e.Mgmt, err = framework.Start(framework.Options{
		ExtraCRDPaths: cmCRDs,
		// No kube-proxy: Services get ClusterIPs on loopback, which the node agent proxies to
		// ready pods. --enable-aggregator-routing cannot work here: Endpoints and EndpointSlices
		// reject loopback addresses, so the manager pods' 127.x addresses are never published.
		APIServerFlags: map[string]string{"service-cluster-ip-range": nodeagent.ServiceCIDR()},
	})
	if err != nil {
		return nil, err
	}
	e.onStop("management control plane", e.Mgmt.Stop)
	e.Client = e.Mgmt.Client
	if e.Kube, err = kubernetes.NewForConfig(e.Mgmt.Config); err != nil {
		return nil, err
	}
	e.Kubeconfig = filepath.Join(e.Dir, "management.kubeconfig")
	if err := copyFile(e.Mgmt.Kubeconfig, e.Kubeconfig); err != nil {
		return nil, err
	}
	e.logf("management control plane up: kube-apiserver %s (%s)", e.Mgmt.Config.Host, framework.KubeVersion)

	kcm, err := e.Mgmt.StartControllerManager(Controllers...)
	if err != nil {
		return nil, err
	}
	e.onStop("kube-controller-manager", kcm.Stop)
	e.logf("kube-controller-manager running (log %s)", kcm.LogPath())

	if e.minio, err = framework.RunMinIO(ctx, filepath.Join(e.Dir, "minio"), framework.MinIOOptions{}); err != nil {
		return nil, err
	}
	e.onStop("MinIO", e.minio.Stop)
	e.logf("MinIO (S3) on %s", e.minio.Endpoint)

	stopCM, err := certmanager.Start(runCtx, e.Mgmt.Config, certmanager.Options{})
	if err != nil {
		return nil, fmt.Errorf("failed to start cert-manager: %w", err)
	}
	e.onStop("cert-manager", stopCM)
	e.logf("cert-manager controllers and CA injector running in-process")

	agentLog, err := os.Create(filepath.Join(e.Dir, "agent.log"))
	if err != nil {
		return nil, err
	}
	logger := textlogger.NewLogger(textlogger.NewConfig(textlogger.Output(agentLog)))
	e.Agent = nodeagent.New(e.Mgmt.Config, nodeagent.Options{
		ImageArchives:  map[string]string{"kdc-etcd-backup": archive},
		StateDir:       filepath.Join(e.Dir, "nodeagent"),
		Logger:         &logger,
		MaxProbePeriod: opts.MaxProbePeriod,
	})
	if err := e.Agent.Start(runCtx); err != nil {
		agentLog.Close()
		return nil, err
	}
	e.onStop("node agent", func() error { e.Agent.Stop(); return agentLog.Close() })
	e.logf("node agent running pods as local processes (host %s, pod logs under %s)", e.Agent.HostIP(), filepath.Join(e.Dir, "nodeagent", "pods"))

	if err := e.startKamaji(runCtx); err != nil {
		return nil, err
	}

	if err := e.installManager(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// startKamaji runs the Kamaji stand-in in a manager of its own until Stop.
func (e *Env) startKamaji(ctx context.Context) error {
	mgr, err := ctrl.NewManager(e.Mgmt.Config, framework.ManagerOptions())
	if err != nil {
		return err
	}
	if e.Kamaji, err = kamaji.Setup(mgr); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	e.onStop("Kamaji stand-in", func() error { cancel(); return <-done })
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return errors.New("the Kamaji stand-in's caches did not sync")
	}
	e.logf("Kamaji stand-in (test/kamaji) reconciling TenantControlPlanes in-process")
	return nil
}

// Stop tears everything down in reverse order (tenants' control planes, Kamaji stand-in, node agent
// and its pods, cert-manager, MinIO, kube-controller-manager, control plane); the first error.
func (e *Env) Stop() error {
	var errs []error
	for i := len(e.stops) - 1; i >= 0; i-- {
		start := time.Now()
		err := e.stops[i].f()
		if d := time.Since(start); d > time.Second {
			e.logf("stopping %s took %s", e.stops[i].name, d.Round(10*time.Millisecond))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("failed to stop %s: %w", e.stops[i].name, err))
		}
	}
	e.stops = nil
	if e.opts.RemoveDir && e.Dir != "" {
		_ = os.RemoveAll(e.Dir)
	}
	return errors.Join(errs...)
}

// installManager installs the manager with the chart (Helm's install action against the
// management API server) or `kubectl apply -k manifests/default`, and waits until the manager
// Deployment is Available and the CA injector filled both webhook configurations.
func (e *Env) installManager(ctx context.Context) error {
	start := time.Now()
	switch e.opts.Install {
	case InstallHelm, "":
		// The namespace as the kustomize install makes it: restricted Pod Security.
		if err := e.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ManagerNamespace, Labels: map[string]string{
			"app.kubernetes.io/part-of": "kdc-etcd-backup", "pod-security.kubernetes.io/enforce": "restricted",
		}}}); err != nil {
			return err
		}
		out, err := framework.Helm(ctx, filepath.Join(e.Dir, "helm"), e.Kubeconfig, "install", ReleaseName, framework.Chart(), "--namespace", ManagerNamespace)
		if err != nil {
			return fmt.Errorf("failed to install the manager: %w", err)
		}
		e.logf("helm install %s charts/kdc-etcd-backup -n %s: %s", ReleaseName, ManagerNamespace, helmStatus(out))
	case InstallKustomize:
		out, err := e.Kubectl(ctx, "apply", "--server-side", "-k", filepath.Join(framework.RootDir(), "manifests", "default"))
		if err != nil {
			return fmt.Errorf("failed to install the manager: %w\n%s", err, out)
		}
		e.logf("kubectl apply -k manifests/default: %d objects", countLines(out))
	default:
		return fmt.Errorf("unknown install %q (want %s or %s)", e.opts.Install, InstallHelm, InstallKustomize)
	}
	err := poll(ctx, 3*time.Minute, 200*time.Millisecond, func() error {
		for _, name := range []string{ValidatingWebhook, MutatingWebhook} {
			var bundles [][]byte
			if name == ValidatingWebhook {
				var w admissionregistrationv1.ValidatingWebhookConfiguration
				if err := e.Client.Get(ctx, client.ObjectKey{Name: name}, &w); err != nil {
					return err
				}
				for _, h := range w.Webhooks {
					bundles = append(bundles, h.ClientConfig.CABundle)
				}
			} else {
				var w admissionregistrationv1.MutatingWebhookConfiguration
				if err := e.Client.Get(ctx, client.ObjectKey{Name: name}, &w); err != nil {
					return err
				}
				for _, h := range w.Webhooks {
					bundles = append(bundles, h.ClientConfig.CABundle)
				}
			}
			for _, b := range bundles {
				if len(b) == 0 {
					return fmt.Errorf("%s has no caBundle yet", name)
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cert-manager did not inject the CA into the webhook configurations: %w", err)
	}
	e.logf("cert-manager issued the serving certificate and injected its CA into both webhook configurations")
	err = poll(ctx, 90*time.Second, 200*time.Millisecond, func() error {
		var d appsv1.Deployment
		if err := e.Client.Get(ctx, client.ObjectKey{Namespace: ManagerNamespace, Name: ManagerDeployment}, &d); err != nil {
			return err
		}
		for _, c := range d.Status.Conditions {
			if c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue && d.Status.ReadyReplicas == *d.Spec.Replicas {
				return nil
			}
		}
		return fmt.Errorf("deployment %s: %d/%d ready", ManagerDeployment, d.Status.ReadyReplicas, *d.Spec.Replicas)
	})
	if err != nil {
		return fmt.Errorf("the manager did not become available: %w; pods:\n%s", err, e.describePods(ctx, ManagerNamespace))
	}
	// The endpoints kube-apiserver routes to come from the endpoint controllers; wait until the
	// webhook answers through them (a dry-run create of an invalid object must be rejected by it).
	err = poll(ctx, time.Minute, 200*time.Millisecond, func() error {
		out, err := e.KubectlInput(ctx, probeCluster, "apply", "--dry-run=server", "-f", "-")
		if err == nil {
			return errors.New("the webhook admitted an invalid restore request")
		}
		if !containsAny(out, "InvalidKey", "denied the request", "Invalid value") {
			return fmt.Errorf("webhook not reachable yet: %s", out)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("kube-apiserver cannot reach the webhook through Service %s: %w", WebhookService, err)
	}
	var pods corev1.PodList
	if err := e.Client.List(ctx, &pods, client.InNamespace(ManagerNamespace)); err != nil {
		return err
	}
	ips := []string{}
	for _, p := range pods.Items {
		ips = append(ips, p.Name+"="+p.Status.PodIP)
	}
	e.logf("manager Available in %s (pods %v); kube-apiserver reaches the webhook through Service %s", time.Since(start).Round(10*time.Millisecond), ips, WebhookService)
	return nil
}

// probeCluster is a KdcCluster with a malformed restore key; admission must reject it.
const probeCluster = `apiVersion: k8s.kube-dc.com/v1alpha1
kind: KdcCluster
metadata:
  name: webhook-probe
  namespace: default
  annotations:
    kube-dc.com/restore-from: "../webhook-probe.db"
spec:
  dataStore:
    name: none
`

// Kubectl runs the built kubectl as the management cluster's admin.
func (e *Env) Kubectl(ctx context.Context, args ...string) (string, error) {
	return e.Mgmt.Kubectl(ctx, args...)
}

// KubectlInput runs kubectl with stdin.
func (e *Env) KubectlInput(ctx context.Context, stdin string, args ...string) (string, error) {
	return e.Mgmt.KubectlInput(ctx, stdin, args...)
}

// KubectlKdc runs `kubectl kdc args...` as the management cluster's admin through the built
// kubectl's plugin discovery: the working tree's kubectl-kdc is first on PATH.
func (e *Env) KubectlKdc(ctx context.Context, args ...string) (string, error) {
	// kubectl finds a plugin only when its name comes first; the flags are the plugin's own.
	cmd := exec.CommandContext(ctx, framework.Kubectl(), append(append([]string{"kdc"}, args...), "--kubeconfig", e.Kubeconfig)...)
	cmd.Env = append(os.Environ(), "KUBECTL_COMMAND_HEADERS=false", "NO_COLOR=1",
		"PATH="+e.binDir+string(filepath.ListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// S3Endpoint is MinIO's URL.
func (e *Env) S3Endpoint() string { return e.minio.Endpoint }

// S3 is an S3 client of MinIO with its root credentials.
func (e *Env) S3() *s3.Client { return e.minio.S3Client() }

// NewProject creates the project namespace ns with what Rook creates for the ObjectBucketClaim
// managed-k8s-backups: the bucket NS-managed-k8s-backups, the claim (status Bound), its Secret
// with the access keys and its ConfigMap with the bucket's name, host and port.
func (e *Env) NewProject(ctx context.Context, ns string) error {
	if err := e.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	bucket := kdcv1alpha1.DefaultBucketName(ns)
	if _, err := e.S3().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		return fmt.Errorf("failed to create bucket %s: %w", bucket, err)
	}
	name := kdcv1alpha1.ObjectBucketClaimName
	obc := &obcv1alpha1.ObjectBucketClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       obcv1alpha1.ObjectBucketClaimSpec{BucketName: bucket, StorageClassName: "rook-ceph-bucket"},
	}
	if err := e.Client.Create(ctx, obc); err != nil {
		return err
	}
	obc.Status.Phase = obcv1alpha1.PhaseBound
	if err := e.Client.Status().Update(ctx, obc); err != nil {
		return fmt.Errorf("failed to mark the ObjectBucketClaim Bound: %w", err)
	}
	owner := []metav1.OwnerReference{{APIVersion: obcv1alpha1.GroupVersion.String(), Kind: "ObjectBucketClaim", Name: name, UID: obc.UID}}
	if err := e.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, OwnerReferences: owner},
		StringData: map[string]string{
			obcv1alpha1.SecretKeyAccessKeyID:     e.minio.AccessKey,
			obcv1alpha1.SecretKeySecretAccessKey: e.minio.SecretKey,
		},
	}); err != nil {
		return err
	}
	if err := e.Client.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, OwnerReferences: owner},
		Data: map[string]string{
			obcv1alpha1.ConfigMapKeyBucketName: bucket,
			obcv1alpha1.ConfigMapKeyBucketHost: framework.MinIOHost,
			obcv1alpha1.ConfigMapKeyBucketPort: strconv.Itoa(e.minio.Port()),
		},
	}); err != nil {
		return err
	}
	e.logf("project %s: bucket %s, ObjectBucketClaim %s Bound with its Secret and ConfigMap", ns, bucket, name)
	return nil
}

// describePods summarises the pods of ns with their log files, for error messages.
func (e *Env) describePods(ctx context.Context, ns string) string {
	var pods corev1.PodList
	if err := e.Client.List(ctx, &pods, client.InNamespace(ns)); err != nil {
		return err.Error()
	}
	s := ""
	for i := range pods.Items {
		p := &pods.Items[i]
		s += fmt.Sprintf("  %s phase=%s ip=%s", p.Name, p.Status.Phase, p.Status.PodIP)
		for _, c := range p.Status.ContainerStatuses {
			s += fmt.Sprintf(" %s(ready=%v restarts=%d", c.Name, c.Ready, c.RestartCount)
			if t := c.LastTerminationState.Terminated; t != nil {
				s += fmt.Sprintf(" lastExit=%d", t.ExitCode)
			}
			if t := c.State.Terminated; t != nil {
				s += fmt.Sprintf(" exit=%d msg=%q", t.ExitCode, t.Message)
			}
			s += fmt.Sprintf(" log %s)", e.Agent.LogPath(p, c.Name))
		}
		s += "\n"
	}
	out, _ := e.Kubectl(ctx, "get", "deployments,replicasets,statefulsets,jobs,pods,events", "-n", ns, "-o", "wide")
	return s + out
}

func requireBinaries() error {
	bins := []string{
		filepath.Join(framework.KubeAssetsDir(), "kube-apiserver"),
		filepath.Join(framework.KubeAssetsDir(), "kube-controller-manager"),
		framework.Kubectl(),
		filepath.Join(framework.EtcdDir(framework.EtcdVersion35), "etcd"),
		filepath.Join(framework.EtcdDir(framework.EtcdVersion35), "etcdutl"),
		framework.MinIOBinary(),
	}
	for _, b := range bins {
		if _, err := framework.RequireBinary(b); err != nil {
			return err
		}
	}
	return nil
}

// ImageRef is the product's image as the chart and manifests/default name it; the node agent
// runs it from the archive `make image` writes.
const ImageRef = "kdc-etcd-backup:v0.1.0"

// pluginBinary builds the working tree's kubectl plugin kubectl-kdc into dir and returns dir.
func pluginBinary(dir string) (string, error) {
	cmd := exec.Command("go", "build", "-trimpath", "-o", dir+string(filepath.Separator), "./cmd/kubectl-kdc")
	cmd.Dir = framework.RootDir()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("failed to build kubectl-kdc: %w\n%s", err, out)
	}
	return dir, nil
}

// imageDigest is the digest of the image in archive.
func imageDigest(archive string) (string, error) {
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		return "", err
	}
	d, err := img.Digest()
	return d.String(), err
}

// helmStatus is the STATUS line of helm install's summary.
func helmStatus(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if s, ok := strings.CutPrefix(l, "STATUS: "); ok {
			return "release " + s
		}
	}
	return strings.TrimSpace(out)
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}

func countLines(s string) int {
	n := 0
	for _, c := range s {
		if c == '\n' {
			n++
		}
	}
	return n
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
