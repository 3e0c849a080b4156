// Package crds locates and installs cert-manager's CRDs, from the deploy/crds directory of the
// cert-manager Go module in go.mod (found in the module cache with `go list -m`, downloaded with
// `go mod download` when absent). In v1.21 these files are plain YAML, not Helm templates, so
// they are used as they are; should a later version template them, render them here.
//
// It is separate from package certmanager so that tests which only need the CRDs (the
// server-side dry-run of the install) do not compile cert-manager's controllers.
package crds

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"kube-dc.com/etcd-backup/test/framework"
)

// ModulePath is the Go module the controllers and the CRDs come from; its version is the one
// in the project's go.mod.
const ModulePath = "github.com/cert-manager/cert-manager"

var (
	crdDirOnce sync.Once
	crdDir     string
	crdDirErr  error
)

// Dir is the deploy/crds directory of the cert-manager module the project builds with:
// Certificate, CertificateRequest, Issuer, ClusterIssuer, Order and Challenge CRDs as plain
// YAML. It runs the go command in the module root (`go list -m`, then `go mod download` if the
// module is not in the module cache yet).
func Dir() (string, error) {
	crdDirOnce.Do(func() {
		dir, err := moduleDir()
		if err != nil {
			crdDirErr = err
			return
		}
		crdDir = filepath.Join(dir, "deploy", "crds")
		if _, err := os.Stat(filepath.Join(crdDir, "cert-manager.io_certificates.yaml")); err != nil {
			crdDirErr = fmt.Errorf("cert-manager CRDs not found in %s: %w", crdDir, err)
		}
	})
	return crdDir, crdDirErr
}

// Paths returns the cert-manager CRD directory as a list, ready for
// framework.Options.ExtraCRDPaths or envtest.CRDInstallOptions.Paths.
func Paths() ([]string, error) {
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	return []string{dir}, nil
}

// Install installs cert-manager's CRDs into the cluster of cfg and waits until they are
// served. It is idempotent.
func Install(ctx context.Context, cfg *rest.Config) error {
	paths, err := Paths()
	if err != nil {
		return err
	}
	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{
		Paths:              paths,
		ErrorIfPathMissing: true,
		MaxTime:            time.Minute,
		PollInterval:       100 * time.Millisecond,
	}); err != nil {
		return fmt.Errorf("failed to install cert-manager CRDs: %w", err)
	}
	return ctx.Err()
}

type goModule struct {
	Dir   string
	Error string
}

// moduleDir finds the cert-manager module's directory with the go command, in the project's
// module root so that the version is the one of go.mod.
func moduleDir() (string, error) {
	m, err := goJSON("list", "-m", "-json", ModulePath)
	if err != nil {
		return "", err
	}
	if m.Dir != "" {
		return m.Dir, nil
	}
	if m, err = goJSON("mod", "download", "-json", ModulePath); err != nil {
		return "", err
	}
	if m.Dir == "" {
		return "", fmt.Errorf("go mod download %s gave no directory: %s", ModulePath, m.Error)
	}
	return m.Dir, nil
}

func goJSON(args ...string) (goModule, error) {
	var m goModule
	cmd := exec.Command("go", args...)
	cmd.Dir = framework.RootDir()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return m, fmt.Errorf("go %v: %w: %s", args, err, stderr.String())
	}
	if err := json.Unmarshal(out, &m); err != nil {
		return m, fmt.Errorf("failed to parse the output of go %v: %w", args, err)
	}
	return m, nil
}
