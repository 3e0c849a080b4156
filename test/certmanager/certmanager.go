package certmanager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/discovery"
	kscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	cmscheme "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/scheme"
	"github.com/cert-manager/cert-manager/pkg/controller"
	"github.com/cert-manager/cert-manager/pkg/controller/cainjector"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"

	// The controllers Start runs register themselves in controller.Known() from init, and the
	// issuers controller builds its issuers from pkg/issuer's registry, filled the same way;
	// cmd/controller/app imports the same packages.
	crapprover "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	crca "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	crselfsigned "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	"github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	"github.com/cert-manager/cert-manager/pkg/controller/issuers"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// Controllers are the names (as in cert-manager's --controllers flag) of the cert-manager
// controllers Start runs: what the CA and SelfSigned issuers and the Certificate life cycle need.
var Controllers = []string{
	issuers.ControllerName,
	clusterissuers.ControllerName,
	crapprover.ControllerName,
	crca.CRControllerName,
	crselfsigned.CRControllerName,
	trigger.ControllerName,
	keymanager.ControllerName,
	requestmanager.ControllerName,
	issuing.ControllerName,
	readiness.ControllerName,
	revisionmanager.ControllerName,
}

// Options tune Start. The zero value uses cert-manager's defaults.
type Options struct {
	// ClusterResourceNamespace is where ClusterIssuers' Secrets (a CA ClusterIssuer's key pair)
	// live. Default kube-system, cert-manager's default.
	ClusterResourceNamespace string
	// Workers is the number of workers of each controller. Default 5, cert-manager's default.
	Workers int
	// Logger receives the controllers' and the CA injector's logs. Default: discarded.
	// (The CA injector's reconcilers also log to controller-runtime's global logger, ctrl.Log.)
	Logger logr.Logger
}

// Default values of cert-manager's controller configuration
// (internal/apis/config/controller/v1alpha1/defaults.go), which cannot be imported.
var (
	defaultCopiedAnnotationPrefixes = []string{"*", "-kubectl.kubernetes.io/", "-fluxcd.io/", "-argocd.argoproj.io/"}
	defaultMinimumBackoff           = time.Hour
	defaultMaximumBackoff           = 32 * time.Hour
)

// Start runs cert-manager's controllers and CA injector in this process against the API
// server of cfg, whose cert-manager CRDs must be installed (InstallCRDs). It returns once their
// informer caches are synced. stop ends them, waits for them and returns the first error they
// had before stop was called; cancelling ctx ends them too.
func Start(ctx context.Context, cfg *rest.Config, opts Options) (stop func() error, err error) {
	if opts.ClusterResourceNamespace == "" {
		opts.ClusterResourceNamespace = "kube-system"
	}
	if opts.Workers <= 0 {
		opts.Workers = 5
	}
	if opts.Logger.GetSink() == nil {
		opts.Logger = logr.Discard()
	}
	if err := checkCRDs(cfg); err != nil {
		return nil, err
	}

	ctx, cancel := context.WithCancel(logf.NewContext(ctx, opts.Logger))
	r := &runner{cancel: cancel}
	defer func() {
		if err != nil {
			_ = r.stop()
		}
	}()
	if r.dir, err = os.MkdirTemp("", "kdc-cert-manager-"); err != nil {
		return nil, err
	}
	// controller.NewContextFactory loads a kubeconfig file (as cert-manager's --kubeconfig).
	kubeconfig := filepath.Join(r.dir, "kubeconfig")
	if err := writeKubeconfig(cfg, kubeconfig); err != nil {
		return nil, err
	}
	if err := r.startControllers(ctx, kubeconfig, opts); err != nil {
		return nil, err
	}
	if err := r.startCAInjector(ctx, cfg, opts); err != nil {
		return nil, err
	}
	return r.stop, nil
}

// runner holds what Start started.
type runner struct {
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex
	err      error
	dir      string
	shutdown []func()
}

// run runs fn in a goroutine; an error it returns before stop ends everything, as an error of
// a controller ends cert-manager's binaries.
func (r *runner) run(ctx context.Context, name string, fn func() error) {
	r.wg.Go(func() {
		err := fn()
		if err == nil || ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		if r.err == nil {
			r.err = fmt.Errorf("cert-manager %s failed: %w", name, err)
		}
		r.mu.Unlock()
		r.cancel()
	})
}

// failed returns the error that ended the components, if one did, else err.
func (r *runner) failed(err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	return err
}

func (r *runner) stop() error {
	r.cancel()
	r.wg.Wait()
	for _, f := range r.shutdown {
		f()
	}
	if r.dir != "" {
		_ = os.RemoveAll(r.dir)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// startControllers does what cmd/controller/app.Run does, minus leader election, metrics,
// healthz and the controllers listed in doc.go as not running.
func (r *runner) startControllers(ctx context.Context, kubeconfig string, opts Options) error {
	factory, err := controller.NewContextFactory(ctx, controller.ContextOptions{
		Kubeconfig:         kubeconfig,
		KubernetesAPIQPS:   500,
		KubernetesAPIBurst: 1000,
		IssuerOptions: controller.IssuerOptions{
			ClusterResourceNamespace: opts.ClusterResourceNamespace,
		},
		CertificateOptions: controller.CertificateOptions{
			CopiedAnnotationPrefixes:                 defaultCopiedAnnotationPrefixes,
			CertificateRequestMinimumBackoffDuration: defaultMinimumBackoff,
			CertificateRequestMaximumBackoffDuration: defaultMaximumBackoff,
		},
	})
	if err != nil {
		return fmt.Errorf("failed to build the cert-manager controller context: %w", err)
	}
	base, err := factory.Build()
	if err != nil {
		return fmt.Errorf("failed to build the cert-manager controller context: %w", err)
	}
	known := controller.Known()
	for _, name := range Controllers {
		newController, ok := known[name]
		if !ok {
			return fmt.Errorf("cert-manager controller %s is not registered", name)
		}
		c, err := newController(factory)
		if err != nil {
			return fmt.Errorf("failed to create cert-manager controller %s: %w", name, err)
		}
		r.run(ctx, name, func() error { return c.Run(opts.Workers, ctx) })
	}
	// The controllers asked the shared factories for their informers while being created.
	base.SharedInformerFactory.Start(ctx.Done())
	base.KubeSharedInformerFactory.Start(ctx.Done())
	r.shutdown = append(r.shutdown, base.SharedInformerFactory.Shutdown, base.KubeSharedInformerFactory.Shutdown)
	for typ, ok := range base.SharedInformerFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return r.failed(fmt.Errorf("cert-manager informer for %v did not sync", typ))
		}
	}
	for typ, ok := range base.KubeSharedInformerFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return r.failed(fmt.Errorf("cert-manager informer for %s did not sync", typ))
		}
	}
	return nil
}

// startCAInjector does what cmd/cainjector/app.Run does, minus leader election and metrics,
// with every injectable kind and the Certificate data source enabled (the defaults).
func (r *runner) startCAInjector(ctx context.Context, cfg *rest.Config, opts Options) error {
	scheme := runtime.NewScheme()
	utilruntime.Must(kscheme.AddToScheme(scheme))
	utilruntime.Must(cmscheme.AddToScheme(scheme))
	utilruntime.Must(apiextensionsv1.AddToScheme(scheme))
	utilruntime.Must(apiregistrationv1.AddToScheme(scheme))
	mgr, err := ctrl.NewManager(util.RestConfigWithUserAgent(cfg, "cainjector"), ctrl.Options{
		Scheme: scheme,
		Logger: opts.Logger,
		Cache:  cache.Options{ReaderFailOnMissingInformer: true},
		Client: client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		// Off: metrics server and probes; no leader election. Controller names are
		// process-global in controller-runtime, so a second Start in one process must not clash.
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return fmt.Errorf("failed to create the cainjector manager: %w", err)
	}
	if err := cainjector.RegisterAllInjectors(ctx, mgr, cainjector.SetupOptions{
		EnableCertificatesDataSource: true,
		EnabledReconcilersFor: map[string]bool{
			cainjector.MutatingWebhookConfigurationName:   true,
			cainjector.ValidatingWebhookConfigurationName: true,
			cainjector.APIServiceName:                     true,
			cainjector.CustomResourceDefinitionName:       true,
		},
	}); err != nil {
		return fmt.Errorf("failed to register the ca injectors: %w", err)
	}
	r.run(ctx, "cainjector", func() error { return mgr.Start(ctx) })
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return r.failed(errors.New("cainjector caches did not sync"))
	}
	return nil
}

// checkCRDs fails early, with a hint, when cert-manager's API is not served: the controllers
// would otherwise wait forever for their informers.
func checkCRDs(cfg *rest.Config) error {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	if _, err := dc.ServerResourcesForGroupVersion("cert-manager.io/v1"); err != nil {
		return fmt.Errorf("cert-manager.io/v1 is not served, install the CRDs first (certmanager.InstallCRDs): %w", err)
	}
	return nil
}

// writeKubeconfig writes a kubeconfig file with the server and credentials of cfg.
func writeKubeconfig(cfg *rest.Config, path string) error {
	const name = "cert-manager"
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		CertificateAuthority:     cfg.CAFile,
		CertificateAuthorityData: cfg.CAData,
		InsecureSkipTLSVerify:    cfg.Insecure,
		TLSServerName:            cfg.ServerName,
	}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{
		ClientCertificate:     cfg.CertFile,
		ClientCertificateData: cfg.CertData,
		ClientKey:             cfg.KeyFile,
		ClientKeyData:         cfg.KeyData,
		Token:                 cfg.BearerToken,
		TokenFile:             cfg.BearerTokenFile,
		Username:              cfg.Username,
		Password:              cfg.Password,
	}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	kc.CurrentContext = name
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("failed to write kubeconfig for cert-manager: %w", err)
	}
	return nil
}
