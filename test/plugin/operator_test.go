package plugin

import (
	"bytes"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/plugin"
	"kube-dc.com/etcd-backup/test/framework"
)

// kdcAs runs `kubectl kdc args...` in-process with the given kubeconfig.
func kdcAs(kubeconfig string, args ...string) result {
	var out, errOut bytes.Buffer
	streams := genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}
	code := plugin.Execute(ctx, streams, append(args, "--kubeconfig", kubeconfig))
	GinkgoWriter.Printf("$ kubectl kdc %s\n%s%s[exit %d]\n", strings.Join(args, " "), out.String(), errOut.String(), code)
	return result{stdout: out.String(), stderr: errOut.String(), code: code}
}

var _ = Describe("kubectl kdc with the kdc-etcd-backup-operator ClusterRole only", func() {
	It("is enough for status, backups, backup --wait and restore --latest in the bound namespace, and nothing more", func() {
		ns, err := env.NewNamespace(ctx, "operator")
		Expect(err).NotTo(HaveOccurred())
		c := clusterFixture{ns: ns, name: "prod"}.create()
		older := realBackup(c, time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC))
		newer := realBackup(c, time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC))
		Expect(older.Key).NotTo(Equal(newer.Key))

		Expect(env.ApplyOperatorRoles(ctx)).To(Succeed())
		Expect(env.BindClusterRole(ctx, "olivia", framework.OperatorClusterRole, ns)).To(Succeed())
		olivia, err := env.WriteKubeconfig("olivia", nil)
		Expect(err).NotTo(HaveOccurred())
		as := func(args ...string) result { return kdcAs(olivia, append(args, "-n", ns)...) }
		// RBAC is eventually consistent in the API server's authorizer cache.
		Eventually(func(g Gomega) {
			g.Expect(as("status").code).To(Equal(0))
		}).Should(Succeed())

		By("status")
		r := as("status", "-o", "json")
		Expect(r.code).To(Equal(0), r.stderr)
		Expect(r.stdout).To(ContainSubstring(`"name": "prod"`))

		By("backups: the bucket, endpoint and credentials as the controller finds them")
		r = as("backups", "prod")
		Expect(r.code).To(Equal(0), r.stderr)
		Expect(columns(r.stdout)).To(HaveLen(2))
		Expect(columns(r.stdout)[0][0]).To(Equal(newer.Key))

		By("backup --wait")
		done := make(chan result, 1)
		go func() {
			defer GinkgoRecover()
			done <- as("backup", "prod", "--wait", "--timeout", "2m")
		}()
		Eventually(func(g Gomega) {
			finishJobPods(g, manualJob(g, c), 0, mustJSON(realBackup(c, time.Now().UTC().Truncate(time.Second))))
		}).Should(Succeed())
		Eventually(done, time.Minute).Should(Receive(&r))
		Expect(r.code).To(Equal(0), r.stderr)

		By("restore --latest sets restore-from to the newest snapshot")
		r = as("restore", "prod", "--latest")
		Expect(r.code).To(Equal(0), r.stderr)
		got := &kdcv1alpha1.KdcCluster{}
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(c), got)).To(Succeed())
		latest := got.Annotations[kdcv1alpha1.AnnotationRestoreFrom]
		Expect(latest).To(HavePrefix("prod/prod-"))
		Expect(latest > newer.Key).To(BeTrue(), "the backup just taken is the newest: %s", latest)
		Expect(r.stdout).To(HavePrefix("Newest snapshot of prod: " + latest))

		By("nothing beyond: other namespaces, and the restore bookkeeping is the webhook's business")
		r = kdcAs(olivia, "status", "-A")
		Expect(r.code).To(Equal(1))
		Expect(r.stderr).To(ContainSubstring(`User "olivia" cannot list resource "kdcclusters"`))
		r = as("restore", "prod", "--from", newer.Key, "--manual")
		Expect(r.code).To(Equal(1))
		Expect(r.stderr).To(ContainSubstring("forbidden"))
	})
})
