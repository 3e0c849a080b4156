package plugin

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	obcv1alpha1 "kube-dc.com/etcd-backup/api/objectbucket/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/plugin"
	"kube-dc.com/etcd-backup/snapshot"
	"kube-dc.com/etcd-backup/test/framework"
)

// testDataStore is the datastore of every fixture cluster.
const testDataStore = "ds1"

// result is one run of the plugin.
type result struct {
	stdout, stderr string
	code           int
}

// kdc runs `kubectl kdc args...` in-process against envtest, as the admin user.
func kdc(args ...string) result {
	var out, errOut bytes.Buffer
	streams := genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}
	code := plugin.Execute(ctx, streams, append(args, "--kubeconfig", env.Kubeconfig))
	GinkgoWriter.Printf("$ kubectl kdc %s\n%s%s[exit %d]\n", strings.Join(args, " "), out.String(), errOut.String(), code)
	return result{stdout: out.String(), stderr: errOut.String(), code: code}
}

// clusterFixture is what a scheduled cluster needs, all optional through its fields.
type clusterFixture struct {
	ns, name string
	// noSecret leaves out the credential Secret; secret overrides its data.
	noSecret bool
	secret   map[string]string
	// noBucket leaves the default bucket uncreated.
	noBucket bool
	mutate   func(*kdcv1alpha1.KdcCluster)
}

// create creates the Bound claim, the credential Secret, the bucket NS-managed-k8s-backups in
// MinIO, the etcd StatefulSet and the cluster with status.dataStoreName, then waits for the
// backup controller's CronJob (unless the mutation closes a gate; then for BackupReady).
func (f clusterFixture) create() *kdcv1alpha1.KdcCluster {
	obc := &obcv1alpha1.ObjectBucketClaim{
		ObjectMeta: metav1.ObjectMeta{Name: kdcv1alpha1.ObjectBucketClaimName, Namespace: f.ns},
		Spec:       obcv1alpha1.ObjectBucketClaimSpec{GenerateBucketName: "backups"},
	}
	ExpectWithOffset(1, env.Client.Create(ctx, obc)).To(Succeed())
	obc.Status.Phase = obcv1alpha1.PhaseBound
	ExpectWithOffset(1, env.Client.Status().Update(ctx, obc)).To(Succeed())
	if !f.noSecret {
		data := f.secret
		if data == nil {
			data = map[string]string{snapshot.EnvAccessKeyID: minio.AccessKey, snapshot.EnvSecretAccessKey: minio.SecretKey}
		}
		ExpectWithOffset(1, env.Client.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: kdcv1alpha1.ObjectBucketClaimName, Namespace: f.ns},
			StringData: data,
		})).To(Succeed())
	}
	if !f.noBucket {
		ExpectWithOffset(1, minio.CreateBucket(ctx, kdcv1alpha1.DefaultBucketName(f.ns))).To(Succeed())
	}
	createEtcdStatefulSet(f.ns, testDataStore)

	c := &kdcv1alpha1.KdcCluster{ObjectMeta: metav1.ObjectMeta{Name: f.name, Namespace: f.ns}}
	if f.mutate != nil {
		f.mutate(c)
	}
	ExpectWithOffset(1, env.Client.Create(ctx, c)).To(Succeed())
	EventuallyWithOffset(1, func(g Gomega) {
		got := &kdcv1alpha1.KdcCluster{}
		g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(c), got)).To(Succeed())
		got.Status.DataStoreName = testDataStore
		g.Expect(env.Client.Status().Update(ctx, got)).To(Succeed())
	}).Should(Succeed())
	EventuallyWithOffset(1, func(g Gomega) {
		cond := backupReady(g, c)
		if c.BackupEnabled() {
			g.Expect(env.Client.Get(ctx, framework.BackupCronJobKey(c), &batchv1.CronJob{})).To(Succeed())
			g.Expect(cond.Status).To(Equal(metav1.ConditionTrue))
		}
	}).Should(Succeed())
	return c
}

// createEtcdStatefulSet creates DS-etcd, which the backup controller takes the endpoints from.
func createEtcdStatefulSet(ns, ds string) {
	ExpectWithOffset(2, env.Client.Create(ctx, framework.EtcdStatefulSet(ns, ds))).To(Succeed())
}

// backupReady is the cluster's BackupReady condition; it fails g when there is none.
func backupReady(g Gomega, c *kdcv1alpha1.KdcCluster) metav1.Condition {
	cond, err := framework.StoredCondition(ctx, env.Client, c, kdcv1alpha1.ConditionBackupReady)
	g.Expect(err).NotTo(HaveOccurred())
	return cond
}

// realBackup runs the real backup code path against the suite's etcd into the cluster's
// default bucket, with the key's time at, and returns its result (the Job's termination message).
func realBackup(c *kdcv1alpha1.KdcCluster, at time.Time) *snapshot.BackupResult {
	return realBackupTo(c, kdcv1alpha1.DefaultBucketName(c.Namespace), "", at)
}

// realBackupTo is realBackup into bucket under prefix.
func realBackupTo(c *kdcv1alpha1.KdcCluster, bucket, prefix string, at time.Time) *snapshot.BackupResult {
	res, err := snapshot.Backup(ctx, snapshot.BackupOptions{
		Cluster:     c.Name,
		Endpoints:   []string{etcd.ClientURL},
		CACert:      etcd.Certs.CAFile,
		Cert:        etcd.Certs.ClientCert,
		Key:         etcd.Certs.ClientKey,
		Location:    snapshot.S3Location{Endpoint: minio.Endpoint, Bucket: bucket, Prefix: prefix},
		Credentials: snapshot.Credentials{AccessKeyID: minio.AccessKey, SecretAccessKey: minio.SecretKey},
		Now:         func() time.Time { return at },
	})
	ExpectWithOffset(2, err).NotTo(HaveOccurred())
	return res
}

// putObject stores body as key in the cluster's default bucket, without the backup's checksum,
// metadata or tag.
func putObject(c *kdcv1alpha1.KdcCluster, key string, size int) {
	_, err := minio.S3Client().PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(kdcv1alpha1.DefaultBucketName(c.Namespace)),
		Key:    aws.String(key),
		Body:   bytes.NewReader(bytes.Repeat([]byte{'x'}, size)),
	})
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
}

// manualJob waits for the one Job created from the cluster's CronJob by hand.
func manualJob(g Gomega, c *kdcv1alpha1.KdcCluster) *batchv1.Job {
	jobs := &batchv1.JobList{}
	g.Expect(env.Client.List(ctx, jobs, client.InNamespace(c.Namespace), client.MatchingLabels{
		kdcv1alpha1.LabelCluster: c.Name, kdcv1alpha1.LabelComponent: kdcv1alpha1.ComponentBackup,
	})).To(Succeed())
	var manual []batchv1.Job
	for _, j := range jobs.Items {
		if j.Annotations["cronjob.kubernetes.io/instantiate"] == "manual" {
			manual = append(manual, j)
		}
	}
	g.Expect(manual).To(HaveLen(1))
	return &manual[0]
}

// finishJobPods is framework.FinishJobPods in a Gomega assertion; it fails g until the Job
// controller created a pod.
func finishJobPods(g Gomega, job *batchv1.Job, exitCode int32, msg string) {
	n, err := framework.FinishJobPods(ctx, env.Client, job, exitCode, msg)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(n).To(BeNumerically(">", 0), "no unfinished pod of Job %s yet", job.Name)
}

// runAsync runs the plugin in a goroutine; the channel yields its result.
func runAsync(args ...string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		defer GinkgoRecover()
		ch <- kdc(args...)
	}()
	return ch
}

// mustJSON is v as one line of JSON.
func mustJSON(v any) string {
	b, err := json.Marshal(v)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return string(b)
}

// columns splits the table output into rows of whitespace-separated cells, without the header.
func columns(table string) [][]string {
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	var rows [][]string
	for _, l := range lines[1:] {
		rows = append(rows, strings.Fields(l))
	}
	return rows
}
