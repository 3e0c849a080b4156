package v1alpha1

import "fmt"

// Names of the objects the product reads and writes.
const (
	// ObjectBucketClaimName is the OBC (and its Secret and ConfigMap) in each project namespace.
	ObjectBucketClaimName = "managed-k8s-backups"
	// EtcdDataDir is the etcd data directory inside the etcd data PVC mount.
	EtcdDataDir = "/var/run/etcd/default.etcd"
	// EtcdDataMountPath is where the etcd data PVC is mounted.
	EtcdDataMountPath = "/var/run/etcd"
	// EtcdCertsMountPath is where the Jobs mount the DS-etcd-certs Secret.
	EtcdCertsMountPath = "/etc/etcd/pki"
)

// Labels the controller sets on objects it owns.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelComponent = "app.kubernetes.io/component"
	LabelPartOf    = "app.kubernetes.io/part-of"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// LabelCluster names the KdcCluster a Job or CronJob belongs to.
	LabelCluster = "k8s.kube-dc.com/cluster"
	// LabelClusterNamespace is the namespace of that KdcCluster, on restore and rollback Jobs,
	// which run in the datastore's namespace (where the etcd data PVC is).
	LabelClusterNamespace = "k8s.kube-dc.com/cluster-namespace"

	// ProductName is the value of app.kubernetes.io/part-of and managed-by.
	ProductName = "kdc-etcd-backup"
	// ComponentBackup and ComponentRestore are app.kubernetes.io/component values.
	ComponentBackup  = "etcd-backup"
	ComponentRestore = "etcd-restore"
)

// BackupCronJobName is C-etcd-backup.
func BackupCronJobName(cluster string) string { return cluster + "-etcd-backup" }

// RestoreJobName is C-etcd-restore.
func RestoreJobName(cluster string) string { return cluster + "-etcd-restore" }

// VerifyJobName is C-etcd-verify: the restore's pre-flight check of the snapshot.
func VerifyJobName(cluster string) string { return cluster + "-etcd-verify" }

// RollbackJobName is C-etcd-rollback.
func RollbackJobName(cluster string) string { return cluster + "-etcd-rollback" }

// ControlPlaneDeploymentName is C-cp.
func ControlPlaneDeploymentName(cluster string) string { return cluster + "-cp" }

// EtcdStatefulSetName is DS-etcd.
func EtcdStatefulSetName(ds string) string { return ds + "-etcd" }

// EtcdPodName is DS-etcd-0.
func EtcdPodName(ds string) string { return ds + "-etcd-0" }

// EtcdDataPVCName is etcd-data-DS-etcd-0.
func EtcdDataPVCName(ds string) string { return MemberDataPVCName(ds, 0) }

// MemberPodName is DS-etcd-<i>, the pod of etcd member i.
func MemberPodName(ds string, i int) string { return fmt.Sprintf("%s-etcd-%d", ds, i) }

// MemberDataPVCName is etcd-data-DS-etcd-<i>, the data volume of etcd member i.
func MemberDataPVCName(ds string, i int) string { return fmt.Sprintf("etcd-data-%s-etcd-%d", ds, i) }

// EtcdCertsSecretName is DS-etcd-certs.
func EtcdCertsSecretName(ds string) string { return ds + "-etcd-certs" }

// DefaultBucketName is NS-managed-k8s-backups.
func DefaultBucketName(namespace string) string { return namespace + "-" + ObjectBucketClaimName }
