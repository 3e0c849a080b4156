package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"kube-dc.com/etcd-backup/certs"
	"kube-dc.com/etcd-backup/controller/backup"
	"kube-dc.com/etcd-backup/engine"
	"kube-dc.com/etcd-backup/version"
)

// managerGCPercent is the manager's GOGC when neither GOGC nor GOMEMLIMIT is set: its heap is the
// informer caches, and a lower GOGC bounds the garbage on top of them (docs/benchmarks.md,
// "Backup controller").
const managerGCPercent = 50

// setManagerGC sets the manager's GOGC unless the environment sets the collector.
func setManagerGC() {
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetGCPercent(managerGCPercent)
	}
}

// managerOptions are the manager's flags.
type managerOptions struct {
	metricsAddr, probeAddr     string
	leaderElect                bool
	leaderElectionNamespace    string
	leaderElectionID           string
	webhookHost                string
	webhookPort                int
	certDir                    string
	selfSignedHosts            string
	image                      string
	s3Endpoint                 string
	controllerUsername         string
	enableWebhooks, enableCtrl bool
	restoreTimeouts            engine.Timeouts
	backupSpreadWindow         time.Duration
	maxConcurrentBackups       int
}

func (o *managerOptions) bind(fs *flag.FlagSet) {
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "address the metrics endpoint binds to; 0 disables it")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "address the health and readiness probes bind to")
	fs.BoolVar(&o.leaderElect, "leader-elect", true, "elect a leader so only one replica runs the controllers (webhooks are served by every replica)")
	fs.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader election Lease (default: the pod's namespace)")
	fs.StringVar(&o.leaderElectionID, "leader-election-id", "kdc-etcd-backup-manager", "name of the leader election Lease")
	fs.StringVar(&o.webhookHost, "webhook-host", "", "address the admission webhooks bind to (default: all)")
	fs.IntVar(&o.webhookPort, "webhook-port", 9443, "port the admission webhooks are served on")
	fs.StringVar(&o.certDir, "webhook-cert-dir", "/tmp/k8s-webhook-server/serving-certs", "directory with tls.crt and tls.key (the cert-manager Certificate's Secret)")
	fs.StringVar(&o.selfSignedHosts, "self-signed-certs", "", "comma-separated hosts: write a self-signed certificate for them into the cert dir when it holds no valid one (local runs without cert-manager)")
	fs.StringVar(&o.image, "image", os.Getenv("MANAGER_IMAGE"), "image of the backup and restore Jobs: the manager's own image (env MANAGER_IMAGE)")
	fs.StringVar(&o.s3Endpoint, "s3-endpoint", os.Getenv("S3_ENDPOINT"), "default S3 endpoint URL when neither the KdcCluster nor the ObjectBucketClaim names one (env S3_ENDPOINT)")
	fs.StringVar(&o.controllerUsername, "controller-username", defaultControllerUsername(), "username of the controller's identity: the only one allowed to write restore bookkeeping annotations")
	fs.BoolVar(&o.enableWebhooks, "enable-webhooks", true, "serve the admission webhooks")
	fs.BoolVar(&o.enableCtrl, "enable-controllers", true, "run the backup and restore controllers")
	fs.DurationVar(&o.backupSpreadWindow, "backup-spread-window", backup.DefaultSpreadWindow, "clusters sharing a backup schedule run up to this much later than it, each at its own fixed offset (0 runs every backup exactly on its schedule)")
	fs.IntVar(&o.maxConcurrentBackups, "max-concurrent-backups", backup.DefaultMaxConcurrentBackups, "at most this many backup Jobs run at once in the management cluster; the others wait, in order (0: no limit)")
	t := &o.restoreTimeouts
	fs.DurationVar(&t.Validating, "restore-validating-timeout", engine.DefaultValidatingTimeout, "restore: deadline of the Validating phase (the verify Job)")
	fs.DurationVar(&t.Drain, "restore-drain-timeout", engine.DefaultDrainTimeout, "restore: deadline of DrainingControlPlane")
	fs.DurationVar(&t.EtcdStop, "restore-etcd-stop-timeout", engine.DefaultEtcdStopTimeout, "restore: deadline of StoppingEtcd")
	fs.DurationVar(&t.RestoreJob, "restore-job-timeout", engine.DefaultRestoreJobTimeout, "restore: deadline of RestoringSnapshot (the restore Job)")
	fs.DurationVar(&t.EtcdStart, "restore-etcd-start-timeout", engine.DefaultEtcdStartTimeout, "restore: deadline of StartingEtcd")
	fs.DurationVar(&t.ControlPlaneStart, "restore-control-plane-start-timeout", engine.DefaultControlPlaneStartTimeout, "restore: deadline of StartingControlPlane")
	fs.DurationVar(&t.Recovery, "restore-recovery-timeout", engine.DefaultRecoveryTimeout, "restore: deadline of bringing the cluster back after a failure")
}

// defaultControllerUsername is the manager's own service account, from the downward API.
func defaultControllerUsername() string {
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = "kdc-etcd-backup-system"
	}
	sa := os.Getenv("SERVICE_ACCOUNT")
	if sa == "" {
		sa = "kdc-etcd-backup-manager"
	}
	return "system:serviceaccount:" + ns + ":" + sa
}

func runManager(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("kdc-etcd-backup-manager", flag.ContinueOnError)
	var o managerOptions
	o.bind(fs)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	klog.InitFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 64
	}
	setManagerGC()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("manager")
	log.Info("Starting", "version", version.String())
	if err := startManager(ctx, o); err != nil {
		log.Error(err, "Manager stopped")
		return 1
	}
	return 0
}

// managerCacheSyncTimeout bounds the wait for the controllers' caches to fill at start.
const managerCacheSyncTimeout = 10 * time.Minute

func startManager(ctx context.Context, o managerOptions) error {
	if o.selfSignedHosts != "" {
		if _, err := certs.EnsureSelfSigned(o.certDir, strings.Split(o.selfSignedHosts, ","), time.Now()); err != nil {
			return fmt.Errorf("failed to write self-signed certificate: %w", err)
		}
	}
	watcher := certs.NewWatcher(o.certDir)
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("failed to load kubeconfig: %w", err)
	}
	scheme, err := newScheme()
	if err != nil {
		return fmt.Errorf("failed to build the scheme: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress:        o.probeAddr,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              o.leaderElectionID,
		LeaderElectionNamespace:       o.leaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		// Nothing reads the managed fields, and the server-side applied CronJobs carry large ones.
		Cache: cache.Options{DefaultTransform: cache.TransformStripManagedFields()},
		// The first list of every StatefulSet, Job and KdcCluster of a 10,000-tenant management
		// cluster can take minutes on a busy API server; the default 2 minutes stops the manager.
		Controller: config.Controller{CacheSyncTimeout: managerCacheSyncTimeout},
		WebhookServer: webhook.NewServer(webhook.Options{
			Host:    o.webhookHost,
			Port:    o.webhookPort,
			CertDir: o.certDir,
			TLSOpts: []func(*tls.Config){watcher.TLSOpt},
		}),
	})
	if err != nil {
		return fmt.Errorf("failed to create manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if o.enableWebhooks {
		if err := mgr.Add(watcher); err != nil {
			return err
		}
		if err := mgr.AddReadyzCheck("serving-certificate", watcher.ReadyCheck); err != nil {
			return err
		}
		if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
			return err
		}
	} else if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := setupComponents(mgr, o); err != nil {
		return err
	}
	return mgr.Start(ctx)
}
