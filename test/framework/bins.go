package framework

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
)

// Versions of the real components tests run, as built by hack/bins.sh.
const (
	KubeVersion     = "v1.37.2"
	EtcdVersion     = "v3.7.3"
	EtcdVersion36   = "v3.6.16"
	EtcdVersion35   = "v3.5.35"
	binsScript      = "hack/bins.sh"
	missingBinaries = "run `make bins` (hack/bins.sh) to build the test binaries"
)

var (
	rootOnce sync.Once
	rootDir  string
)

// RootDir is the module root (the directory of go.mod), found from this source file, so tests
// need no environment variable to find bin/.
func RootDir() string {
	rootOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		dir := filepath.Dir(file)
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				rootDir = dir
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				panic("framework: go.mod not found above " + file)
			}
			dir = parent
		}
	})
	return rootDir
}

// KubeAssetsDir is the envtest KUBEBUILDER_ASSETS directory: kube-apiserver,
// kube-controller-manager, kubectl and etcd.
func KubeAssetsDir() string { return filepath.Join(RootDir(), "bin", "k8s") }

// EtcdDir is the directory of etcd, etcdctl and etcdutl of version v.
func EtcdDir(v string) string { return filepath.Join(RootDir(), "bin", "etcd-"+v) }

// MinIOBinary is the MinIO server binary.
func MinIOBinary() string { return filepath.Join(RootDir(), "bin", "minio", "minio") }

// Kubectl is the kubectl built by hack/bins.sh (the machine's own kubectl may be anything).
func Kubectl() string { return filepath.Join(KubeAssetsDir(), "kubectl") }

// RequireBinary returns path if it is executable, else an error saying how to build it.
func RequireBinary(path string) (string, error) {
	if _, err := exec.LookPath(path); err != nil {
		return "", fmt.Errorf("test binary %s is missing: %s", path, missingBinaries)
	}
	return path, nil
}
