package framework

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Make is `make args...` in the module root, for tests of the Makefile's own targets. A parent
// make's job server settings are dropped: they are not the child's to join.
func Make(args ...string) *exec.Cmd {
	cmd := exec.Command("make", append([]string{"--no-print-directory"}, args...)...)
	cmd.Dir = RootDir()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MAKEFLAGS=") && !strings.HasPrefix(kv, "MFLAGS=") && !strings.HasPrefix(kv, "MAKELEVEL=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd
}

// BuildImage runs `make image` into dir and returns the image archive: the working tree's image,
// never a stale bin/kdc-etcd-backup-image.tar.
func BuildImage(dir string) (string, error) {
	archive := filepath.Join(dir, "kdc-etcd-backup-image.tar")
	if out, err := Make("image", "IMAGE_DIR="+dir, "IMAGE_ARCHIVE="+archive).CombinedOutput(); err != nil {
		return "", fmt.Errorf("make image: %w\n%s", err, out)
	}
	return archive, nil
}
