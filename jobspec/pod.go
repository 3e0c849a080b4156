package jobspec

import (
	"maps"
	"slices"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	obcv1alpha1 "kube-dc.com/etcd-backup/api/objectbucket/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// What the backup CronJob and the restore's Jobs share: they run the manager's own image,
// non-root with a read-only root filesystem, and read S3 credentials from a Secret by reference.

// Binary is the entrypoint of the manager's image, which every Job runs.
const Binary = "/kdc-etcd-backup"

// OwnedLabels are the app.kubernetes.io labels of an object made for cluster c.
func OwnedLabels(c *kdcv1alpha1.KdcCluster, component string) map[string]string {
	return map[string]string{
		kdcv1alpha1.LabelName:      kdcv1alpha1.ProductName,
		kdcv1alpha1.LabelComponent: component,
		kdcv1alpha1.LabelPartOf:    kdcv1alpha1.ProductName,
		kdcv1alpha1.LabelManagedBy: kdcv1alpha1.ProductName,
		kdcv1alpha1.LabelCluster:   c.Name,
	}
}

// ClusterOwnerRef makes the KdcCluster the controller of an object in its namespace.
func ClusterOwnerRef(c *kdcv1alpha1.KdcCluster) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion:         kdcv1alpha1.GroupVersion.String(),
		Kind:               "KdcCluster",
		Name:               c.Name,
		UID:                c.UID,
		Controller:         ptr.To(true),
		BlockOwnerDeletion: ptr.To(true),
	}
}

// S3CredentialEnv passes the S3 credentials of Secret secret to a Job by secretKeyRef: the
// values never appear in the Job spec.
func S3CredentialEnv(secret string) []corev1.EnvVar {
	ref := func(name, key string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: secret},
			Key:                  key,
		}}}
	}
	return []corev1.EnvVar{
		ref("AWS_ACCESS_KEY_ID", obcv1alpha1.SecretKeyAccessKeyID),
		ref("AWS_SECRET_ACCESS_KEY", obcv1alpha1.SecretKeySecretAccessKey),
	}
}

// PodSecurityContext runs a Job's pod as uid:gid (non-root) with fsGroup and the runtime's
// default seccomp profile.
func PodSecurityContext(uid, gid, fsGroup int64) *corev1.PodSecurityContext {
	return &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		RunAsUser:      ptr.To(uid),
		RunAsGroup:     ptr.To(gid),
		FSGroup:        ptr.To(fsGroup),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// ContainerSecurityContext: no privilege escalation, read-only root filesystem, no capabilities.
func ContainerSecurityContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		RunAsNonRoot:             ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}

// JobFromCronJob is what `kubectl create job --from=cronjob/NAME` creates: the jobTemplate's
// spec, labels and annotations (plus extra annotations and cronjob.kubernetes.io/instantiate:
// manual), owned by the CronJob as its controller, so the backup controller finds and reports it
// like a scheduled run. The restore's fresh backup and `kubectl kdc backup` both use it.
func JobFromCronJob(cj *batchv1.CronJob, name string, extra map[string]string) *batchv1.Job {
	tmpl := cj.Spec.JobTemplate.DeepCopy()
	annotations := map[string]string{}
	maps.Copy(annotations, tmpl.Annotations)
	maps.Copy(annotations, extra)
	annotations["cronjob.kubernetes.io/instantiate"] = "manual"
	return &batchv1.Job{
		TypeMeta: metav1.TypeMeta{APIVersion: batchv1.SchemeGroupVersion.String(), Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   cj.Namespace,
			Labels:      tmpl.Labels,
			Annotations: annotations,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion:         batchv1.SchemeGroupVersion.String(),
				Kind:               "CronJob",
				Name:               cj.Name,
				UID:                cj.UID,
				Controller:         ptr.To(true),
				BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: tmpl.Spec,
	}
}

// ResultContainer picks, from a finished Job's pods, the container that tells the Job's
// result: the newest pod (by creation, then name) whose container named container terminated,
// skipping failed retries before the success of a succeeded Job. It returns nil when no such
// container terminated. The backup controller and `kubectl kdc backup` both read it.
func ResultContainer(pods []corev1.Pod, container string, succeeded bool) (*corev1.Pod, *corev1.ContainerStateTerminated) {
	pods = slices.Clone(pods)
	slices.SortFunc(pods, func(a, b corev1.Pod) int {
		if c := b.CreationTimestamp.Compare(a.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(b.Name, a.Name)
	})
	for i := range pods {
		for _, cs := range pods[i].Status.ContainerStatuses {
			t := cs.State.Terminated
			if cs.Name != container || t == nil || (succeeded && t.ExitCode != 0) {
				continue
			}
			return &pods[i], t
		}
	}
	return nil, nil
}
