package webhook

import (
	"regexp"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// variable matches what differs between runs in kubectl's output: times and ages.
var (
	rfc3339 = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`)
	age     = regexp.MustCompile(`(?m) +\d+s$`)
)

func normalize(out string) string {
	return age.ReplaceAllString(rfc3339.ReplaceAllString(out, "<time>"), "   <age>")
}

var _ = Describe("kubectl as a new operator", func() {
	It("shows each rejection and the running restore exactly", func() {
		ns, err := env.NewNamespace(ctx, "kubectl")
		Expect(err).NotTo(HaveOccurred())
		Expect(env.Client.Create(ctx, newDataStore(ns, "prod-ds", 1))).To(Succeed())
		Expect(env.Client.Create(ctx, newCluster(ns, "prod", "prod-ds"))).To(Succeed())

		By("granting a new user the rights an operator has on KdcClusters")
		Expect(env.Client.Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kdc-operator"},
			Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{kdcv1alpha1.GroupVersion.Group}, Resources: []string{"kdcclusters"},
				Verbs: []string{"get", "list", "watch", "patch", "update"},
			}},
		})).To(Succeed())
		Expect(env.Client.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "carol"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "kdc-operator"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "carol"}},
		})).To(Succeed())
		carol, err := env.WriteKubeconfig("carol", nil)
		Expect(err).NotTo(HaveOccurred())
		kubectl := func(args ...string) (string, error) {
			return env.KubectlAs(ctx, carol, append([]string{"-n", ns}, args...)...)
		}
		// RBAC is eventually consistent in the API server's authorizer cache.
		Eventually(func(g Gomega) {
			out, err := kubectl("get", "kdccluster", "prod", "-o", "name")
			g.Expect(err).NotTo(HaveOccurred(), out)
		}).Should(Succeed())

		const controllerHint = "only the controller (" + controllerUser + ") writes it"
		for _, step := range []struct {
			args    []string
			wantErr bool
			want    string
		}{{
			args:    []string{"annotate", "kdccluster", "prod", "kube-dc.com/restore-from=../../etc/passwd"},
			wantErr: true,
			want: `The KdcCluster "prod" is invalid: metadata.annotations[kube-dc.com/restore-from]: Invalid value: "../../etc/passwd": ` +
				`InvalidKey: key contains an empty, "." or ".." path element; use a key under "prod/", for example prod/prod-20260101T020000Z.db` + "\n",
		}, {
			args:    []string{"annotate", "kdccluster", "prod", "kube-dc.com/restore-from=staging/staging-20260101T020000Z.db"},
			wantErr: true,
			want: `The KdcCluster "prod" is invalid: metadata.annotations[kube-dc.com/restore-from]: Invalid value: "staging/staging-20260101T020000Z.db": ` +
				`ForeignKey: key belongs to another cluster "staging", not to "prod"; use a key under "prod/", for example prod/prod-20260101T020000Z.db` + "\n",
		}, {
			args: []string{"annotate", "kdccluster", "prod", "kube-dc.com/restore-from=prod/prod-20260101T020000Z.db"},
			want: "kdccluster.k8s.kube-dc.com/prod annotated\n",
		}, {
			args: []string{"get", "kdccluster"},
			want: "NAME   BACKUP   LAST BACKUP   RESTORE      LAST RESTORE   AGE\n" +
				"prod                          Validating   <age>\n",
		}, {
			args:    []string{"annotate", "kdccluster", "prod", "--overwrite", "kube-dc.com/restore-from=prod/prod-20260102T020000Z.db"},
			wantErr: true,
			want: `The KdcCluster "prod" is invalid: metadata.annotations[kube-dc.com/restore-from]: Forbidden: ` +
				`RestoreInProgress: a restore from "prod/prod-20260101T020000Z.db" is Validating (requested by carol at <time>); ` +
				`wait until it ends (kubectl get kdccluster shows it in the RESTORE column), then annotate again` + "\n",
		}, {
			args:    []string{"annotate", "kdccluster", "prod", "kube-dc.com/restore-state-"},
			wantErr: true,
			want: `The KdcCluster "prod" is invalid: metadata.annotations[kube-dc.com/restore-state]: Forbidden: ` +
				`ProtectedAnnotation: kube-dc.com/restore-state is restore bookkeeping and cannot be removed by carol; ` + controllerHint +
				`. To start a restore set only kube-dc.com/restore-from` + "\n",
		}, {
			args:    []string{"annotate", "kdccluster", "prod", "kube-dc.com/restore-from-"},
			wantErr: true,
			want: `The KdcCluster "prod" is invalid: metadata.annotations[kube-dc.com/restore-from]: Forbidden: ` +
				`RestoreInProgress: kube-dc.com/restore-from cannot be removed or changed while a restore from "prod/prod-20260101T020000Z.db" is Validating ` +
				`(requested by carol at <time>); a running restore cannot be cancelled, wait until it ends` + "\n",
		}} {
			By("kubectl " + strings.Join(step.args, " "))
			out, err := kubectl(step.args...)
			if step.wantErr {
				Expect(err).To(HaveOccurred(), out)
			} else {
				Expect(err).NotTo(HaveOccurred(), out)
			}
			Expect(normalize(out)).To(Equal(step.want))
		}
	})
})
