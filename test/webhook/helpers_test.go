package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/test/framework"
	"kube-dc.com/etcd-backup/webhook"
)

// controllerUser is the controller's identity in these tests, shaped like the manager's
// service account.
const controllerUser = "system:serviceaccount:kdc-etcd-backup-system:kdc-etcd-backup-manager"

func init() {
	log.SetLogger(logr.Discard())
}

// webhookManifests is the configuration controller-gen generates from the webhook markers.
func webhookManifests() string {
	return filepath.Join(framework.RootDir(), "manifests", "webhook", "manifests.yaml")
}

// webhookInstallOptions installs the generated webhook configurations, pointed at a loopback
// server with a certificate envtest makes.
func webhookInstallOptions() *envtest.WebhookInstallOptions {
	return &envtest.WebhookInstallOptions{Paths: []string{webhookManifests()}}
}

// webhookManager is a manager serving the webhooks, as cmd/kdc-etcd-backup-manager runs them.
type webhookManager struct {
	mgr  ctrl.Manager
	done chan error
}

// startWebhooks runs a manager serving the webhooks on host:port with the certificate in
// certDir until ctx ends.
func startWebhooks(ctx context.Context, cfg *rest.Config, host string, port int, certDir string) (*webhookManager, error) {
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 framework.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		WebhookServer:          crwebhook.NewServer(crwebhook.Options{Host: host, Port: port, CertDir: certDir}),
	})
	if err != nil {
		return nil, fmt.Errorf("failed to create manager: %w", err)
	}
	if err := webhook.SetupWithManager(mgr, webhook.Options{ControllerUsername: controllerUser}); err != nil {
		return nil, err
	}
	m := &webhookManager{mgr: mgr, done: make(chan error, 1)}
	go func() { m.done <- mgr.Start(ctx) }()
	return m, nil
}

// serving reports whether the webhook server accepts TLS connections.
func (m *webhookManager) serving() error {
	return m.mgr.GetWebhookServer().StartedChecker()(nil)
}

// annotationsPatch is the merge patch `kubectl annotate` sends: a nil value removes the key.
func annotationsPatch(annotations map[string]*string) client.Patch {
	data, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	if err != nil {
		panic(err)
	}
	return client.RawPatch(types.MergePatchType, data)
}

// set returns a patch value that sets an annotation.
func set(v string) *string { return &v }

// newCluster is a KdcCluster named name in ns using datastore ds.
func newCluster(ns, name, ds string) *kdcv1alpha1.KdcCluster {
	return &kdcv1alpha1.KdcCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       kdcv1alpha1.KdcClusterSpec{DataStore: kdcv1alpha1.DataStoreRef{Name: ds}},
	}
}

// newDataStore is a KdcClusterDatastore with replicas etcd members.
func newDataStore(ns, name string, replicas int32) *kdcv1alpha1.KdcClusterDatastore {
	return &kdcv1alpha1.KdcClusterDatastore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       kdcv1alpha1.KdcClusterDatastoreSpec{Etcd: kdcv1alpha1.EtcdSpec{Replicas: replicas}},
	}
}

// userClient is a client authenticating as user (in system:masters, so only the webhooks judge).
func userClient(env *framework.Env, user string, tweaks ...func(*rest.Config)) (client.Client, error) {
	cfg, err := env.UserConfig(user, []string{"system:masters"})
	if err != nil {
		return nil, err
	}
	for _, tweak := range tweaks {
		tweak(cfg)
	}
	return client.New(cfg, client.Options{Scheme: framework.Scheme})
}
