package plugin

import (
	"bytes"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"kube-dc.com/etcd-backup/plugin"
)

var _ = Describe("kubectl kdc shell completion", func() {
	It("completes cluster names and, for restore --from, the cluster's snapshot keys newest first", func() {
		ns, err := env.NewNamespace(ctx, "complete")
		Expect(err).NotTo(HaveOccurred())
		c := clusterFixture{ns: ns, name: "prod"}.create()
		older := realBackup(c, time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC))
		newer := realBackup(c, time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC))

		// cobra's hidden __complete command prints one candidate per line, then :<directive>.
		// The word being completed is the last argument, so the kubeconfig goes first.
		candidates := func(args ...string) []string {
			var out, errOut bytes.Buffer
			code := plugin.Execute(ctx, genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut},
				append([]string{"__complete", "--kubeconfig", env.Kubeconfig}, args...))
			Expect(code).To(Equal(0), errOut.String())
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			return lines[:len(lines)-1]
		}
		Expect(candidates("restore", "-n", ns, "")).To(Equal([]string{"prod"}))
		Expect(candidates("restore", "-n", ns, "x")).To(BeEmpty())
		Expect(candidates("backups", "-n", ns, "prod", "")).To(BeEmpty(), "one CLUSTER only")
		Expect(candidates("restore", "prod", "-n", ns, "--from", "")).To(Equal([]string{newer.Key, older.Key}))
	})
})
