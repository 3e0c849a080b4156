package engine

import (
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	et "kube-dc.com/etcd-backup/engine/enginetest"
	"kube-dc.com/etcd-backup/jobspec"
)

func TestDeriveEtcdMember(t *testing.T) {
	withContainer := func(mutate func(c *corev1.Container)) *appsv1.StatefulSet {
		sts := et.EtcdStatefulSet("ns1", "ds", 1)
		mutate(&sts.Spec.Template.Spec.Containers[0])
		return sts
	}
	cases := []struct {
		name    string
		sts     *appsv1.StatefulSet
		want    jobspec.Member
		wantErr bool
	}{
		{
			name: "flags with $(POD_NAME) from the downward API",
			sts:  et.EtcdStatefulSet("ns1", "ds", 1),
			want: jobspec.Member{
				Name:           "ds-etcd-0",
				PeerURLs:       []string{"https://ds-etcd-0.ds-etcd.ns1.svc:2380"},
				InitialCluster: "ds-etcd-0=https://ds-etcd-0.ds-etcd.ns1.svc:2380",
				ClusterToken:   "kamaji",
				DataDir:        kdcv1alpha1.EtcdDataDir,
			},
		},
		{
			name: "etcd defaults when nothing is set",
			sts: withContainer(func(c *corev1.Container) {
				c.Args = []string{"--data-dir=/var/run/etcd/default.etcd"}
				c.Env = nil
			}),
			want: jobspec.Member{Name: "default", PeerURLs: []string{"http://localhost:2380"},
				InitialCluster: "default=http://localhost:2380", ClusterToken: "etcd-cluster", DataDir: kdcv1alpha1.EtcdDataDir},
		},
		{
			name: "ETCD_* environment, space-separated flags win over it",
			sts: withContainer(func(c *corev1.Container) {
				c.Args = []string{"--name", "m0"}
				c.Env = []corev1.EnvVar{
					{Name: "ETCD_NAME", Value: "ignored"},
					{Name: "ETCD_INITIAL_ADVERTISE_PEER_URLS", Value: "http://m0:2380,http://m0b:2380"},
					{Name: "ETCD_INITIAL_CLUSTER_TOKEN", Value: "tok"},
					{Name: "ETCD_DATA_DIR", Value: "/data/member"},
				}
				c.VolumeMounts = []corev1.VolumeMount{{Name: "etcd-data", MountPath: "/data"}}
			}),
			want: jobspec.Member{Name: "m0", PeerURLs: []string{"http://m0:2380", "http://m0b:2380"},
				InitialCluster: "m0=http://m0:2380,m0=http://m0b:2380", ClusterToken: "tok", DataDir: "/var/run/etcd/member"},
		},
		{
			name: "shell script with ${HOSTNAME}",
			sts: withContainer(func(c *corev1.Container) {
				c.Command = []string{"/bin/sh", "-c"}
				c.Args = []string{`exec etcd --name=${HOSTNAME} --initial-advertise-peer-urls="http://${HOSTNAME}.ds-etcd:2380" --data-dir /var/run/etcd/default.etcd`}
				c.Env = nil
			}),
			want: jobspec.Member{Name: "ds-etcd-0", PeerURLs: []string{"http://ds-etcd-0.ds-etcd:2380"},
				InitialCluster: "ds-etcd-0=http://ds-etcd-0.ds-etcd:2380", ClusterToken: "etcd-cluster", DataDir: kdcv1alpha1.EtcdDataDir},
		},
		{
			name: "unresolvable variable (pod IP) is an error, not a guess",
			sts: withContainer(func(c *corev1.Container) {
				c.Args = []string{"--name=x", "--initial-advertise-peer-urls=http://$(POD_IP):2380", "--data-dir=/var/run/etcd/default.etcd"}
				c.Env = []corev1.EnvVar{{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}}
			}),
			wantErr: true,
		},
		{
			name:    "data dir outside the data volume",
			sts:     withContainer(func(c *corev1.Container) { c.Args = []string{"--data-dir=/tmp/etcd"} }),
			wantErr: true,
		},
		{
			name:    "data dir is the mount itself (cannot be swapped)",
			sts:     withContainer(func(c *corev1.Container) { c.Args = []string{"--data-dir=/var/run/etcd"} }),
			wantErr: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DeriveEtcdMember(tc.sts)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("DeriveEtcdMember (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRestoreRunAsOf(t *testing.T) {
	cases := []struct {
		name string
		spec corev1.PodSpec
		want RunAs
	}{
		{"unset: default non-root user", corev1.PodSpec{Containers: []corev1.Container{{Name: "etcd"}}}, RunAs{65532, 65532, 65532}},
		{"pod level", corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000), RunAsGroup: ptr.To[int64](2000), FSGroup: ptr.To[int64](3000)},
			Containers: []corev1.Container{{Name: "etcd"}}}, RunAs{1000, 2000, 3000}},
		{"container wins over pod", corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000)},
			Containers: []corev1.Container{{Name: "etcd", SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To[int64](1001)}}}}, RunAs{1001, 1001, 1001}},
		{"root is never used", corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](0)},
			Containers: []corev1.Container{{Name: "etcd"}}}, RunAs{65532, 65532, 65532}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, RunAsOf(&tc.spec)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// testAttempt is the attempt of the Jobs built from testPlan.
const testAttempt = "2026-03-01T12:00:00Z"

func testPlan() *Plan {
	return &Plan{
		Image:            et.Image,
		Key:              et.Key,
		Location:         jobspec.S3Location{Endpoint: "http://rgw:80", Bucket: "b", Prefix: "tenants"},
		CredentialSecret: "managed-k8s-backups",
		Member: jobspec.Member{Name: "ds-etcd-0", PeerURLs: []string{"https://ds-etcd-0.ds-etcd.ns1.svc:2380"},
			InitialCluster: "ds-etcd-0=https://ds-etcd-0.ds-etcd.ns1.svc:2380", ClusterToken: "kamaji", DataDir: kdcv1alpha1.EtcdDataDir},
		RunAs: RunAs{UID: 1000, GID: 1000, FSGroup: 1000},
	}
}

func TestBuildRestoreJobArgs(t *testing.T) {
	c := et.Cluster("ns1", "prod", "ds", nil)
	cases := []struct {
		kind        JobKind
		wantNS      string
		wantName    string
		wantArgs    []string
		wantPVC     bool
		wantEnv     bool
		wantOwner   bool
		wantBackoff int32
	}{
		{JobVerify, "ns1", "prod-etcd-verify", []string{"verify", "--key=" + et.Key, "--cluster=prod",
			"--s3-endpoint=http://rgw:80", "--bucket=b", "--prefix=tenants"}, false, true, true, 2},
		{JobRestore, "ns1", "prod-etcd-restore", []string{"restore", "--key=" + et.Key, "--cluster=prod",
			"--data-dir=/var/run/etcd/default.etcd", "--name=ds-etcd-0",
			"--initial-cluster=ds-etcd-0=https://ds-etcd-0.ds-etcd.ns1.svc:2380",
			"--initial-advertise-peer-urls=https://ds-etcd-0.ds-etcd.ns1.svc:2380",
			"--initial-cluster-token=kamaji", "--bump-revision=1000000000", "--mark-compacted=true",
			"--s3-endpoint=http://rgw:80", "--bucket=b", "--prefix=tenants"}, true, true, true, 0},
		{JobRollback, "ns1", "prod-etcd-rollback", []string{"rollback", "--data-dir=/var/run/etcd/default.etcd"}, true, false, true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.wantName, func(t *testing.T) {
			job := BuildJob(tc.kind, c, testPlan(), testAttempt)
			pod := job.Spec.Template.Spec
			ctr := pod.Containers[0]
			if diff := cmp.Diff([]string{tc.wantNS, tc.wantName}, []string{job.Namespace, job.Name}); diff != "" {
				t.Errorf("namespace/name (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantArgs, ctr.Args); diff != "" {
				t.Errorf("args (-want +got):\n%s", diff)
			}
			var pvc string
			for _, v := range pod.Volumes {
				if v.PersistentVolumeClaim != nil {
					pvc = v.PersistentVolumeClaim.ClaimName
				}
			}
			if (pvc == "etcd-data-ds-etcd-0") != tc.wantPVC {
				t.Errorf("PVC = %q, want mounted: %v", pvc, tc.wantPVC)
			}
			if (len(ctr.Env) == 2) != tc.wantEnv {
				t.Errorf("env = %v, want S3 credentials: %v", ctr.Env, tc.wantEnv)
			}
			if (len(job.OwnerReferences) == 1) != tc.wantOwner {
				t.Errorf("owner references = %v", job.OwnerReferences)
			}
			if diff := cmp.Diff(tc.wantBackoff, *job.Spec.BackoffLimit); diff != "" {
				t.Errorf("backoffLimit (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(map[string]string{kdcv1alpha1.AnnotationRestoreAttempt: "2026-03-01T12:00:00Z"}, job.Annotations); diff != "" {
				t.Errorf("annotations (-want +got):\n%s", diff)
			}
			sc := ctr.SecurityContext
			if !*sc.ReadOnlyRootFilesystem || !*sc.RunAsNonRoot || *sc.AllowPrivilegeEscalation || *pod.SecurityContext.RunAsUser != 1000 {
				t.Errorf("security context not locked down: %+v / %+v", sc, pod.SecurityContext)
			}
		})
	}
}

// TestBuildRestoreJobWhole pins the complete restore Job, so any change to it is deliberate.
func TestBuildRestoreJobWhole(t *testing.T) {
	c := et.Cluster("ns1", "prod", "ds", nil)
	c.Spec.DataStore.Namespace = "datastores"
	got := BuildJob(JobRestore, c, testPlan(), testAttempt)
	labels := map[string]string{
		kdcv1alpha1.LabelName: kdcv1alpha1.ProductName, kdcv1alpha1.LabelComponent: kdcv1alpha1.ComponentRestore,
		kdcv1alpha1.LabelPartOf: kdcv1alpha1.ProductName, kdcv1alpha1.LabelManagedBy: kdcv1alpha1.ProductName,
		kdcv1alpha1.LabelCluster: "prod", kdcv1alpha1.LabelClusterNamespace: "ns1",
	}
	secretEnv := func(name string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "managed-k8s-backups"}, Key: name}}}
	}
	want := &batchv1.Job{
		TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{Name: "prod-etcd-restore", Namespace: "datastores", Labels: labels,
			Annotations: map[string]string{kdcv1alpha1.AnnotationRestoreAttempt: "2026-03-01T12:00:00Z"}},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			PodFailurePolicy: &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
				Action: batchv1.PodFailurePolicyActionFailJob,
				OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{ContainerName: ptr.To("restore"),
					Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{3, 4, 5, 6, 9, 10, 11, 12}},
			}}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever, AutomountServiceAccountToken: ptr.To(false),
					EnableServiceLinks: ptr.To(false), TerminationGracePeriodSeconds: ptr.To[int64](30),
					SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](1000),
						RunAsGroup: ptr.To[int64](1000), FSGroup: ptr.To[int64](1000),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
					Containers: []corev1.Container{{
						Name: "restore", Image: et.Image, Command: []string{"/kdc-etcd-backup"},
						Args: jobArgs(JobRestore, c, testPlan(), testAttempt, member{count: 1}),
						Env:  []corev1.EnvVar{secretEnv("AWS_ACCESS_KEY_ID"), secretEnv("AWS_SECRET_ACCESS_KEY")},
						VolumeMounts: []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"},
							{Name: "etcd-data", MountPath: kdcv1alpha1.EtcdDataMountPath}},
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU: got.Spec.Template.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU], corev1.ResourceMemory: got.Spec.Template.Spec.Containers[0].Resources.Requests[corev1.ResourceMemory]}},
						TerminationMessagePolicy: corev1.TerminationMessageReadFile,
						SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
							RunAsNonRoot: ptr.To(true), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
					}},
					Volumes: []corev1.Volume{
						{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
						{Name: "etcd-data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "etcd-data-ds-etcd-0"}}},
					},
				},
			},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("restore Job (-want +got):\n%s", diff)
	}
}

func TestRestoreFreshBackupJob(t *testing.T) {
	c := et.Cluster("ns1", "prod", "ds", nil)
	cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "prod-etcd-backup", UID: "cj"},
		Spec: batchv1.CronJobSpec{JobTemplate: batchv1.JobTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}},
			Spec: batchv1.JobSpec{BackoffLimit: ptr.To[int32](2)}}}}
	got := BuildFreshBackupJob(c, cj, "t1")
	if diff := cmp.Diff([]string{"ns1", "b", "CronJob", "prod-etcd-backup", "manual"},
		[]string{got.Namespace, got.Labels["a"], got.OwnerReferences[0].Kind, got.OwnerReferences[0].Name, got.Annotations["cronjob.kubernetes.io/instantiate"]}); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got.Name == freshBackupJobName(c, "t2") {
		t.Errorf("two restores got the same backup Job name %s", got.Name)
	}
	long := et.Cluster("ns1", "a-very-long-cluster-name-that-goes-on-and-on-and-on-for-ever", "ds", nil)
	if n := freshBackupJobName(long, "t1"); len(n) > 63 {
		t.Errorf("name %q is %d > 63 characters", n, len(n))
	}
}

func TestRestoreJobFailureDetail(t *testing.T) {
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "j"}}
	pod := func(code int32, msg string) corev1.Pod {
		return corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: ContainerName,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Message: msg}}}}}}
	}
	cases := []struct {
		name string
		pods []corev1.Pod
		want string
	}{
		{"termination message", []corev1.Pod{pod(4, `{"error":"object \"k\" does not exist","reason":"ObjectMissing","exitCode":4}`)},
			`Job ns/j: object "k" does not exist (ObjectMissing, exit code 4)`},
		{"plain message", []corev1.Pod{pod(1, "panic: boom\n")}, "Job ns/j: container exited with code 1: panic: boom"},
		{"no pods", nil, "Job ns/j failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, jobFailureDetail(job, tc.pods)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestRestoreJobRevision(t *testing.T) {
	pod := func(name string, code int32, msg string) corev1.Pod {
		return corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: name,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Message: msg}}}}}}
	}
	const result = `{"key":"c/c-20260101T020000Z.db","revision":239,"revisionBefore":2000000241,"bumpRevision":3000000002,"restoredRevision":3000000241,"revisionMarks":{"dataRevision":2000000241}}`
	want := kdcv1alpha1.RestoreRevision{Revision: 239, RevisionBefore: 2000000241, BumpRevision: 3000000002, RestoredRevision: 3000000241}
	cases := []struct {
		name   string
		pods   []corev1.Pod
		want   kdcv1alpha1.RestoreRevision
		wantOK bool
	}{
		{"succeeded pod", []corev1.Pod{pod(ContainerName, 0, result)}, want, true},
		{"after a failed pod", []corev1.Pod{pod(ContainerName, 1, `{"error":"x","exitCode":1}`), pod(ContainerName, 0, result)}, want, true},
		{"another container", []corev1.Pod{pod("sidecar", 0, result)}, kdcv1alpha1.RestoreRevision{}, false},
		{"a result without revisions (an older binary)", []corev1.Pod{pod(ContainerName, 0, `{"key":"c/c-20260101T020000Z.db"}`)}, kdcv1alpha1.RestoreRevision{}, false},
		{"not JSON", []corev1.Pod{pod(ContainerName, 0, "done")}, kdcv1alpha1.RestoreRevision{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := jobRevision(tc.pods)
			if diff := cmp.Diff([]any{tc.want, tc.wantOK}, []any{got, ok}); diff != "" {
				t.Errorf("jobRevision() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRestoreRestoreArgsTargetVersion(t *testing.T) {
	c := et.Cluster("ns1", "prod", "ds", nil)
	cases := []struct {
		name, version string
		want          []string
	}{
		{"no datastore version leaves the data as etcdutl writes it", "", nil},
		{"the datastore's version is the migration target", "v3.5.21", []string{"--target-version=v3.5.21"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := testPlan()
			in.TargetVersion = tc.version
			var got []string
			for _, a := range jobArgs(JobRestore, c, in, testAttempt, member{count: 1}) {
				if strings.HasPrefix(a, "--target-version") {
					got = append(got, a)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestPrefixAttempt(t *testing.T) {
	for in, want := range map[string]string{
		"2026-12-07T05:38:59.852084496Z": "20261207T053859.852084496Z",
		"2026-12-07T05:38:59Z":           "20261207T053859Z",
		"2026-12-07T06:38:59+01:00":      "20261207T053859Z",
	} {
		got := prefixAttempt(in)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("prefixAttempt(%q) (-want +got):\n%s", in, diff)
		}
		if !regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`).MatchString(got) {
			t.Errorf("prefixAttempt(%q) = %q, not a name prefix-restore takes", in, got)
		}
	}
}
