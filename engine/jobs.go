package engine

import (
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/jobspec"
)

// The fixed shape of the restore's Jobs (docs/jobs.md is the contract of their subcommands).
const (
	// ContainerName is the only container of the verify, restore and rollback Jobs.
	ContainerName = "restore"
	// restoreDataVolume is the Job volume of the etcd data PVC etcd-data-DS-etcd-0.
	restoreDataVolume = "etcd-data"
	// restoreTmpVolume is a writable /tmp under the read-only root filesystem.
	restoreTmpVolume = "tmp"
	// labelMember labels a multi-member restore's data Jobs with their member's ordinal.
	labelMember = "k8s.kube-dc.com/etcd-member"
	// prefixCertsVolume and prefixWorkVolume are the prefix Jobs' etcd client certificate and
	// the room for the snapshot they download.
	prefixCertsVolume = "etcd-certs"
	prefixWorkVolume  = "work"
	// restoreVerifyBackoffLimit: the verify Job touches nothing, so retriable failures (S3
	// unreachable) are retried; the others fail it at once (jobspec.NonRetriable).
	restoreVerifyBackoffLimit int32 = 2
	// restoreBumpRevision is --bump-revision: the restored revision jumps by this much so no
	// client of the tenant's API server ever sees revisions go backwards.
	restoreBumpRevision uint64 = 1_000_000_000
	// restoreDefaultUID is the user the data Jobs run as when the etcd StatefulSet names none
	// (or names root, which the Jobs never run as).
	restoreDefaultUID int64 = 65532
	// restoreJobTTLSeconds keeps finished verify and rollback Jobs (logs) for a day. The restore
	// Job is deleted by the controller on success and kept on failure until the next restore.
	restoreJobTTLSeconds int32 = 24 * 60 * 60
)

// RunAs is the identity the data Jobs run as.
type RunAs struct {
	UID     int64 `json:"uid"`
	GID     int64 `json:"gid"`
	FSGroup int64 `json:"fsGroup"`
}

// RunAsOf takes the etcd container's (else the pod's) runAsUser, runAsGroup and fsGroup,
// so the restore writes etcd's data directory as etcd itself; unset or root becomes
// restoreDefaultUID (the Jobs never run as root).
func RunAsOf(spec *corev1.PodSpec) RunAs {
	ra := RunAs{UID: restoreDefaultUID, GID: restoreDefaultUID, FSGroup: restoreDefaultUID}
	pick := func(dst *int64, vals ...*int64) {
		for _, v := range vals {
			if v != nil && *v != 0 {
				*dst = *v
				return
			}
		}
	}
	var cUID, cGID *int64
	if c, err := etcdContainer(spec.Containers); err == nil && c.SecurityContext != nil {
		cUID, cGID = c.SecurityContext.RunAsUser, c.SecurityContext.RunAsGroup
	}
	var pUID, pGID, pFS *int64
	if psc := spec.SecurityContext; psc != nil {
		pUID, pGID, pFS = psc.RunAsUser, psc.RunAsGroup, psc.FSGroup
	}
	pick(&ra.UID, cUID, pUID)
	pick(&ra.GID, cGID, pGID, cUID, pUID)
	pick(&ra.FSGroup, pFS, cGID, pGID, cUID, pUID)
	return ra
}

// jobLabels are the labels of the restore's Jobs and their pods. LabelClusterNamespace
// lets the watch map a Job in the datastore's namespace back to its KdcCluster.
func jobLabels(c *kdcv1alpha1.KdcCluster) map[string]string {
	labels := jobspec.OwnedLabels(c, kdcv1alpha1.ComponentRestore)
	labels[kdcv1alpha1.LabelClusterNamespace] = c.Namespace
	return labels
}

// jobArgs are the arguments of the Job of kind: the member as DS-etcd runs it, the revision bump
// and mark-compacted (watchers and informers of the tenant re-list) for the restore.
func jobArgs(kind JobKind, c *kdcv1alpha1.KdcCluster, p *Plan, attempt string, m member) []string {
	if p.Mode == ModePrefix {
		attempt = prefixAttempt(attempt)
		etcd := jobspec.PrefixEtcd{Prefix: p.EtcdPrefix, Endpoints: p.EtcdEndpoints}
		switch kind {
		case JobVerify:
			return jobspec.PrefixVerify{Key: p.Key, Cluster: c.Name, Prefix: p.EtcdPrefix, Location: p.Location}.Args()
		case JobRollback:
			return jobspec.PrefixRestore{Cluster: c.Name, Key: p.Key, Attempt: attempt, Undo: true, Etcd: etcd, WorkDir: jobspec.PrefixWorkDir, Location: p.Location}.Args()
		}
		return jobspec.PrefixRestore{Cluster: c.Name, Key: p.Key, Attempt: attempt, Etcd: etcd, WorkDir: jobspec.PrefixWorkDir, Location: p.Location}.Args()
	}
	mem := p.memberOf(m.index)
	switch kind {
	case JobVerify:
		return jobspec.Verify{Key: p.Key, Cluster: c.Name, Location: p.Location}.Args()
	case JobRollback:
		return jobspec.Rollback{DataDir: mem.DataDir, IfSwapped: m.multi()}.Args()
	case JobSwap:
		return jobspec.Swap{DataDir: mem.DataDir, RestoredRevision: m.restored}.Args()
	}
	return jobspec.Restore{Key: p.Key, Cluster: c.Name, Member: mem, BumpRevision: restoreBumpRevision,
		MarkCompacted: true, TargetVersion: p.TargetVersion, Location: p.Location,
		StageOnly: m.multi(), RestoredRevision: m.restored}.Args()
}

// command is the subcommand the Job of kind runs in mode.
func (k JobKind) command(mode Mode) jobspec.Command {
	if mode == ModePrefix {
		if k == JobVerify {
			return jobspec.CommandPrefixVerify
		}
		return jobspec.CommandPrefixRestore
	}
	switch k {
	case JobVerify:
		return jobspec.CommandVerify
	case JobRollback:
		return jobspec.CommandRollback
	case JobSwap:
		return jobspec.CommandSwap
	}
	return jobspec.CommandRestore
}

// JobKind tells the three Jobs apart.
type JobKind int

const (
	JobVerify JobKind = iota
	JobRestore
	JobRollback
	// JobSwap swaps a member's staged restore in (multi-member restores).
	JobSwap
)

// member says which etcd member a data Job is for. A single-member datastore has one Job per
// kind with today's names; a multi-member one a Job per kind and member, named -<i>, staging
// (restore --swap=false) before every member is swapped at one revision.
type member struct {
	index, count int
	// restored pins the restored revision (0: the member's own rule decides).
	restored int64
	// restage names the second staging of a member below the agreed revision.
	restage bool
}

func (m member) multi() bool { return m.count > 1 }

// BuildJob returns the verify, restore or rollback Job of a restore. It is pure.
//
//   - verify runs in the cluster's namespace (owned by the KdcCluster), mounts nothing and only
//     reads the snapshot: the pre-flight proof before anything disruptive;
//   - restore and rollback run in the datastore's namespace, where the PVC etcd-data-DS-etcd-0
//     is, mounted at EtcdDataMountPath, as etcd's own user. They never retry (backoffLimit 0): a
//     second restore run would push the kept previous data out, a second rollback undoes the
//     first. Everything retriable happens before the swap, so the operator can re-annotate.
func BuildJob(kind JobKind, c *kdcv1alpha1.KdcCluster, p *Plan, attempt string) *batchv1.Job {
	return buildJob(kind, c, p, attempt, member{count: 1})
}

// buildJob is BuildJob for member m.
func buildJob(kind JobKind, c *kdcv1alpha1.KdcCluster, p *Plan, attempt string, m member) *batchv1.Job {
	labels := jobLabels(c)
	ctr := corev1.Container{
		Name:         ContainerName,
		Image:        p.Image,
		Command:      []string{jobspec.Binary},
		Env:          jobspec.S3CredentialEnv(p.CredentialSecret),
		VolumeMounts: []corev1.VolumeMount{{Name: restoreTmpVolume, MountPath: "/tmp"}},
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("100m"),
			corev1.ResourceMemory: resource.MustParse("128Mi"),
		}},
		TerminationMessagePolicy: corev1.TerminationMessageReadFile,
		SecurityContext:          jobspec.ContainerSecurityContext(),
	}
	volumes := []corev1.Volume{{Name: restoreTmpVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	ns, name := c.DataStoreNamespace(), kdcv1alpha1.RestoreJobName(c.Name)
	backoff := int32(0)
	ttl := ptr.To(restoreJobTTLSeconds)
	switch kind {
	case JobVerify:
		ns, name, backoff = c.Namespace, kdcv1alpha1.VerifyJobName(c.Name), restoreVerifyBackoffLimit
		ctr.Args = jobArgs(kind, c, p, attempt, m)
		// Streams the object through its hashes: bounded buffers, no disk.
		ctr.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}
	case JobRestore:
		ctr.Args = jobArgs(kind, c, p, attempt, m)
		ttl = nil
	case JobRollback:
		name = kdcv1alpha1.RollbackJobName(c.Name)
		ctr.Args = jobArgs(kind, c, p, attempt, m)
		ctr.Env = nil
	case JobSwap:
		// A swap that a crash interrupted is finished by its next run (docs/jobs.md, "swap").
		name, backoff = c.Name+"-etcd-swap", restoreVerifyBackoffLimit
		ctr.Args = jobArgs(kind, c, p, attempt, m)
		ctr.Env = nil
	}
	pvc := kdcv1alpha1.EtcdDataPVCName(c.DataStore())
	if m.multi() {
		if m.restage {
			name = c.Name + "-etcd-restage"
		}
		name = fmt.Sprintf("%s-%d", name, m.index)
		pvc = kdcv1alpha1.MemberDataPVCName(c.DataStore(), m.index)
		labels[labelMember] = strconv.Itoa(m.index)
	}
	switch {
	case kind == JobVerify:
	case p.Mode == ModePrefix:
		// Through the etcd API: the client certificate and room for the downloaded snapshot.
		ns = p.JobNamespace
		ctr.Env = jobspec.S3CredentialEnv(p.CredentialSecret)
		ctr.VolumeMounts = append(ctr.VolumeMounts,
			corev1.VolumeMount{Name: prefixCertsVolume, MountPath: kdcv1alpha1.EtcdCertsMountPath, ReadOnly: true},
			corev1.VolumeMount{Name: prefixWorkVolume, MountPath: jobspec.PrefixWorkDir})
		volumes = append(volumes,
			p.EtcdCerts.Volume(prefixCertsVolume),
			corev1.Volume{Name: prefixWorkVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	default:
		ctr.VolumeMounts = append(ctr.VolumeMounts, corev1.VolumeMount{Name: restoreDataVolume, MountPath: kdcv1alpha1.EtcdDataMountPath})
		volumes = append(volumes, corev1.Volume{Name: restoreDataVolume, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: pvc},
		}})
	}
	job := &batchv1.Job{
		TypeMeta: metav1.TypeMeta{APIVersion: batchv1.SchemeGroupVersion.String(), Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   ns,
			Labels:      labels,
			Annotations: map[string]string{kdcv1alpha1.AnnotationRestoreAttempt: attempt},
		},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr.To(backoff),
			TTLSecondsAfterFinished: ttl,
			PodFailurePolicy: &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
				Action: batchv1.PodFailurePolicyActionFailJob,
				OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{
					ContainerName: ptr.To(ContainerName),
					Operator:      batchv1.PodFailurePolicyOnExitCodesOpIn,
					Values:        jobspec.NonRetriable(kind.command(p.Mode)),
				},
			}}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					RestartPolicy:                 corev1.RestartPolicyNever,
					AutomountServiceAccountToken:  ptr.To(false),
					EnableServiceLinks:            ptr.To(false),
					TerminationGracePeriodSeconds: ptr.To[int64](30),
					SecurityContext:               jobspec.PodSecurityContext(p.RunAs.UID, p.RunAs.GID, p.RunAs.FSGroup),
					Containers:                    []corev1.Container{ctr},
					Volumes:                       volumes,
				},
			},
		},
	}
	if ns == c.Namespace {
		job.OwnerReferences = []metav1.OwnerReference{jobspec.ClusterOwnerRef(c)}
	}
	return job
}

// freshBackupJobName is the name of the backup Job started after a successful restore:
// C-etcd-backup-r<hash of the attempt>, shortened to fit a Job name (which becomes a label).
func freshBackupJobName(c *kdcv1alpha1.KdcCluster, attempt string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(attempt))
	suffix := fmt.Sprintf("-r%08x", h.Sum32())
	base := kdcv1alpha1.BackupCronJobName(c.Name)
	if max := validation.DNS1123LabelMaxLength - len(suffix); len(base) > max {
		base = strings.TrimRight(base[:max], "-.")
	}
	return base + suffix
}

// BuildFreshBackupJob is the fresh backup after a restore: a Job from the CronJob
// C-etcd-backup (JobFromCronJob) carrying the restore's attempt. It is pure.
func BuildFreshBackupJob(c *kdcv1alpha1.KdcCluster, cj *batchv1.CronJob, attempt string) *batchv1.Job {
	return jobspec.JobFromCronJob(cj, freshBackupJobName(c, attempt), map[string]string{kdcv1alpha1.AnnotationRestoreAttempt: attempt})
}

// jobFailureDetail explains a failed Job from its pods' termination messages (newest
// first), falling back to the Job's Failed condition.
func jobFailureDetail(job *batchv1.Job, pods []corev1.Pod) string {
	sort.SliceStable(pods, func(i, j int) bool {
		return pods[j].CreationTimestamp.Before(&pods[i].CreationTimestamp)
	})
	for _, p := range pods {
		for _, cs := range p.Status.ContainerStatuses {
			t := cs.State.Terminated
			if cs.Name != ContainerName || t == nil || t.ExitCode == 0 {
				continue
			}
			if res, err := jobspec.ParseResult(t.Message); err == nil && res.Error != "" {
				return fmt.Sprintf("Job %s/%s: %s (%s, exit code %d)", job.Namespace, job.Name, res.Error, res.Reason, t.ExitCode)
			}
			return fmt.Sprintf("Job %s/%s: container exited with code %d: %s", job.Namespace, job.Name, t.ExitCode, strings.TrimSpace(t.Message))
		}
	}
	if cond := jobCondition(job, batchv1.JobFailed); cond != nil {
		return fmt.Sprintf("Job %s/%s failed: %s: %s", job.Namespace, job.Name, cond.Reason, cond.Message)
	}
	return fmt.Sprintf("Job %s/%s failed", job.Namespace, job.Name)
}

// jobRevision reads how the restore Job moved etcd's revision from the termination
// message of its succeeded pod.
func jobRevision(pods []corev1.Pod) (kdcv1alpha1.RestoreRevision, bool) {
	for _, p := range pods {
		for _, cs := range p.Status.ContainerStatuses {
			t := cs.State.Terminated
			if cs.Name != ContainerName || t == nil || t.ExitCode != 0 {
				continue
			}
			if res, err := jobspec.ParseResult(t.Message); err == nil && res.RestoredRevision > 0 {
				return res.RestoreRevision(), true
			}
		}
	}
	return kdcv1alpha1.RestoreRevision{}, false
}

// jobCondition returns the Job's condition of type t when it is True.
func jobCondition(job *batchv1.Job, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range job.Status.Conditions {
		if c := &job.Status.Conditions[i]; c.Type == t && c.Status == corev1.ConditionTrue {
			return c
		}
	}
	return nil
}

// prefixAttempt is the attempt (restore-started-at, RFC 3339) in the form prefix-restore takes
// for the name of its pre-restore copy (letters, digits, '.', '_' and '-').
func prefixAttempt(attempt string) string {
	if t, err := time.Parse(time.RFC3339Nano, attempt); err == nil {
		return t.UTC().Format("20060102T150405.999999999Z")
	}
	return strings.NewReplacer(":", "", "+", "-").Replace(attempt)
}
