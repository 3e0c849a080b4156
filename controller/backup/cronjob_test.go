package backup

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	obcv1alpha1 "kube-dc.com/etcd-backup/api/objectbucket/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/engine"
	"kube-dc.com/etcd-backup/jobspec"
)

// backupTestCluster is a KdcCluster fixture; mutate adjusts it.
func backupTestCluster(mutate ...func(*kdcv1alpha1.KdcCluster)) *kdcv1alpha1.KdcCluster {
	c := &kdcv1alpha1.KdcCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "prod", Namespace: "team-a", UID: "uid-1", Generation: 3},
		Spec: kdcv1alpha1.KdcClusterSpec{Backup: kdcv1alpha1.BackupSpec{
			Schedule: "0 2 * * *", RetentionDays: 7,
		}},
		Status: kdcv1alpha1.KdcClusterStatus{DataStoreName: "ds1"},
	}
	for _, m := range mutate {
		m(c)
	}
	return c
}

func backupTestInputs(mutate ...func(*backupInputs)) backupInputs {
	in := backupInputs{
		Image:            "kdc-etcd-backup:v1",
		EtcdEndpoints:    []string{"https://ds1-etcd-0.ds1-etcd.team-a.svc:2379"},
		S3Endpoint:       "http://rgw.rook-ceph.svc",
		Bucket:           "team-a-managed-k8s-backups",
		CredentialSecret: "managed-k8s-backups",
		Spread:           backupSpread{Schedule: "0 2 * * *"},
	}
	for _, m := range mutate {
		m(&in)
	}
	return in
}

// wantBackupCronJob is the CronJob of the default fixtures; mutate adjusts it.
func wantBackupCronJob(mutate ...func(*batchv1.CronJob)) *batchv1.CronJob {
	labels := map[string]string{
		"app.kubernetes.io/name":       "kdc-etcd-backup",
		"app.kubernetes.io/component":  "etcd-backup",
		"app.kubernetes.io/part-of":    "kdc-etcd-backup",
		"app.kubernetes.io/managed-by": "kdc-etcd-backup",
		"k8s.kube-dc.com/cluster":      "prod",
	}
	env := func(name string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "managed-k8s-backups"}, Key: name,
		}}}
	}
	cj := &batchv1.CronJob{
		TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "CronJob"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "prod-etcd-backup", Namespace: "team-a", Labels: labels,
			Annotations: map[string]string{
				"k8s.kube-dc.com/backup-schedule":        "0 2 * * *",
				"k8s.kube-dc.com/backup-schedule-offset": "0s",
				"k8s.kube-dc.com/backup-mode":            "whole-etcd",
			},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "k8s.kube-dc.com/v1alpha1", Kind: "KdcCluster", Name: "prod", UID: "uid-1",
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: batchv1.CronJobSpec{
			Schedule:                   "0 2 * * *",
			TimeZone:                   ptr.To("Etc/UTC"),
			ConcurrencyPolicy:          batchv1.ForbidConcurrent,
			StartingDeadlineSeconds:    ptr.To[int64](600),
			SuccessfulJobsHistoryLimit: ptr.To[int32](3),
			FailedJobsHistoryLimit:     ptr.To[int32](3),
			JobTemplate: batchv1.JobTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: batchv1.JobSpec{
					BackoffLimit:          ptr.To[int32](2),
					ActiveDeadlineSeconds: ptr.To[int64](1800),
					PodFailurePolicy: &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{
						{Action: batchv1.PodFailurePolicyActionFailJob, OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{
							ContainerName: ptr.To("backup"), Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{3, 5, 6},
						}},
						{Action: batchv1.PodFailurePolicyActionIgnore, OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{{
							Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue,
						}}},
					}},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: labels},
						Spec: corev1.PodSpec{
							RestartPolicy:                 corev1.RestartPolicyNever,
							AutomountServiceAccountToken:  ptr.To(false),
							EnableServiceLinks:            ptr.To(false),
							TerminationGracePeriodSeconds: ptr.To[int64](30),
							SecurityContext: &corev1.PodSecurityContext{
								RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](65532), RunAsGroup: ptr.To[int64](65532),
								FSGroup: ptr.To[int64](65532), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
							},
							Containers: []corev1.Container{{
								Name:    "backup",
								Image:   "kdc-etcd-backup:v1",
								Command: []string{"/kdc-etcd-backup"},
								Args: []string{"backup", "--cluster=prod",
									"--endpoints=https://ds1-etcd-0.ds1-etcd.team-a.svc:2379",
									"--s3-endpoint=http://rgw.rook-ceph.svc",
									"--bucket=team-a-managed-k8s-backups",
									"--retention-days=7"},
								Env:          []corev1.EnvVar{env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")},
								VolumeMounts: []corev1.VolumeMount{{Name: "etcd-certs", MountPath: "/etc/etcd/pki", ReadOnly: true}},
								Resources: corev1.ResourceRequirements{
									Requests: corev1.ResourceList{corev1.ResourceCPU: mustQuantity("100m"), corev1.ResourceMemory: mustQuantity("64Mi")},
									Limits:   corev1.ResourceList{corev1.ResourceMemory: mustQuantity("256Mi")},
								},
								TerminationMessagePolicy: corev1.TerminationMessageReadFile,
								SecurityContext: &corev1.SecurityContext{
									AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true), RunAsNonRoot: ptr.To(true),
									Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
								},
							}},
							Volumes: []corev1.Volume{{Name: "etcd-certs", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
								SecretName: "ds1-etcd-certs", DefaultMode: ptr.To[int32](0o440),
							}}}},
						},
					},
				},
			},
		},
	}
	for _, m := range mutate {
		m(cj)
	}
	return cj
}

func backupContainer(cj *batchv1.CronJob) *corev1.Container {
	return &cj.Spec.JobTemplate.Spec.Template.Spec.Containers[0]
}

func TestBuildBackupCronJob(t *testing.T) {
	cases := map[string]struct {
		cluster *kdcv1alpha1.KdcCluster
		in      backupInputs
		want    *batchv1.CronJob
	}{
		"defaults": {
			cluster: backupTestCluster(),
			in:      backupTestInputs(),
			want:    wantBackupCronJob(),
		},
		"custom schedule, retention, prefix, region and credential Secret": {
			cluster: backupTestCluster(func(c *kdcv1alpha1.KdcCluster) {
				c.Spec.Backup.Schedule = "*/30 * * * *"
				c.Spec.Backup.RetentionDays = 30
			}),
			in: backupTestInputs(func(in *backupInputs) {
				in.Bucket, in.Prefix, in.Region, in.CredentialSecret = "shared", "tenants/a", "eu-1", "my-s3"
				in.Spread = backupSpread{Schedule: "*/30 * * * *"}
			}),
			want: wantBackupCronJob(func(cj *batchv1.CronJob) {
				cj.Spec.Schedule = "*/30 * * * *"
				cj.Annotations["k8s.kube-dc.com/backup-schedule"] = "*/30 * * * *"
				ctr := backupContainer(cj)
				ctr.Args = []string{"backup", "--cluster=prod",
					"--endpoints=https://ds1-etcd-0.ds1-etcd.team-a.svc:2379",
					"--s3-endpoint=http://rgw.rook-ceph.svc", "--bucket=shared",
					"--prefix=tenants/a", "--region=eu-1", "--retention-days=30"}
				for i := range ctr.Env {
					ctr.Env[i].ValueFrom.SecretKeyRef.Name = "my-s3"
				}
			}),
		},
		"empty schedule (object predating the default) and no retention": {
			cluster: backupTestCluster(func(c *kdcv1alpha1.KdcCluster) {
				c.Spec.Backup.Schedule = ""
				c.Spec.Backup.RetentionDays = 0
			}),
			in: backupTestInputs(),
			want: wantBackupCronJob(func(cj *batchv1.CronJob) {
				ctr := backupContainer(cj)
				ctr.Args = ctr.Args[:len(ctr.Args)-1]
			}),
		},
		"spread and queued": {
			cluster: backupTestCluster(),
			in: backupTestInputs(func(in *backupInputs) {
				in.Spread = backupSpread{Schedule: "37 2 * * *", Offset: 37 * time.Minute}
				in.Queued = true
			}),
			want: wantBackupCronJob(func(cj *batchv1.CronJob) {
				cj.Spec.Schedule = "37 2 * * *"
				cj.Annotations["k8s.kube-dc.com/backup-schedule-offset"] = "37m0s"
				cj.Spec.JobTemplate.Spec.Suspend = ptr.To(true)
			}),
		},
		"opted out of spreading": {
			cluster: backupTestCluster(),
			in: backupTestInputs(func(in *backupInputs) {
				in.Spread = backupSpread{Schedule: "0 2 * * *", Why: "exact schedule asked for (kube-dc.com/backup-exact-schedule)"}
			}),
			want: wantBackupCronJob(func(cj *batchv1.CronJob) {
				cj.Annotations["k8s.kube-dc.com/backup-schedule-note"] = "not spread: exact schedule asked for (kube-dc.com/backup-exact-schedule)"
			}),
		},
		"three etcd members": {
			cluster: backupTestCluster(),
			in: backupTestInputs(func(in *backupInputs) {
				in.EtcdEndpoints = []string{"https://a:2379", "https://b:2379", "https://c:2379"}
			}),
			want: wantBackupCronJob(func(cj *batchv1.CronJob) {
				backupContainer(cj).Args[2] = "--endpoints=https://a:2379,https://b:2379,https://c:2379"
			}),
		},
		"prefix mode on a shared datastore": {
			cluster: backupTestCluster(),
			in: backupTestInputs(func(in *backupInputs) {
				in.Mode, in.EtcdPrefix = engine.ModePrefix, "/acme_a"
			}),
			want: wantBackupCronJob(func(cj *batchv1.CronJob) {
				cj.Annotations["k8s.kube-dc.com/backup-mode"] = "prefix"
				cj.Annotations["k8s.kube-dc.com/backup-etcd-prefix"] = "/acme_a"
				args := backupContainer(cj).Args
				backupContainer(cj).Args = append([]string{"prefix-backup", args[1], "--etcd-prefix=/acme_a", args[2]}, args[3:]...)
			}),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := buildBackupCronJob(tc.cluster, tc.in)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("buildBackupCronJob() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolveBackupS3Location(t *testing.T) {
	cm := func(data map[string]string) *corev1.ConfigMap { return &corev1.ConfigMap{Data: data} }
	obc := &obcv1alpha1.ObjectBucketClaim{Spec: obcv1alpha1.ObjectBucketClaimSpec{BucketName: "from-obc"}}
	rook := map[string]string{"BUCKET_NAME": "rook-bucket", "BUCKET_HOST": "rgw.rook-ceph.svc", "BUCKET_PORT": "8080", "BUCKET_REGION": "us-east-1"}
	cases := map[string]struct {
		cluster *kdcv1alpha1.KdcCluster
		obc     *obcv1alpha1.ObjectBucketClaim
		cm      *corev1.ConfigMap
		def     string
		want    backupS3Location
		wantErr error
	}{
		"Rook ConfigMap": {
			cluster: backupTestCluster(), obc: obc, cm: cm(rook), def: "http://default",
			want: backupS3Location{S3Location: jobspec.S3Location{Endpoint: "http://rgw.rook-ceph.svc:8080", Bucket: "rook-bucket", Region: "us-east-1"}, EndpointSource: "ConfigMap team-a/managed-k8s-backups"},
		},
		"destinationPath and s3Endpoint override the claim": {
			cluster: backupTestCluster(func(c *kdcv1alpha1.KdcCluster) {
				c.Spec.Backup.DestinationPath = "s3://other/tenants/x/"
				c.Spec.Backup.S3Endpoint = "https://s3.example.com"
			}),
			obc: obc, cm: cm(rook), def: "http://default",
			want: backupS3Location{S3Location: jobspec.S3Location{Endpoint: "https://s3.example.com", Bucket: "other", Prefix: "tenants/x", Region: "us-east-1"}, EndpointSource: "spec.backup.s3Endpoint"},
		},
		"no ConfigMap: OBC bucket name and the manager's endpoint": {
			cluster: backupTestCluster(), obc: obc, def: "http://default",
			want: backupS3Location{S3Location: jobspec.S3Location{Endpoint: "http://default", Bucket: "from-obc"}, EndpointSource: "the manager's --s3-endpoint"},
		},
		"nothing named: default bucket": {
			cluster: backupTestCluster(), obc: &obcv1alpha1.ObjectBucketClaim{}, cm: cm(map[string]string{"BUCKET_HOST": "s3.example.com", "BUCKET_PORT": "443"}),
			want: backupS3Location{S3Location: jobspec.S3Location{Endpoint: "https://s3.example.com", Bucket: "team-a-managed-k8s-backups"}, EndpointSource: "ConfigMap team-a/managed-k8s-backups"},
		},
		"no endpoint anywhere": {
			cluster: backupTestCluster(), obc: obc,
			want:    backupS3Location{S3Location: jobspec.S3Location{Bucket: "from-obc"}},
			wantErr: errNoS3Endpoint,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := resolveBackupS3Location(tc.cluster, tc.obc, tc.cm, tc.def)
			if err != tc.wantErr {
				t.Fatalf("resolveBackupS3Location() error = %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("resolveBackupS3Location() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBackupEtcdEndpoints(t *testing.T) {
	sts := func(service string, replicas int32, ports ...corev1.ContainerPort) *appsv1.StatefulSet {
		return &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: "ds1-etcd", Namespace: "dsns"},
			Spec: appsv1.StatefulSetSpec{ServiceName: service, Replicas: ptr.To(replicas), Template: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "etcd", Ports: ports}}},
			}},
		}
	}
	cases := map[string]struct {
		sts  *appsv1.StatefulSet
		want []string
	}{
		"one member":                      {sts: sts("ds1-etcd", 1), want: []string{"https://ds1-etcd-0.ds1-etcd.dsns.svc:2379"}},
		"scaled to zero during a restore": {sts: sts("ds1-etcd", 0), want: []string{"https://ds1-etcd-0.ds1-etcd.dsns.svc:2379"}},
		"three members and a named client port": {
			sts: sts("peers", 3, corev1.ContainerPort{Name: "peer", ContainerPort: 2380}, corev1.ContainerPort{Name: "client", ContainerPort: 12379}),
			want: []string{
				"https://ds1-etcd-0.peers.dsns.svc:12379",
				"https://ds1-etcd-1.peers.dsns.svc:12379",
				"https://ds1-etcd-2.peers.dsns.svc:12379",
			},
		},
		"no governing Service": {sts: sts("", 1), want: []string{"https://ds1-etcd-client.dsns.svc:2379"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, backupEtcdEndpoints(tc.sts)); diff != "" {
				t.Errorf("backupEtcdEndpoints() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func mustQuantity(s string) resource.Quantity { return resource.MustParse(s) }

func TestBackupFieldsMatch(t *testing.T) {
	want, err := backupToMap(wantBackupCronJob())
	if err != nil {
		t.Fatal(err)
	}
	delete(want, "status")
	cases := map[string]struct {
		mutate func(*batchv1.CronJob)
		want   bool
	}{
		"identical": {mutate: func(*batchv1.CronJob) {}, want: true},
		"server defaults and status only": {mutate: func(cj *batchv1.CronJob) {
			cj.Spec.Suspend = ptr.To(false)
			backupContainer(cj).TerminationMessagePath = "/dev/termination-log"
			backupContainer(cj).ImagePullPolicy = corev1.PullIfNotPresent
			cj.Status.LastScheduleTime = &metav1.Time{}
			cj.ResourceVersion = "42"
		}, want: true},
		"unmanaged label added":     {mutate: func(cj *batchv1.CronJob) { cj.Labels["team"] = "db" }, want: true},
		"managed schedule changed":  {mutate: func(cj *batchv1.CronJob) { cj.Spec.Schedule = "5 5 * * *" }, want: false},
		"managed label changed":     {mutate: func(cj *batchv1.CronJob) { cj.Labels["app.kubernetes.io/managed-by"] = "x" }, want: false},
		"argument removed":          {mutate: func(cj *batchv1.CronJob) { backupContainer(cj).Args = backupContainer(cj).Args[:2] }, want: false},
		"security context loosened": {mutate: func(cj *batchv1.CronJob) { backupContainer(cj).SecurityContext.ReadOnlyRootFilesystem = nil }, want: false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cj := wantBackupCronJob()
			tc.mutate(cj)
			have, err := backupToMap(cj)
			if err != nil {
				t.Fatal(err)
			}
			if got := backupFieldsMatch(want, have); got != tc.want {
				t.Errorf("backupFieldsMatch() = %v, want %v", got, tc.want)
			}
		})
	}
}
