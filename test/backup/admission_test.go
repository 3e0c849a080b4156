package backup

import (
	"fmt"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/test/framework"
)

// testMaxConcurrentBackups is the suite manager's --max-concurrent-backups.
const testMaxConcurrentBackups = 2

var _ = Describe("Backup admission", func() {
	It("runs at most the limit of backup Jobs at once, starts the waiting ones oldest first, and loses none", func() {
		ns, err := env.NewNamespace(ctx, "admission")
		Expect(err).NotTo(HaveOccurred())
		createScheduledCluster(ns)
		cj := &batchv1.CronJob{}
		Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: kdcv1alpha1.BackupCronJobName("prod")}, cj)).To(Succeed())
		Expect(cj.Spec.JobTemplate.Spec.Suspend).To(HaveValue(BeTrue()), "the CronJob creates its Jobs suspended")

		By("a watch of every backup Job records the order they start in and how many run at once")
		wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: framework.Scheme})
		Expect(err).NotTo(HaveOccurred())
		w, err := wc.Watch(ctx, &batchv1.JobList{}, client.MatchingLabels{kdcv1alpha1.LabelComponent: kdcv1alpha1.ComponentBackup})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(w.Stop)
		var mu sync.Mutex
		running, completed, peak := map[string]bool{}, map[string]bool{}, 0
		var started []string
		go func() {
			defer GinkgoRecover()
			for ev := range w.ResultChan() {
				j, ok := ev.Object.(*batchv1.Job)
				if !ok {
					continue
				}
				key := j.Namespace + "/" + j.Name
				mu.Lock()
				suspended := j.Spec.Suspend != nil && *j.Spec.Suspend
				if jobFinished(j) && j.Namespace == ns {
					completed[j.Name] = true
				}
				if !suspended && ev.Type != watch.Deleted && !jobFinished(j) {
					if !running[key] && j.Namespace == ns {
						started = append(started, j.Name)
					}
					running[key] = true
				} else {
					delete(running, key)
				}
				peak = max(peak, len(running))
				mu.Unlock()
			}
		}()

		const n = 5
		By(fmt.Sprintf("%d backup Jobs from the CronJob at once", n))
		var names []string
		for i := range n {
			job := jobFromCronJob(cj, fmt.Sprintf("queued-%d", i))
			Expect(env.Client.Create(ctx, job)).To(Succeed())
			names = append(names, job.Name)
		}

		By("each started Job's pod succeeds; the waiting ones start in turn (the CronJob keeps only 3 finished Jobs)")
		Eventually(func(g Gomega) {
			jobs := &batchv1.JobList{}
			g.Expect(env.Client.List(ctx, jobs, client.InNamespace(ns))).To(Succeed())
			for i := range jobs.Items {
				if j := &jobs.Items[i]; !jobFinished(j) && (j.Spec.Suspend == nil || !*j.Spec.Suspend) {
					_, err := framework.FinishJobPods(ctx, env.Client, j, 0, `{"key":"prod/prod-20250107T020000Z.db"}`)
					g.Expect(err).NotTo(HaveOccurred())
				}
			}
			mu.Lock()
			defer mu.Unlock()
			g.Expect(completed).To(HaveLen(n))
		}).WithTimeout(2 * time.Minute).Should(Succeed())

		mu.Lock()
		defer mu.Unlock()
		Expect(peak).To(BeNumerically("<=", testMaxConcurrentBackups), "backup Jobs running at once")
		Expect(started).To(Equal(names), "the order the Jobs started in")

		By("a Job that waited got a BackupWaiting Event")
		Eventually(func(g Gomega) {
			events := &eventsv1.EventList{}
			g.Expect(env.Client.List(ctx, events, client.InNamespace(ns))).To(Succeed())
			waited := 0
			for _, e := range events.Items {
				if e.Reason == "BackupWaiting" && e.Regarding.Kind == "Job" {
					waited++
				}
			}
			g.Expect(waited).To(BeNumerically(">=", n-testMaxConcurrentBackups))
		}).Should(Succeed())
	})
})

// jobFinished reports whether the Job completed or failed.
func jobFinished(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}
