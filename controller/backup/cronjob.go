package backup

import (
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/engine"
	"kube-dc.com/etcd-backup/jobspec"
	"kube-dc.com/etcd-backup/schedule"
)

// Fixed shape of the backup CronJob. Each bounds something an operator would otherwise have to
// clean up or wait for.
const (
	// backupTimeZone: spec.backup.schedule is evaluated in UTC (docs/backup.md).
	backupTimeZone = "Etc/UTC"
	// backupStartingDeadlineSeconds: a run missed by more than this (manager or KCM down) is
	// skipped, not started late; BackupStale reports the gap.
	backupStartingDeadlineSeconds int64 = 600
	// backupSuccessfulJobsHistoryLimit and backupFailedJobsHistoryLimit bound the kept Jobs; the
	// newest finished one is always kept, which is all the status logic reads.
	backupSuccessfulJobsHistoryLimit int32 = 3
	backupFailedJobsHistoryLimit     int32 = 3
	// backupBackoffLimit is the number of retries of a failed pod (exit codes that a retry can
	// fix; the others fail the Job at once through the pod failure policy).
	backupBackoffLimit int32 = 2
	// backupUID is the non-root user and group of the backup container.
	backupUID int64 = 65532

	// backupContainerName is the Job's only container.
	backupContainerName = "backup"
	// backupCertsVolumeName is the volume of the DS-etcd-certs Secret.
	backupCertsVolumeName = "etcd-certs"
)

// backupInputs is everything the CronJob depends on besides the KdcCluster itself, resolved by
// the reconciler from the ObjectBucketClaim, its ConfigMap, the etcd StatefulSet and the flags.
type backupInputs struct {
	// Image is the manager's own image.
	Image string
	// EtcdEndpoints are the etcd client URLs of the datastore.
	EtcdEndpoints []string
	// S3Endpoint is the S3 endpoint URL.
	S3Endpoint string
	// Bucket and Prefix locate the snapshots (Prefix is empty without destinationPath).
	Bucket, Prefix string
	// Region is the S3 signing region; empty keeps the subcommand's default.
	Region string
	// CredentialSecret holds AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
	CredentialSecret string
	// Spread is the schedule the CronJob runs on.
	Spread backupSpread
	// Queued creates the Jobs suspended: the backup admission starts them in turn.
	Queued bool
	// Mode is whole-etcd or prefix (engine.ModeOf); EtcdPrefix the tenant's key prefix and
	// EtcdCerts its client certificate in prefix mode.
	Mode       engine.Mode
	EtcdPrefix string
	EtcdCerts  jobspec.EtcdCerts
}

// backupLabels are the labels of the CronJob, its Jobs and their pods.
func backupLabels(c *kdcv1alpha1.KdcCluster) map[string]string {
	return jobspec.OwnedLabels(c, kdcv1alpha1.ComponentBackup)
}

// backupArgs are the arguments of `kdc-etcd-backup backup` (docs/jobs.md). The etcd TLS flags
// keep their defaults: the files of DS-etcd-certs mounted at EtcdCertsMountPath.
func backupArgs(c *kdcv1alpha1.KdcCluster, in backupInputs) []string {
	loc := jobspec.S3Location{Endpoint: in.S3Endpoint, Bucket: in.Bucket, Prefix: in.Prefix, Region: in.Region}
	if in.Mode == engine.ModePrefix {
		return jobspec.PrefixBackup{Cluster: c.Name, Etcd: jobspec.PrefixEtcd{Prefix: in.EtcdPrefix, Endpoints: in.EtcdEndpoints},
			RetentionDays: int(c.Spec.Backup.RetentionDays), Location: loc}.Args()
	}
	return jobspec.Backup{Cluster: c.Name, Endpoints: in.EtcdEndpoints, RetentionDays: int(c.Spec.Backup.RetentionDays), Location: loc}.Args()
}

// buildBackupCronJob returns the CronJob C-etcd-backup exactly as the KdcCluster and the resolved
// inputs ask. It is pure; the reconciler server-side applies it, so the fields set here are the
// managed ones and anything else (say, a hand-set spec.suspend) is left alone.
func buildBackupCronJob(c *kdcv1alpha1.KdcCluster, in backupInputs) *batchv1.CronJob {
	labels := backupLabels(c)
	podSpec := corev1.PodSpec{
		RestartPolicy:                 corev1.RestartPolicyNever,
		AutomountServiceAccountToken:  ptr.To(false),
		EnableServiceLinks:            ptr.To(false),
		TerminationGracePeriodSeconds: ptr.To[int64](30),
		SecurityContext:               jobspec.PodSecurityContext(backupUID, backupUID, backupUID),
		Containers: []corev1.Container{{
			Name:    backupContainerName,
			Image:   in.Image,
			Command: []string{jobspec.Binary},
			Args:    backupArgs(c, in),
			Env:     jobspec.S3CredentialEnv(in.CredentialSecret),
			VolumeMounts: []corev1.VolumeMount{{
				Name:      backupCertsVolumeName,
				MountPath: kdcv1alpha1.EtcdCertsMountPath,
				ReadOnly:  true,
			}},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{
					corev1.ResourceCPU:    resource.MustParse("100m"),
					corev1.ResourceMemory: resource.MustParse("64Mi"),
				},
				// About (concurrency+1) x part size of buffers plus the runtime (docs/jobs.md).
				Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
			},
			TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			SecurityContext:          jobspec.ContainerSecurityContext(),
		}},
		Volumes: []corev1.Volume{backupCerts(c, in).Volume(backupCertsVolumeName)},
	}
	annotations := map[string]string{
		kdcv1alpha1.AnnotationBackupSchedule:       c.BackupSchedule(),
		kdcv1alpha1.AnnotationBackupMode:           string(backupMode(in.Mode)),
		kdcv1alpha1.AnnotationBackupScheduleOffset: in.Spread.Offset.String(),
	}
	if in.Spread.Why != "" {
		annotations[kdcv1alpha1.AnnotationBackupScheduleNote] = "not spread: " + in.Spread.Why
	}
	if in.Mode == engine.ModePrefix {
		annotations[kdcv1alpha1.AnnotationBackupEtcdPrefix] = in.EtcdPrefix
	}
	return &batchv1.CronJob{
		TypeMeta: metav1.TypeMeta{APIVersion: batchv1.SchemeGroupVersion.String(), Kind: "CronJob"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            kdcv1alpha1.BackupCronJobName(c.Name),
			Namespace:       c.Namespace,
			Labels:          labels,
			Annotations:     annotations,
			OwnerReferences: []metav1.OwnerReference{jobspec.ClusterOwnerRef(c)},
		},
		Spec: batchv1.CronJobSpec{
			Schedule:                   in.Spread.Schedule,
			TimeZone:                   ptr.To(backupTimeZone),
			ConcurrencyPolicy:          batchv1.ForbidConcurrent,
			StartingDeadlineSeconds:    ptr.To(backupStartingDeadlineSeconds),
			SuccessfulJobsHistoryLimit: ptr.To(backupSuccessfulJobsHistoryLimit),
			FailedJobsHistoryLimit:     ptr.To(backupFailedJobsHistoryLimit),
			JobTemplate: batchv1.JobTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: batchv1.JobSpec{
					Suspend:               backupSuspend(in.Queued),
					BackoffLimit:          ptr.To(backupBackoffLimit),
					ActiveDeadlineSeconds: ptr.To(int64(schedule.BackupJobDeadline.Seconds())),
					PodFailurePolicy: &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{
						{
							Action: batchv1.PodFailurePolicyActionFailJob,
							OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{
								ContainerName: ptr.To(backupContainerName),
								Operator:      batchv1.PodFailurePolicyOnExitCodesOpIn,
								Values:        jobspec.NonRetriable(jobspec.CommandBackup),
							},
						},
						{
							// An evicted or preempted pod does not count against the back-off.
							Action: batchv1.PodFailurePolicyActionIgnore,
							OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{{
								Type:   corev1.DisruptionTarget,
								Status: corev1.ConditionTrue,
							}},
						},
					}},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: labels},
						Spec:       podSpec,
					},
				},
			},
		},
	}
}

// backupSuspend is the Jobs' spec.suspend: true when they wait for the backup admission, unset
// otherwise (so the CronJob of a manager without a limit looks as it always did).
func backupSuspend(queued bool) *bool {
	if queued {
		return ptr.To(true)
	}
	return nil
}

// backupMode is the mode of the inputs, whole-etcd unless set.
func backupMode(m engine.Mode) engine.Mode {
	if m == "" {
		return engine.ModeWholeEtcd
	}
	return m
}

// backupCerts is the etcd client certificate of the backup: the tenant's own in prefix mode
// where one exists, else DS-etcd-certs.
func backupCerts(c *kdcv1alpha1.KdcCluster, in backupInputs) jobspec.EtcdCerts {
	if in.EtcdCerts.Secret != "" {
		return in.EtcdCerts
	}
	return jobspec.EtcdCerts{Secret: kdcv1alpha1.EtcdCertsSecretName(c.Status.DataStoreName)}
}
