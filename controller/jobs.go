package controller

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	obcv1alpha1 "kube-dc.com/etcd-backup/api/objectbucket/v1alpha1"
	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// What the backup CronJob and the restore's Jobs share: they run the manager's own image,
// non-root with a read-only root filesystem, and read S3 credentials from a Secret by reference.

// ownedLabels are the app.kubernetes.io labels of an object the controller makes for cluster c.
func ownedLabels(c *kdcv1alpha1.KdcCluster, component string) map[string]string {
	return map[string]string{
		kdcv1alpha1.LabelName:      kdcv1alpha1.ProductName,
		kdcv1alpha1.LabelComponent: component,
		kdcv1alpha1.LabelPartOf:    kdcv1alpha1.ProductName,
		kdcv1alpha1.LabelManagedBy: kdcv1alpha1.ProductName,
		kdcv1alpha1.LabelCluster:   c.Name,
	}
}

// clusterOwnerRef makes the KdcCluster the controller of an object in its namespace.
func clusterOwnerRef(c *kdcv1alpha1.KdcCluster) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion:         kdcv1alpha1.GroupVersion.String(),
		Kind:               "KdcCluster",
		Name:               c.Name,
		UID:                c.UID,
		Controller:         ptr.To(true),
		BlockOwnerDeletion: ptr.To(true),
	}
}

// s3CredentialEnv passes the S3 credentials of Secret secret to a Job by secretKeyRef: the
// values never appear in the Job spec.
func s3CredentialEnv(secret string) []corev1.EnvVar {
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

// jobPodSecurityContext runs a Job's pod as uid:gid (non-root) with fsGroup and the runtime's
// default seccomp profile.
func jobPodSecurityContext(uid, gid, fsGroup int64) *corev1.PodSecurityContext {
	return &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		RunAsUser:      ptr.To(uid),
		RunAsGroup:     ptr.To(gid),
		FSGroup:        ptr.To(fsGroup),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// jobContainerSecurityContext: no privilege escalation, read-only root filesystem, no capabilities.
func jobContainerSecurityContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		RunAsNonRoot:             ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}
