package engine

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// Violation is a restore rule a request breaks, an input that cannot be resolved, or a failure:
// its docs/restore.md reason, the field it is about ("" when none) and what to do.
type Violation struct {
	Reason string
	Field  string
	Detail string
}

// String is the recorded form, "<Reason>: <detail>" (the restore-failure annotation).
func (v Violation) String() string { return v.Reason + ": " + v.Detail }

// Error makes a *Violation an error.
func (v *Violation) Error() string { return v.String() }

// ParseViolation reads the recorded form back.
func ParseViolation(s string) Violation {
	reason, detail, _ := strings.Cut(s, ": ")
	return Violation{Reason: reason, Detail: detail}
}

// AsViolation returns the *Violation in err's chain, or nil.
func AsViolation(err error) *Violation {
	var v *Violation
	if errors.As(err, &v) {
		return v
	}
	return nil
}

// RestoreFromField is the field the request's rules are about.
const RestoreFromField = "metadata.annotations[" + kdcv1alpha1.AnnotationRestoreFrom + "]"

// exampleSnapshotTime is the time of the example keys in rejection messages.
var exampleSnapshotTime = time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC)

// ExampleSnapshotKey is a well-formed key of cluster, for messages.
func ExampleSnapshotKey(cluster string) string {
	return kdcv1alpha1.SnapshotKey(cluster, exampleSnapshotTime)
}

// CheckKey is the key rule: key is exactly C/C-<ts>.db (InvalidKey) of cluster (ForeignKey).
func CheckKey(cluster, key string) *Violation {
	hint := fmt.Sprintf("use a key under %q, for example %s", cluster+"/", ExampleSnapshotKey(cluster))
	_, _, err := kdcv1alpha1.ParseSnapshotKey(key, cluster)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kdcv1alpha1.ErrForeignKey):
		return &Violation{kdcv1alpha1.ReasonForeignKey, RestoreFromField, fmt.Sprintf("%v; %s", err, hint)}
	default:
		return &Violation{kdcv1alpha1.ReasonInvalidKey, RestoreFromField, fmt.Sprintf("%v; %s", err, hint)}
	}
}

// supportedMembers are the member counts a whole-etcd restore supports (Kube-DC's choices).
var supportedMembers = []int32{1, 3, 5, 7, 9}

// CheckMembers is the rule of a whole-etcd restore on the live StatefulSet DS-etcd: its replicas
// equal spec.etcd.replicas (no scale in progress).
func CheckMembers(ds *kdcv1alpha1.KdcClusterDatastore, sts *appsv1.StatefulSet) *Violation {
	want, have := ds.Spec.Etcd.Replicas, replicas(sts.Spec.Replicas)
	if want != have {
		return &Violation{kdcv1alpha1.ReasonMultiReplicaUnsupported, RestoreFromField,
			fmt.Sprintf("KdcClusterDatastore %s/%s runs %d etcd replicas (spec.etcd.replicas) but StatefulSet %s/%s has %d: a scale is in progress; wait until they agree, then annotate again",
				ds.Namespace, ds.Name, want, sts.Namespace, sts.Name, have)}
	}
	return nil
}

// CheckDataStore is the datastore rule: the datastore exists (DataStoreUnknown; nil ds) and
// runs a member count the restore supports (MultiReplicaUnsupported).
func CheckDataStore(ds *kdcv1alpha1.KdcClusterDatastore) *Violation {
	if ds == nil {
		return &Violation{kdcv1alpha1.ReasonDataStoreUnknown, RestoreFromField,
			"the cluster's KdcClusterDatastore cannot be found; wait until status.dataStoreName is set, or fix spec.dataStore, then annotate again"}
	}
	if r := ds.Spec.Etcd.Replicas; !slices.Contains(supportedMembers, r) {
		return &Violation{kdcv1alpha1.ReasonMultiReplicaUnsupported, RestoreFromField,
			fmt.Sprintf("KdcClusterDatastore %s/%s runs %d etcd replicas (spec.etcd.replicas); restores support 1, 3, 5, 7 or 9 members. Do not scale a running multi-member etcd down (it loses quorum unless the other members are removed first); restore by hand as docs/restore.md \"Multi-member datastores\" describes",
				ds.Namespace, ds.Name, r)}
	}
	return nil
}

// DataStoreMissing is DataStoreUnknown for a cluster naming datastore namespace/name ("" when it
// names none) that does not exist.
func DataStoreMissing(namespace, name string) *Violation {
	if name == "" {
		return &Violation{kdcv1alpha1.ReasonDataStoreUnknown, RestoreFromField,
			"the cluster names no datastore yet (status.dataStoreName and spec.dataStore.name are empty); wait until the cluster is provisioned, then annotate again"}
	}
	return &Violation{kdcv1alpha1.ReasonDataStoreUnknown, RestoreFromField,
		fmt.Sprintf("KdcClusterDatastore %s/%s cannot be found; fix spec.dataStore or wait until the datastore exists, then annotate again", namespace, name)}
}
