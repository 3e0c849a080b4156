package framework

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Chart is the Helm chart's directory.
func Chart() string { return filepath.Join(RootDir(), "charts", "kdc-etcd-backup") }

// HelmBinary is the helm built by hack/bins.sh.
func HelmBinary() string { return filepath.Join(RootDir(), "bin", "tools", "helm") }

// Helm runs helm with its cache, config and data in stateDir (never the user's) and, when
// kubeconfig is set, against that cluster. It returns stdout; an error carries stdout and stderr.
func Helm(ctx context.Context, stateDir, kubeconfig string, args ...string) (string, error) {
	bin, err := RequireBinary(HelmBinary())
	if err != nil {
		return "", err
	}
	if kubeconfig != "" {
		args = append(args, "--kubeconfig", kubeconfig)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(stateDir, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(stateDir, "config"),
		"HELM_DATA_HOME="+filepath.Join(stateDir, "data"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s%s", args[0], err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}
