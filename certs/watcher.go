package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
)

// File names inside the cert dir, as cert-manager writes them into a Certificate's Secret.
const (
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
	CAFile   = "ca.crt"
)

// waitForFilesInterval is how often the Watcher looks for a certificate that is not there yet.
const waitForFilesInterval = 2 * time.Second

// Watcher serves the certificate in a directory and reloads it on rotation.
type Watcher struct {
	certPath, keyPath string

	mu sync.RWMutex
	cw *certwatcher.CertWatcher
}

// NewWatcher returns a Watcher for dir/tls.crt and dir/tls.key. Nothing is read until Start.
func NewWatcher(dir string) *Watcher {
	return &Watcher{certPath: filepath.Join(dir, CertFile), keyPath: filepath.Join(dir, KeyFile)}
}

// Start waits until the files can be loaded, then watches them until ctx ends. It implements
// manager.Runnable.
func (w *Watcher) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("certs")
	var cw *certwatcher.CertWatcher
	err := wait.PollUntilContextCancel(ctx, waitForFilesInterval, true, func(context.Context) (bool, error) {
		var err error
		if cw, err = certwatcher.New(w.certPath, w.keyPath); err != nil {
			log.Info("Waiting for the serving certificate", "cert", w.certPath, "error", err.Error())
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return nil // ctx ended before a certificate appeared
	}
	w.mu.Lock()
	w.cw = cw
	w.mu.Unlock()
	log.Info("Serving certificate loaded", "cert", w.certPath)
	return cw.Start(ctx)
}

// NeedLeaderElection is false: every replica serves the webhook.
func (w *Watcher) NeedLeaderElection() bool { return false }

// GetCertificate is a tls.Config.GetCertificate that serves the current certificate.
func (w *Watcher) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	w.mu.RLock()
	cw := w.cw
	w.mu.RUnlock()
	if cw == nil {
		return nil, errors.New("no serving certificate loaded yet")
	}
	return cw.GetCertificate(hello)
}

// TLSOpt sets GetCertificate on a tls.Config (for webhook.Options.TLSOpts).
func (w *Watcher) TLSOpt(c *tls.Config) { c.GetCertificate = w.GetCertificate }

// ReadyCheck is a healthz.Checker: ready only once a certificate that is valid now is loaded.
func (w *Watcher) ReadyCheck(_ *http.Request) error {
	cert, err := w.GetCertificate(nil)
	if err != nil {
		return err
	}
	return checkValid(cert, time.Now())
}

func checkValid(cert *tls.Certificate, now time.Time) error {
	leaf := cert.Leaf
	if leaf == nil {
		if len(cert.Certificate) == 0 {
			return errors.New("serving certificate is empty")
		}
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("failed to parse serving certificate: %w", err)
		}
	}
	if now.Before(leaf.NotBefore) {
		return fmt.Errorf("serving certificate is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("serving certificate expired at %s; check the cert-manager Certificate", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}
