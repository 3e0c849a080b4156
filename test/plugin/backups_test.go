package plugin

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	obcv1alpha1 "kube-dc.com/etcd-backup/api/objectbucket/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/snapshot"
	"kube-dc.com/etcd-backup/test/framework"
)

// listing is the -o json document of `kubectl kdc backups`, decoded as a script would.
type listing struct {
	Cluster   string `json:"cluster"`
	Namespace string `json:"namespace"`
	Endpoint  string `json:"endpoint"`
	Bucket    string `json:"bucket"`
	Items     []struct {
		Key              string    `json:"key"`
		Time             time.Time `json:"time"`
		ObjectKey        string    `json:"objectKey"`
		Size             int64     `json:"size"`
		Revision         int64     `json:"revision"`
		EtcdVersion      string    `json:"etcdVersion"`
		Checksum         string    `json:"checksum"`
		SHA256           string    `json:"sha256"`
		S3ChecksumSHA256 string    `json:"s3ChecksumSHA256"`
		Problem          string    `json:"problem"`
	} `json:"items"`
}

var _ = Describe("kubectl kdc backups", func() {
	var ns string
	BeforeEach(func() {
		var err error
		ns, err = env.NewNamespace(ctx, "backups")
		Expect(err).NotTo(HaveOccurred())
	})

	It("lists the real backups newest first with their revision and checksum state, and skips what is not a snapshot key", func() {
		c := clusterFixture{ns: ns, name: "prod"}.create()
		base := time.Now().UTC().Truncate(time.Second)
		By("uploading three snapshots with the real backup code path, out of order")
		oldest := realBackup(c, base.Add(-3*time.Hour))
		newest := realBackup(c, base.Add(-1*time.Hour))
		middle := realBackup(c, base.Add(-2*time.Hour))
		By("storing objects that are not snapshots of prod under its prefix, and a foreign upload")
		putObject(c, "prod/README.txt", 10)
		putObject(c, "prod/prod-latest.db", 544)
		putObject(c, "prod/staging-20260101T020000Z.db", 544)
		putObject(c, "prod/old/prod-20260101T020000Z.db", 544)
		putObject(c, "prod-2/prod-2-20260101T020000Z.db", 544)
		// A well-formed key written by hand: no checksum, metadata or tag (544 = a database of
		// one 512-byte block plus etcd's 32-byte hash, so the pre-download checks pass).
		handKey := kdcv1alpha1.SnapshotKey("prod", base.Add(-4*time.Hour))
		putObject(c, handKey, 544)
		// A truncated one.
		truncKey := kdcv1alpha1.SnapshotKey("prod", base.Add(-5*time.Hour))
		putObject(c, truncKey, 100)

		r := kdc("backups", "prod", "-n", ns)
		Expect(r.code).To(Equal(0), r.stderr)
		Expect(r.stderr).To(BeEmpty())
		rows := columns(r.stdout)
		Expect(r.stdout).To(HavePrefix("KEY "))
		var keys []string
		for _, row := range rows {
			keys = append(keys, row[0])
		}
		Expect(keys).To(Equal([]string{newest.Key, middle.Key, oldest.Key, handKey, truncKey}))
		Expect(rows[0]).To(Equal([]string{newest.Key, base.Add(-time.Hour).Format(time.RFC3339), rows[0][2],
			formatSize(newest.Size), strconv.FormatInt(newest.Revision, 10), "sha256"}))
		Expect(rows[0][2]).To(MatchRegexp(`^\d+[hm]`), "AGE")
		Expect(rows[3][4:]).To(Equal([]string{"<none>", "missing"}))
		Expect(rows[4][5]).To(Equal("invalid"))

		By("reading -o json back")
		r = kdc("backups", "prod", "-n", ns, "-o", "json")
		Expect(r.code).To(Equal(0), r.stderr)
		var l listing
		Expect(json.Unmarshal([]byte(r.stdout), &l)).To(Succeed(), r.stdout)
		Expect(l.Cluster).To(Equal("prod"))
		Expect(l.Namespace).To(Equal(ns))
		Expect(l.Endpoint).To(Equal(minio.Endpoint), "the endpoint comes from the CronJob's --s3-endpoint")
		Expect(l.Bucket).To(Equal(kdcv1alpha1.DefaultBucketName(ns)))
		Expect(l.Items).To(HaveLen(5))
		first := l.Items[0]
		Expect(first.Key).To(Equal(newest.Key))
		Expect(first.ObjectKey).To(Equal(newest.ObjectKey))
		Expect(first.Time.Equal(base.Add(-time.Hour))).To(BeTrue(), "time %s", first.Time)
		Expect(first.Size).To(Equal(newest.Size))
		Expect(first.Revision).To(Equal(newest.Revision))
		Expect(first.EtcdVersion).To(Equal(newest.EtcdVersion))
		Expect(first.Checksum).To(Equal("sha256"))
		Expect(first.SHA256).To(Equal(newest.SHA256))
		Expect(first.S3ChecksumSHA256).To(Equal(newest.S3ChecksumSHA256))
		Expect(l.Items[3].Checksum).To(Equal("missing"))
		Expect(l.Items[4].Checksum).To(Equal("invalid"))
		Expect(l.Items[4].Problem).To(ContainSubstring("not a database followed by etcd's 32-byte hash"))

		By("printing -o yaml with the same field names")
		r = kdc("backups", "prod", "-n", ns, "-o", "yaml")
		Expect(r.code).To(Equal(0), r.stderr)
		Expect(r.stdout).To(ContainSubstring("- checksum: sha256\n"))
		Expect(r.stdout).To(ContainSubstring("  key: " + newest.Key + "\n"))
		Expect(r.stdout).To(ContainSubstring("cluster: prod\n"))
	})

	It("prints an empty list and says so", func() {
		clusterFixture{ns: ns, name: "prod"}.create()
		r := kdc("backups", "prod", "-n", ns)
		Expect(r.code).To(Equal(0), r.stderr)
		Expect(r.stdout).To(BeEmpty())
		Expect(r.stderr).To(Equal(fmt.Sprintf("No snapshots of cluster %s/prod in s3://%s/prod/\n", ns, kdcv1alpha1.DefaultBucketName(ns))))

		r = kdc("backups", "prod", "-n", ns, "-o", "json")
		Expect(r.code).To(Equal(0), r.stderr)
		var l listing
		Expect(json.Unmarshal([]byte(r.stdout), &l)).To(Succeed())
		Expect(l.Items).NotTo(BeNil())
		Expect(l.Items).To(BeEmpty())
	})

	It("uses the ObjectBucketClaim ConfigMap's bucket and endpoint as the controller does", func() {
		c := clusterFixture{ns: ns, name: "prod"}.create()
		Expect(minio.CreateBucket(ctx, "custom-"+ns)).To(Succeed())
		Expect(env.Client.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: kdcv1alpha1.ObjectBucketClaimName, Namespace: ns},
			Data: map[string]string{
				obcv1alpha1.ConfigMapKeyBucketName: "custom-" + ns,
				obcv1alpha1.ConfigMapKeyBucketHost: framework.MinIOHost,
				obcv1alpha1.ConfigMapKeyBucketPort: strconv.Itoa(minio.Port()),
			},
		})).To(Succeed())
		res := realBackupTo(c, "custom-"+ns, "", time.Now().UTC().Truncate(time.Second))

		r := kdc("backups", "prod", "-n", ns, "-o", "json")
		Expect(r.code).To(Equal(0), r.stderr)
		var l listing
		Expect(json.Unmarshal([]byte(r.stdout), &l)).To(Succeed())
		Expect(l.Bucket).To(Equal("custom-" + ns))
		Expect(l.Endpoint).To(Equal(fmt.Sprintf("http://%s:%d", framework.MinIOHost, minio.Port())))
		Expect(l.Items).To(HaveLen(1))
		Expect(l.Items[0].Key).To(Equal(res.Key))
	})

	It("lists under spec.backup.destinationPath's bucket and prefix", func() {
		bucket := "dest-" + ns
		Expect(minio.CreateBucket(ctx, bucket)).To(Succeed())
		c := clusterFixture{ns: ns, name: "prod", mutate: func(c *kdcv1alpha1.KdcCluster) {
			c.Spec.Backup.DestinationPath = "s3://" + bucket + "/tenants/a/"
		}}.create()
		base := time.Now().UTC().Truncate(time.Second)
		older := realBackupTo(c, bucket, "tenants/a", base.Add(-time.Hour))
		newer := realBackupTo(c, bucket, "tenants/a", base)
		// The same key without the prefix, in the same bucket, is not this cluster's snapshot.
		realBackupTo(c, bucket, "", base.Add(time.Hour))

		r := kdc("backups", "prod", "-n", ns, "-o", "wide")
		Expect(r.code).To(Equal(0), r.stderr)
		rows := columns(r.stdout)
		Expect(rows).To(HaveLen(2))
		Expect(rows[0][0]).To(Equal(newer.Key))
		Expect(rows[0][8]).To(Equal("s3://" + bucket + "/tenants/a/" + newer.Key))
		Expect(rows[0][7]).To(Equal(newer.EtcdVersion))
		Expect(rows[0][6]).To(Equal("whole-etcd"))
		Expect(rows[1][0]).To(Equal(older.Key))
	})

	It("says an unreachable endpoint is unreachable from this machine, and --s3-endpoint overrides it", func() {
		closed, err := framework.FreePort()
		Expect(err).NotTo(HaveOccurred())
		unreachable := fmt.Sprintf("http://127.0.0.1:%d", closed)
		c := clusterFixture{ns: ns, name: "prod", mutate: func(c *kdcv1alpha1.KdcCluster) {
			c.Spec.Backup.S3Endpoint = unreachable
		}}.create()
		res := realBackup(c, time.Now().UTC().Truncate(time.Second))

		r := kdc("backups", "prod", "-n", ns)
		Expect(r.code).To(Equal(1))
		Expect(r.stdout).To(BeEmpty())
		Expect(r.stderr).To(HavePrefix(fmt.Sprintf("error: S3 endpoint %s (from spec.backup.s3Endpoint) is unreachable from this machine: ", unreachable)))
		Expect(r.stderr).To(ContainSubstring("connection refused"))
		Expect(r.stderr).To(ContainSubstring("an in-cluster endpoint usually is not reachable from outside the cluster: run `kubectl port-forward -n <s3-namespace> svc/<s3-service> 8080:"))
		Expect(r.stderr).To(ContainSubstring("pass --s3-endpoint=http://127.0.0.1:8080"))

		r = kdc("backups", "prod", "-n", ns, "--s3-endpoint", minio.Endpoint)
		Expect(r.code).To(Equal(0), r.stderr)
		Expect(columns(r.stdout)[0][0]).To(Equal(res.Key))

		r = kdc("backups", "prod", "-n", ns, "--s3-endpoint", unreachable)
		Expect(r.code).To(Equal(1))
		Expect(r.stderr).To(HavePrefix(fmt.Sprintf("error: S3 endpoint %s (--s3-endpoint) is unreachable from this machine: ", unreachable)))
		Expect(r.stderr).To(HaveSuffix("check the URL and, with kubectl port-forward, that the forward is still running\n"))
	})

	It("explains a missing credential Secret", func() {
		clusterFixture{ns: ns, name: "prod", noSecret: true}.create()
		r := kdc("backups", "prod", "-n", ns)
		Expect(r.code).To(Equal(1))
		Expect(r.stdout).To(BeEmpty())
		Expect(r.stderr).To(Equal(fmt.Sprintf("error: the S3 credential Secret %s/managed-k8s-backups does not exist "+
			"(the ObjectBucketClaim's Secret; spec.backup.s3CredentialSecret can name another); "+
			"the bucket provisioner writes it when ObjectBucketClaim %s/managed-k8s-backups is Bound: check kubectl get obc -n %s managed-k8s-backups\n", ns, ns, ns)))
	})

	It("explains denied access without printing the credentials", func() {
		const secretKey = "not-the-minio-secret-key"
		clusterFixture{ns: ns, name: "prod", secret: map[string]string{
			snapshot.EnvAccessKeyID: "wrong-access-key", snapshot.EnvSecretAccessKey: secretKey,
		}}.create()
		r := kdc("backups", "prod", "-n", ns)
		Expect(r.code).To(Equal(1))
		Expect(r.stderr).To(Equal(fmt.Sprintf("error: S3 at %s denied access to bucket %q (InvalidAccessKeyId); "+
			"check the keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY of Secret %s/managed-k8s-backups and that they may list and read the bucket\n",
			minio.Endpoint, kdcv1alpha1.DefaultBucketName(ns), ns)))
		Expect(r.stderr).NotTo(ContainSubstring(secretKey))
		Expect(r.stderr).NotTo(ContainSubstring("wrong-access-key"))
	})

	It("explains a missing bucket", func() {
		clusterFixture{ns: ns, name: "prod", noBucket: true}.create()
		r := kdc("backups", "prod", "-n", ns)
		Expect(r.code).To(Equal(1))
		Expect(r.stderr).To(Equal(fmt.Sprintf("error: bucket %q (from ObjectBucketClaim %s/managed-k8s-backups) does not exist at %s (from the --s3-endpoint of CronJob %s/prod-etcd-backup); "+
			"check spec.backup.destinationPath and the ObjectBucketClaim: kubectl get obc -n %s managed-k8s-backups\n",
			kdcv1alpha1.DefaultBucketName(ns), ns, minio.Endpoint, ns, ns)))
	})

	It("explains a missing cluster and a missing argument", func() {
		r := kdc("backups", "nope", "-n", ns)
		Expect(r.code).To(Equal(1))
		Expect(r.stderr).To(Equal(fmt.Sprintf("error: KdcCluster \"nope\" not found in namespace %q; list them with: kubectl get kdc-cl -A\n", ns)))
		r = kdc("backups", "prod", "-n", ns, "-o", "name")
		Expect(r.code).To(Equal(1))
		Expect(r.stderr).To(Equal("error: unknown output format \"name\"; use -o json, -o yaml or -o wide, or no -o for a table\n"))
		r = kdc("backups")
		Expect(r.code).To(Equal(1))
		Expect(r.stderr).To(Equal("error: kubectl kdc backups takes exactly one CLUSTER (the KdcCluster's name), got 0 arguments; see kubectl kdc backups --help\n"))
	})

	It("has help with examples", func() {
		r := kdc("backups", "--help")
		Expect(r.code).To(Equal(0))
		Expect(r.stdout).To(ContainSubstring("kubectl kdc backups prod -n team-a --s3-endpoint=http://127.0.0.1:8080"))
		Expect(r.stdout).To(ContainSubstring("--s3-endpoint string"))
	})
})

// formatSize is the SIZE column's format (binary units, one decimal below 10).
func formatSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB"}
	f, i := float64(n), 0
	for f >= 1024 && i < len(units)-1 {
		f, i = f/1024, i+1
	}
	switch {
	case i == 0:
		return fmt.Sprintf("%dB", n)
	case f < 9.95:
		return fmt.Sprintf("%.1f%s", f, units[i])
	}
	return fmt.Sprintf("%.0f%s", f, units[i])
}
