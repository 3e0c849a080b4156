package restore

import (
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/engine"
	"kube-dc.com/etcd-backup/plugin"
)

// kdcStart starts `kubectl kdc args...` in-process as a cluster admin; its streams can be read
// while it runs and its exit code arrives on the channel.
func kdcStart(args ...string) (stdout, stderr *gbytes.Buffer, code <-chan int) {
	GinkgoHelper()
	kubeconfig, err := env.WriteKubeconfig("kdc-operator", []string{"system:masters"})
	Expect(err).NotTo(HaveOccurred())
	out, errOut := gbytes.NewBuffer(), gbytes.NewBuffer()
	done := make(chan int, 1)
	go func() {
		defer GinkgoRecover()
		c := plugin.Execute(ctx, genericiooptions.IOStreams{In: strings.NewReader(""), Out: out, ErrOut: errOut},
			append(args, "--kubeconfig", kubeconfig))
		GinkgoWriter.Printf("kubectl kdc %s (exit %d)\n--- stdout\n%s--- stderr\n%s", strings.Join(args, " "), c, out.Contents(), errOut.Contents())
		done <- c
	}()
	return out, errOut, done
}

// kdcRun runs `kubectl kdc args...` in-process as a cluster admin and returns its stdout,
// stderr and exit code.
func kdcRun(args ...string) (stdout, stderr string, code int) {
	GinkgoHelper()
	out, errOut, done := kdcStart(args...)
	Eventually(done).WithTimeout(2 * time.Minute).Should(Receive(&code))
	return string(out.Contents()), string(errOut.Contents()), code
}

// phaseLines are the phases in the progress lines of `kubectl kdc restore --wait`, in order.
func phaseLines(out string) []string {
	re := regexp.MustCompile(`(?m)^\[\s*[0-9.hms]+\] (\w+)`)
	var phases []string
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		phases = append(phases, m[1])
	}
	return phases
}

var _ = Describe("kubectl kdc restore --wait", func() {
	var t *tenant
	BeforeEach(func() {
		t = newTenant()
	})

	It("requests the restore and follows every phase to Succeeded", func() {
		m := startRestoreManager(engine.Timeouts{})
		DeferCleanup(m.stop)
		out, errOut, code := kdcRun("restore", clusterName, "-n", t.ns, "--from", snapshotKey, "--wait")
		Expect(code).To(Equal(0), errOut)
		Expect(out).To(HavePrefix(`kdccluster.k8s.kube-dc.com/` + clusterName + `: restore from "` + snapshotKey + `" requested`))
		Expect(phaseLines(out)).To(Equal([]string{
			"Validating", "DrainingControlPlane", "StoppingEtcd", "RestoringSnapshot",
			"StartingEtcd", "StartingControlPlane", "Succeeded",
		}))
		Expect(out).To(ContainSubstring("(StartingControlPlane took "))
		Expect(out).To(ContainSubstring(`Restore from "` + snapshotKey + `" complete`))
		Expect(out).To(MatchRegexp(`Restored in [0-9.]+m?s: Validating [0-9.]+m?s, DrainingControlPlane`))
		expectSucceeded(t, nil)
	})

	It("follows a restore already running, and exits 1 with the reason when it fails", func() {
		t.k.failJob(kdcv1alpha1.RestoreJobName(clusterName), 9)
		t.k.hold(gateRestore)
		m := startRestoreManager(engine.Timeouts{Recovery: 30 * time.Second})
		DeferCleanup(m.stop)
		out, errOut, code := kdcRun("restore", clusterName, "-n", t.ns, "--from", snapshotKey)
		Expect(code).To(Equal(0), errOut)
		Expect(out).To(ContainSubstring("Follow it with: kubectl kdc restore " + clusterName + " -n " + t.ns + " --wait"))
		Eventually(func() kdcv1alpha1.RestorePhase {
			return kdcv1alpha1.RestorePhaseOf(t.cluster().Annotations)
		}).Should(Equal(kdcv1alpha1.PhaseRestoringSnapshot))

		follow, followErr, done := kdcStart("restore", clusterName, "-n", t.ns, "--wait")
		Eventually(follow).Should(gbytes.Say(`\] RestoringSnapshot\n`))
		t.k.release(gateRestore)
		Eventually(done).WithTimeout(2 * time.Minute).Should(Receive(&code))
		out, errOut = string(follow.Contents()), string(followErr.Contents())
		Expect(code).To(Equal(1))
		Expect(out).To(HavePrefix(`Following the restore of ` + clusterName + ` from "` + snapshotKey + `"`))
		Expect(out).To(MatchRegexp(`RestoringSnapshot failed: RestoreJobFailed: .*the controller brings the cluster back`))
		Expect(phaseLines(out)).To(HaveExactElements(Equal("RestoringSnapshot"), ContainSubstring("RestoringSnapshot"), Equal("Failed")))
		Expect(errOut).To(HavePrefix(`error: Restore from "` + snapshotKey + `" failed (RestoreJobFailed): `))
		Expect(errOut).To(ContainSubstring("started again on the old data"))
	})

	It("--latest falls back to status.latestBackupKey when S3 cannot be listed from here", func() {
		c := t.cluster()
		c.Status.LatestBackupKey = snapshotKey
		Expect(env.Client.Status().Update(ctx, c)).To(Succeed())
		m := startRestoreManager(engine.Timeouts{})
		DeferCleanup(m.stop)
		out, errOut, code := kdcRun("restore", clusterName, "-n", t.ns, "--latest", "--wait")
		Expect(code).To(Equal(0), errOut)
		Expect(errOut).To(ContainSubstring("Warning: cannot list the snapshots in S3 ("))
		Expect(errOut).To(ContainSubstring("Warning: using status.latestBackupKey instead, the last backup the controller recorded\n"))
		Expect(out).To(HavePrefix("Newest snapshot of " + clusterName + ": " + snapshotKey + " ("))
		Expect(out).To(ContainSubstring(`Restore from "` + snapshotKey + `" complete`))
		expectSucceeded(t, nil)
	})

	It("refuses bad flags and an idle cluster with what to do", func() {
		_, errOut, code := kdcRun("restore", clusterName, "-n", t.ns)
		Expect(code).To(Equal(1))
		Expect(errOut).To(Equal("error: name the snapshot with --from KEY or --latest (list them with: kubectl kdc backups CLUSTER), or follow a running restore with --wait\n"))
		_, errOut, _ = kdcRun("restore", clusterName, "-n", t.ns, "--wait")
		Expect(errOut).To(Equal("error: no restore is running on KdcCluster " + t.ns + "/" + clusterName + "; start one with --from KEY or --latest\n"))
		_, errOut, _ = kdcRun("restore", "nope", "-n", t.ns, "--from", snapshotKey)
		Expect(errOut).To(Equal(`error: KdcCluster "nope" not found in namespace "` + t.ns + `"; list them with: kubectl get kdc-cl -A` + "\n"))
		_, errOut, _ = kdcRun("restore", "-n", t.ns, "--from", snapshotKey)
		Expect(errOut).To(HavePrefix("error: kubectl kdc restore takes exactly one CLUSTER"))
	})
})
