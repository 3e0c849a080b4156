package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// This file exposes the restore controller's rules, inputs and Job builders to the manual restore
// of the kubectl plugin (`kubectl kdc restore --manual`, plugin/manual.go), which runs the same
// steps from the operator's machine while the manager is down. Everything here is a thin wrapper
// around what the state machine itself uses, so the two cannot drift apart.

// RestoreRuleError is a restore rule the request breaks, or an input of the Jobs that cannot be
// resolved: Reason is the docs/restore.md reason (InvalidKey, ForeignKey, DataStoreUnknown,
// MultiReplicaUnsupported, ObjectsMissing, S3NotAvailable, EtcdMemberUnknown), Detail explains it.
type RestoreRuleError struct {
	Reason string
	Detail string
}

func (e *RestoreRuleError) Error() string {
	return e.Reason + ": " + strings.TrimPrefix(e.Detail, e.Reason+": ")
}

// RestoreReasonOf returns the Reason of a *RestoreRuleError in err's chain, or "".
func RestoreReasonOf(err error) string {
	var re *RestoreRuleError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ""
}

// toRuleError turns a *restoreInputsError into a *RestoreRuleError; other errors stay.
func toRuleError(err error) error {
	var ie *restoreInputsError
	if errors.As(err, &ie) {
		return &RestoreRuleError{Reason: ie.reason, Detail: ie.Error()}
	}
	return err
}

// CheckRestoreKey applies the webhook's and the controller's key rules: the key is exactly
// C/C-<ts>.db (InvalidKey) of this cluster (ForeignKey). It returns a *RestoreRuleError or nil.
func CheckRestoreKey(c *kdcv1alpha1.KdcCluster, key string) error {
	if reason, detail := restoreKeyRule(c, key); reason != "" {
		return &RestoreRuleError{Reason: reason, Detail: detail}
	}
	return nil
}

// CheckRestoreDataStore reads the cluster's datastore and applies the datastore rules: it exists
// (DataStoreUnknown) and runs exactly one etcd replica (MultiReplicaUnsupported). It returns the
// datastore, and a *RestoreRuleError for a broken rule.
func CheckRestoreDataStore(ctx context.Context, cl client.Client, c *kdcv1alpha1.KdcCluster) (*kdcv1alpha1.KdcClusterDatastore, error) {
	ds, err := (&RestoreReconciler{Client: cl}).dataStore(ctx, c)
	if err != nil {
		return nil, err
	}
	if reason, detail := restoreDataStoreRule(c, ds); reason != "" {
		return ds, &RestoreRuleError{Reason: reason, Detail: detail}
	}
	return ds, nil
}

// RestoreWorkloads gets C-cp and DS-etcd; a missing one is a *RestoreRuleError (ObjectsMissing).
func RestoreWorkloads(ctx context.Context, cl client.Client, c *kdcv1alpha1.KdcCluster) (*appsv1.Deployment, *appsv1.StatefulSet, error) {
	d, sts, err := (&RestoreReconciler{Client: cl}).workloads(ctx, c)
	return d, sts, toRuleError(err)
}

// RestoreJobInputs is everything the verify, restore and rollback Jobs of one restore depend on,
// resolved exactly as the controller's Validating step resolves them.
type RestoreJobInputs struct{ in restoreJobInputs }

// Image is the image the Jobs run.
func (i RestoreJobInputs) Image() string { return i.in.Image }

// Attempt is the restore-attempt value stamped on the Jobs.
func (i RestoreJobInputs) Attempt() string { return i.in.Attempt }

// Destination is s3://bucket[/prefix] of the snapshot's bucket.
func (i RestoreJobInputs) Destination() string { return i.in.Location.DestinationPath() }

// Endpoint is the S3 endpoint the Jobs use.
func (i RestoreJobInputs) Endpoint() string { return i.in.Location.Endpoint }

// EtcdMember is the etcd member name and data directory (in the Jobs' mount) the restore writes.
func (i RestoreJobInputs) EtcdMember() (name, dataDir string) {
	return i.in.Member.Name, i.in.Member.DataDir
}

// ResolveRestoreJobInputs resolves the Jobs' inputs for restoring key into cluster c with attempt
// (the Jobs' restore-attempt value): the S3 location and credentials like the backup CronJob's
// (o.S3Endpoint is the default endpoint, the manager's S3_ENDPOINT), the etcd member and user from
// DS-etcd sts, the datastore's etcd version, and o.Image. reader should read uncached. A failure
// is a *RestoreRuleError (S3NotAvailable, EtcdMemberUnknown) or a read error.
func ResolveRestoreJobInputs(ctx context.Context, reader client.Reader, c *kdcv1alpha1.KdcCluster, key, attempt string, o Options, sts *appsv1.StatefulSet) (RestoreJobInputs, error) {
	in, err := resolveRestoreJobInputs(ctx, reader, c, key, attempt, o, sts)
	if err != nil {
		return RestoreJobInputs{}, toRuleError(err)
	}
	return RestoreJobInputs{in: in}, nil
}

// BuildVerifyJob is the controller's verify Job C-etcd-verify (in the cluster's namespace): the
// proof that the snapshot exists and is intact, before anything disruptive.
func BuildVerifyJob(c *kdcv1alpha1.KdcCluster, in RestoreJobInputs) *batchv1.Job {
	return buildRestoreJob(restoreJobVerify, c, in.in)
}

// BuildRestoreJob is the controller's restore Job C-etcd-restore (in the datastore's namespace):
// it restores the snapshot into the etcd data PVC and swaps it in, keeping the previous data.
func BuildRestoreJob(c *kdcv1alpha1.KdcCluster, in RestoreJobInputs) *batchv1.Job {
	return buildRestoreJob(restoreJobRestore, c, in.in)
}

// BuildRollbackJob is the controller's rollback Job C-etcd-rollback: it swaps the previous data
// back after etcd failed to start on the restored data.
func BuildRollbackJob(c *kdcv1alpha1.KdcCluster, in RestoreJobInputs) *batchv1.Job {
	return buildRestoreJob(restoreJobRollback, c, in.in)
}

// BuildFreshBackupJob is the backup Job the controller starts from the CronJob C-etcd-backup
// after a successful restore (named after attempt, owned by the CronJob).
func BuildFreshBackupJob(c *kdcv1alpha1.KdcCluster, cj *batchv1.CronJob, attempt string) *batchv1.Job {
	return buildRestoreFreshBackupJob(c, cj, attempt)
}

// JobOutcome is where a verify, restore or rollback Job stands.
type JobOutcome int

const (
	// JobPending: still running (or not decided yet); wait for the next event.
	JobPending JobOutcome = iota
	// JobSucceeded: the Job completed.
	JobSucceeded
	// JobFailed: the Job failed for good.
	JobFailed
)

func (o JobOutcome) String() string {
	switch o {
	case JobSucceeded:
		return "Succeeded"
	case JobFailed:
		return "Failed"
	}
	return "Pending"
}

// RestoreJobOutcome decides a Job like the controller: its Complete/Failed condition when
// kube-controller-manager has set it, else what its terminal pods already decided (pods are the
// Job's pods with their full status; others are ignored).
func RestoreJobOutcome(job *batchv1.Job, pods []corev1.Pod) JobOutcome {
	state, decided := restoreJobConditionState(job)
	if !decided {
		state = restoreJobPodOutcome(job, pods)
	}
	switch state {
	case restoreJobSucceeded:
		return JobSucceeded
	case restoreJobFailedState:
		return JobFailed
	}
	return JobPending
}

// RestoreJobFailureDetail explains a failed Job from its pods' termination messages (only the
// pods it controls count), falling back to its Failed condition.
func RestoreJobFailureDetail(job *batchv1.Job, pods []corev1.Pod) string {
	var mine []corev1.Pod
	for _, p := range pods {
		if metav1.IsControlledBy(&p, job) {
			mine = append(mine, p)
		}
	}
	return restoreJobFailureDetail(job, mine)
}

// RestoreJobRevision reads how a succeeded restore Job moved etcd's revision from its pods'
// termination messages (only the pods it controls count).
func RestoreJobRevision(job *batchv1.Job, pods []corev1.Pod) (kdcv1alpha1.RestoreRevision, bool) {
	var mine []corev1.Pod
	for _, p := range pods {
		if metav1.IsControlledBy(&p, job) {
			mine = append(mine, p)
		}
	}
	return restoreJobRevision(mine)
}

// Replicas is a replica count, a nil one defaulting to 1 like the API server.
func Replicas(p *int32) int32 { return restoreReplicas(p) }

// DeploymentReady reports whether C-cp observed its spec and completed its rollout at want
// replicas, the controller's StartingControlPlane condition.
func DeploymentReady(d *appsv1.Deployment, want int32) bool { return restoreDeploymentReady(d, want) }

// StatefulSetReady reports whether DS-etcd observed its spec and runs want ready replicas, the
// controller's StartingEtcd condition.
func StatefulSetReady(sts *appsv1.StatefulSet, want int32) bool {
	return restoreStatefulSetReady(sts, want)
}

// RestoreOutcome is what a failed restore did to the cluster, for RestoreFailureMessage.
type RestoreOutcome struct {
	// Disrupted: the control plane's replica count was recorded and its drain may have begun.
	Disrupted bool
	// Swapped: the restore Job swapped the snapshot into the data directory.
	Swapped bool
	// RolledBack: the rollback Job swapped the previous data back.
	RolledBack bool
	// RollbackFailure says why the rollback failed, when it was needed and did not succeed.
	RollbackFailure string
	// NotReady lists what was still not ready when bringing the cluster back gave up.
	NotReady []string
}

// RestoreFailureMessage is the RestoreReady message of a failed restore (docs/restore.md):
// `Restore from "<key>" failed (<Reason>): <detail>; <what happened to the data>`.
func RestoreFailureMessage(key, reason, detail string, o RestoreOutcome) string {
	rolledBack := restoreRollbackFailedPrefix + o.RollbackFailure
	if o.RolledBack {
		rolledBack = restoreTrue
	}
	outcome := restoreOutcomeOf(o.Disrupted, o.Swapped, rolledBack, reason)
	if len(o.NotReady) > 0 {
		outcome += fmt.Sprintf(" (%s)", strings.Join(o.NotReady, "; "))
	}
	return restoreFailureMessage(key, reason, detail, outcome)
}

// RestoreSucceededMessage is the RestoreReady message of a successful restore.
func RestoreSucceededMessage(key string) string { return fmt.Sprintf("Restore from %q complete", key) }

// SetRestoreReady sets the RestoreReady condition on c's status (in memory), like the controller.
func SetRestoreReady(c *kdcv1alpha1.KdcCluster, status metav1.ConditionStatus, reason, message string) {
	setCondition(c, kdcv1alpha1.ConditionRestoreReady, status, reason, message)
}
