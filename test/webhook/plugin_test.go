package webhook

import (
	"bytes"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/plugin"
)

var _ = Describe("kubectl kdc restore through the webhook", func() {
	It("shows the webhook's rejection exactly as kubectl does and says who requested an accepted restore", func() {
		ns, err := env.NewNamespace(ctx, "kdc-plugin")
		Expect(err).NotTo(HaveOccurred())
		Expect(env.Client.Create(ctx, newDataStore(ns, "prod-ds", 1))).To(Succeed())
		Expect(env.Client.Create(ctx, newCluster(ns, "prod", "prod-ds"))).To(Succeed())
		Expect(env.Client.Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kdc-operator"},
			Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{kdcv1alpha1.GroupVersion.Group}, Resources: []string{"kdcclusters"},
				Verbs: []string{"get", "list", "watch", "patch"},
			}},
		})).To(Succeed())
		Expect(env.Client.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dave"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "kdc-operator"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "dave"}},
		})).To(Succeed())
		dave, err := env.WriteKubeconfig("dave", nil)
		Expect(err).NotTo(HaveOccurred())
		kdc := func(args ...string) (string, string, int) {
			var out, errOut bytes.Buffer
			code := plugin.Execute(ctx, genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut},
				append(args, "-n", ns, "--kubeconfig", dave))
			return out.String(), errOut.String(), code
		}
		// RBAC is eventually consistent in the API server's authorizer cache.
		Eventually(func(g Gomega) {
			_, errOut, _ := kdc("restore", "prod", "--from", "staging/staging-20260101T020000Z.db")
			g.Expect(errOut).NotTo(ContainSubstring("forbidden"))
		}).Should(Succeed())

		_, errOut, code := kdc("restore", "prod", "--from", "staging/staging-20260101T020000Z.db")
		Expect(code).To(Equal(1))
		Expect(errOut).To(Equal(`The KdcCluster "prod" is invalid: metadata.annotations[kube-dc.com/restore-from]: Invalid value: "staging/staging-20260101T020000Z.db": ` +
			`ForeignKey: key belongs to another cluster "staging", not to "prod"; use a key under "prod/", for example prod/prod-20260101T020000Z.db` + "\n"))

		out, errOut, code := kdc("restore", "prod", "--from", "prod/prod-20260101T020000Z.db")
		Expect(code).To(Equal(0), errOut)
		Expect(out).To(Equal(`kdccluster.k8s.kube-dc.com/prod: restore from "prod/prod-20260101T020000Z.db" requested by dave` + "\n" +
			"Follow it with: kubectl kdc restore prod -n " + ns + " --wait   (or: kubectl get kdc-cl prod -n " + ns + " -w)\n"))

		_, errOut, code = kdc("restore", "prod", "--from", "prod/prod-20260102T020000Z.db")
		Expect(code).To(Equal(1))
		Expect(normalize(errOut)).To(Equal(`The KdcCluster "prod" is invalid: metadata.annotations[kube-dc.com/restore-from]: Forbidden: ` +
			`RestoreInProgress: a restore from "prod/prod-20260101T020000Z.db" is Validating (requested by dave at <time>); ` +
			`wait until it ends (kubectl get kdccluster shows it in the RESTORE column), then annotate again` + "\n"))

		By("kubectl kdc status shows the running restore")
		out, errOut, code = kdc("status")
		Expect(code).To(Equal(0), errOut)
		Expect(out).To(ContainSubstring("prod   Unknown   <none>   <none>        0 2 * * *   <none>   <none>       Validating\n"))
		Expect(out).To(ContainSubstring("1 of 1 clusters need attention:\n  " + ns + "/prod: Unknown: no BackupReady condition yet; check that the kdc-etcd-backup manager is running\n"))
	})
})
