package plugin

import (
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/snapshot"
	"kube-dc.com/etcd-backup/test/framework"
)

var _ = Describe("kubectl kdc backup", func() {
	var ns string
	BeforeEach(func() {
		var err error
		ns, err = env.NewNamespace(ctx, "backup")
		Expect(err).NotTo(HaveOccurred())
	})

	It("creates a Job from the CronJob, waits for it, prints the key, and the controller records it", func() {
		c := clusterFixture{ns: ns, name: "prod"}.create()
		cj := &batchv1.CronJob{}
		Expect(env.Client.Get(ctx, framework.BackupCronJobKey(c), cj)).To(Succeed())

		done := runAsync("backup", "prod", "-n", ns, "--wait", "--timeout", "2m")
		var job *batchv1.Job
		Eventually(func(g Gomega) { job = manualJob(g, c) }).Should(Succeed())
		By("checking the Job is what kubectl create job --from=cronjob/prod-etcd-backup makes")
		Expect(job.Name).To(MatchRegexp(`^prod-etcd-backup-manual-\d+$`))
		Expect(job.Annotations).To(HaveKeyWithValue("cronjob.kubernetes.io/instantiate", "manual"))
		Expect(job.Labels).To(Equal(cj.Spec.JobTemplate.Labels))
		Expect(metav1.IsControlledBy(job, cj)).To(BeTrue())
		Expect(job.Spec.Template.Spec.Containers).To(HaveLen(1))
		Expect(job.Spec.Template.Spec.Containers[0].Args).To(Equal(cj.Spec.JobTemplate.Spec.Template.Spec.Containers[0].Args))

		By("playing the kubelet: the pod ends with the termination message of a real backup")
		res := realBackup(c, time.Now().UTC().Truncate(time.Second))
		Eventually(func(g Gomega) { finishJobPods(g, job, 0, mustJSON(res)) }).Should(Succeed())

		var r result
		Eventually(done, time.Minute).Should(Receive(&r))
		Expect(r.code).To(Equal(0), r.stderr)
		Expect(r.stdout).To(Equal(res.Key + "\n"))
		Expect(r.stderr).To(Equal(fmt.Sprintf("job.batch/%s created\n", job.Name) +
			fmt.Sprintf("Waiting for backup Job %s/%s to finish (timeout 2m0s)...\n", ns, job.Name) +
			fmt.Sprintf("Backup %s stored in s3://%s/%s: %s, sha256 %s, etcd revision %d, %.1fs (Job %s/%s)\n",
				res.Key, res.Bucket, res.ObjectKey, formatSize(res.Size), res.SHA256, res.Revision, res.DurationSeconds, ns, job.Name)))

		By("the controller mirrors the manual Job like a scheduled run")
		Eventually(func(g Gomega) {
			got := &kdcv1alpha1.KdcCluster{}
			g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(c), got)).To(Succeed())
			g.Expect(got.Status.LatestBackupKey).To(Equal(res.Key))
			g.Expect(backupReady(g, c).Reason).To(Equal(kdcv1alpha1.ReasonBackupSucceeded))
		}).Should(Succeed())

		By("listing it as the newest snapshot")
		l := kdc("backups", "prod", "-n", ns)
		Expect(l.code).To(Equal(0), l.stderr)
		Expect(columns(l.stdout)[0][0]).To(Equal(res.Key))
	})

	It("exits non-zero with the exit code's meaning when the Job fails", func() {
		c := clusterFixture{ns: ns, name: "prod"}.create()
		done := runAsync("backup", "prod", "-n", ns, "--wait")
		var job *batchv1.Job
		Eventually(func(g Gomega) { job = manualJob(g, c) }).Should(Succeed())
		failure := snapshot.Failure{
			Error:  fmt.Sprintf(`failed to upload the snapshot to s3://%s/prod/prod-20260101T020000Z.db: access denied (InvalidAccessKeyId)`, kdcv1alpha1.DefaultBucketName(ns)),
			Reason: "AccessDenied", ExitCode: 6,
		}
		// Exit code 6 fails the Job at once (the CronJob's pod failure policy).
		Eventually(func(g Gomega) { finishJobPods(g, job, 6, mustJSON(failure)) }).Should(Succeed())

		var r result
		Eventually(done, time.Minute).Should(Receive(&r))
		Expect(r.code).To(Equal(1))
		Expect(r.stdout).To(BeEmpty())
		Expect(r.stderr).To(HaveSuffix(fmt.Sprintf("error: backup Job %s/%s failed with exit code 6 (AccessDenied): %s; "+
			"S3 denied access; check the S3 credential Secret and its permissions on the bucket "+
			"(logs: kubectl logs -n %s job/%s; the controller reports it in KdcCluster %s/prod's BackupReady)\n",
			ns, job.Name, failure.Error, ns, job.Name, ns)))
		Eventually(func(g Gomega) {
			cond := backupReady(g, c)
			g.Expect(cond.Reason).To(Equal(kdcv1alpha1.ReasonBackupFailed))
			g.Expect(cond.Message).To(ContainSubstring(job.Name))
		}).Should(Succeed())
	})

	It("without --wait prints the Job and how to follow it", func() {
		c := clusterFixture{ns: ns, name: "prod"}.create()
		r := kdc("backup", "prod", "-n", ns)
		Expect(r.code).To(Equal(0), r.stderr)
		var job *batchv1.Job
		Eventually(func(g Gomega) { job = manualJob(g, c) }).Should(Succeed())
		Expect(r.stdout).To(Equal("job.batch/" + job.Name + " created\n"))
		Expect(r.stderr).To(ContainSubstring(fmt.Sprintf("kubectl logs -n %s -f job/%s\n", ns, job.Name)))
		Expect(r.stderr).To(ContainSubstring(fmt.Sprintf("kubectl kdc backups prod -n %s\n", ns)))
	})

	It("gives up after --timeout, saying what the pod waits for and that the Job keeps running", func() {
		c := clusterFixture{ns: ns, name: "prod"}.create()
		r := kdc("backup", "prod", "-n", ns, "--wait", "--timeout", "2s")
		Expect(r.code).To(Equal(1))
		job := manualJob(Default, c)
		Expect(r.stderr).To(MatchRegexp(`error: backup Job %s/%s did not finish within 2s( \(pod %s-\w+ is Pending\))?; it keeps running: kubectl get job -n %s %s; kubectl logs -n %s -f job/%s\n$`,
			ns, job.Name, job.Name, ns, job.Name, ns, job.Name))
	})

	It("says why there is no CronJob, from BackupReady", func() {
		clusterFixture{ns: ns, name: "prod", mutate: func(c *kdcv1alpha1.KdcCluster) {
			c.Spec.Backup.Enabled = ptr.To(false)
		}}.create()
		r := kdc("backup", "prod", "-n", ns, "--wait")
		Expect(r.code).To(Equal(1))
		Expect(r.stderr).To(Equal(fmt.Sprintf("error: KdcCluster %s/prod has no backup CronJob prod-etcd-backup: BackupReady=False, reason Disabled: "+
			"Backups are disabled by spec.backup.enabled=false, CronJob %s/prod-etcd-backup is removed; set it to true to schedule backups\n", ns, ns)))
	})

	It("refuses during a restore", func() {
		c := clusterFixture{ns: ns, name: "prod"}.create()
		Eventually(func(g Gomega) {
			got := &kdcv1alpha1.KdcCluster{}
			g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(c), got)).To(Succeed())
			got.Annotations = map[string]string{kdcv1alpha1.AnnotationRestoreState: string(kdcv1alpha1.PhaseRestoringSnapshot)}
			g.Expect(env.Client.Update(ctx, got)).To(Succeed())
		}).Should(Succeed())
		r := kdc("backup", "prod", "-n", ns)
		Expect(r.code).To(Equal(1))
		Expect(r.stderr).To(HavePrefix(fmt.Sprintf("error: a restore of KdcCluster %s/prod is in progress (phase RestoringSnapshot)", ns)))
		jobs := &batchv1.JobList{}
		Expect(env.Client.List(ctx, jobs, client.InNamespace(ns))).To(Succeed())
		Expect(jobs.Items).To(BeEmpty())
	})

	It("has help with examples", func() {
		r := kdc("backup", "--help")
		Expect(r.code).To(Equal(0))
		Expect(r.stdout).To(ContainSubstring("kubectl kdc backup prod -n team-a --wait"))
		Expect(strings.Contains(r.stdout, "--timeout duration")).To(BeTrue(), r.stdout)
	})
})
