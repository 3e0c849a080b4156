package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCheckValid(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	if _, err := EnsureSelfSigned(dir, []string{"svc.ns.svc"}, now); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		at      time.Time
		wantErr string
	}{
		{"valid now", now, ""},
		{"not yet valid", now.Add(-2 * time.Hour), "is not valid before"},
		{"expired", now.Add(SelfSignedValidity + time.Hour), "expired at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkValid(&pair, tt.at)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if tt.wantErr == "" && got != "" || tt.wantErr != "" && !strings.Contains(got, tt.wantErr) {
				t.Errorf("checkValid() = %q, want error containing %q", got, tt.wantErr)
			}
		})
	}
}

func TestEnsureSelfSigned(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name        string
		first, then []string
		thenAt      time.Duration
		wantReissue bool
	}{
		{"same hosts keep the certificate", []string{"a.ns.svc", "127.0.0.1"}, []string{"a.ns.svc", "127.0.0.1"}, 0, false},
		{"subset of hosts keeps the certificate", []string{"a.ns.svc", "b.ns.svc"}, []string{"b.ns.svc"}, 0, false},
		{"a new host reissues", []string{"a.ns.svc"}, []string{"a.ns.svc", "c.ns.svc"}, 0, true},
		{"an expired certificate is reissued", []string{"a.ns.svc"}, []string{"a.ns.svc"}, SelfSignedValidity + time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ca1, err := EnsureSelfSigned(dir, tt.first, now)
			if err != nil {
				t.Fatal(err)
			}
			ca2, err := EnsureSelfSigned(dir, tt.then, now.Add(tt.thenAt))
			if err != nil {
				t.Fatal(err)
			}
			if got := string(ca1) != string(ca2); got != tt.wantReissue {
				t.Errorf("reissued = %v, want %v", got, tt.wantReissue)
			}
			// The serving certificate verifies against the CA for every host asked for.
			leaf := loadLeaf(t, dir)
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(ca2)
			for _, h := range tt.then {
				if _, err := leaf.Verify(x509.VerifyOptions{DNSName: h, Roots: pool, CurrentTime: now.Add(tt.thenAt)}); err != nil {
					t.Errorf("certificate does not verify for %s: %v", h, err)
				}
			}
		})
	}
}

func TestWatcherReadyAndReload(t *testing.T) {
	dir := t.TempDir()
	w := NewWatcher(dir)
	if err := w.ReadyCheck(nil); err == nil {
		t.Fatal("ReadyCheck() succeeded before any certificate exists")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Start(ctx) }()

	if _, err := EnsureSelfSigned(dir, []string{"first.ns.svc"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return w.ReadyCheck(nil) == nil })
	if diff := cmp.Diff([]string{"first.ns.svc"}, servedNames(t, w)); diff != "" {
		t.Fatalf("served certificate (-want +got):\n%s", diff)
	}

	// Rotation: a new certificate in the same files is served without a restart.
	if err := os.Remove(filepath.Join(dir, CertFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureSelfSigned(dir, []string{"second.ns.svc"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return cmp.Equal([]string{"second.ns.svc"}, servedNames(t, w)) })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Start() = %v", err)
	}
}

func servedNames(t *testing.T, w *Watcher) []string {
	t.Helper()
	c, err := w.GetCertificate(nil)
	if err != nil {
		return nil
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.DNSNames
}

func loadLeaf(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// waitFor polls cond until it holds or 30 s pass.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		<-tick.C
	}
}
