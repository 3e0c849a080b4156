package certmanager

import (
	"context"

	"k8s.io/client-go/rest"

	"kube-dc.com/etcd-backup/test/certmanager/crds"
)

// CRDDir is the deploy/crds directory of the cert-manager module in go.mod (see package crds,
// which callers that need only the CRDs can import without compiling cert-manager's controllers).
func CRDDir() (string, error) { return crds.Dir() }

// CRDPaths returns cert-manager's CRD directory as a list, for framework.Options.ExtraCRDPaths
// or envtest.CRDInstallOptions.Paths.
func CRDPaths() ([]string, error) { return crds.Paths() }

// InstallCRDs installs cert-manager's CRDs into the cluster of cfg and waits until they are
// served. It is idempotent.
func InstallCRDs(ctx context.Context, cfg *rest.Config) error { return crds.Install(ctx, cfg) }
