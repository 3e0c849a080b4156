package main

import (
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"

	obcv1alpha1 "kube-dc.com/etcd-backup/api/objectbucket/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/controller/backup"
	"kube-dc.com/etcd-backup/controller/restore"
	"kube-dc.com/etcd-backup/webhook"
)

// newScheme is the manager's scheme.
func newScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, kdcv1alpha1.AddToScheme, obcv1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	return scheme, nil
}

// setupComponents registers the webhooks and controllers with the manager.
func setupComponents(mgr ctrl.Manager, o managerOptions) error {
	if o.enableWebhooks {
		if err := webhook.SetupWithManager(mgr, webhook.Options{ControllerUsername: o.controllerUsername}); err != nil {
			return err
		}
	}
	if o.enableCtrl {
		if err := backup.Setup(mgr, backup.Options{Image: o.image, S3Endpoint: o.s3Endpoint,
			SpreadWindow: o.backupSpreadWindow, MaxConcurrentBackups: o.maxConcurrentBackups}); err != nil {
			return err
		}
		if err := restore.Setup(mgr, restore.Options{Image: o.image, S3Endpoint: o.s3Endpoint, Timeouts: o.restoreTimeouts}); err != nil {
			return err
		}
	}
	return nil
}
