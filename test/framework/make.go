package framework

import (
	"os"
	"os/exec"
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
