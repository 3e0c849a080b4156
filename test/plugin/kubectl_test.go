package plugin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"kube-dc.com/etcd-backup/test/framework"
)

// buildPlugin builds cmd/kubectl-kdc, as `make build` does into bin/, into a directory of its
// own, so the test runs the plugin of this checkout whatever bin/ holds. It returns the directory.
func buildPlugin() string {
	dir := GinkgoT().TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "kubectl-kdc"), "./cmd/kubectl-kdc")
	cmd.Dir = framework.RootDir()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	ExpectWithOffset(1, err).NotTo(HaveOccurred(), "go build: %s", out)
	return dir
}

var _ = Describe("kubectl's plugin discovery", func() {
	It("runs kubectl kdc backups through the built kubectl with the plugin on PATH", func() {
		kubectl, err := framework.RequireBinary(framework.Kubectl())
		Expect(err).NotTo(HaveOccurred())
		ns, err := env.NewNamespace(ctx, "kubectl")
		Expect(err).NotTo(HaveOccurred())
		c := clusterFixture{ns: ns, name: "prod"}.create()
		res := realBackup(c, time.Now().UTC().Truncate(time.Second))
		binDir := buildPlugin()

		run := func(args ...string) (string, string, error) {
			cmd := exec.CommandContext(ctx, kubectl, args...)
			cmd.Env = append(os.Environ(),
				"PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"),
				"KUBECONFIG="+env.Kubeconfig,
				"KUBECTL_COMMAND_HEADERS=false")
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			return stdout.String(), stderr.String(), err
		}

		out, errOut, err := run("plugin", "list")
		Expect(err).NotTo(HaveOccurred(), errOut)
		Expect(out).To(ContainSubstring(filepath.Join(binDir, "kubectl-kdc")))

		out, errOut, err = run("kdc", "backups", "prod", "-n", ns)
		Expect(err).NotTo(HaveOccurred(), errOut)
		rows := columns(out)
		Expect(rows).To(HaveLen(1))
		Expect(rows[0][0]).To(Equal(res.Key))
		Expect(rows[0][5]).To(Equal("sha256"))

		out, errOut, err = run("kdc", "backups", "nope", "-n", ns)
		var exitErr *exec.ExitError
		Expect(err).To(BeAssignableToTypeOf(exitErr))
		Expect(err.(*exec.ExitError).ExitCode()).To(Equal(1))
		Expect(out).To(BeEmpty())
		Expect(errOut).To(Equal(fmt.Sprintf("error: KdcCluster \"nope\" not found in namespace %q; list them with: kubectl get kdc-cl -A\n", ns)))
	})
})
