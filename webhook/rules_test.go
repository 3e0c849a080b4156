package webhook

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// cause is the part of a rule error the tables compare: type, field and reason.
type cause struct {
	Type   field.ErrorType
	Field  string
	Reason string
}

func causesOf(errs field.ErrorList) []cause {
	var out []cause
	for _, e := range errs {
		out = append(out, cause{Type: e.Type, Field: e.Field, Reason: ReasonOf(e)})
	}
	return out
}

const fromField = "metadata.annotations[kube-dc.com/restore-from]"

var fromPath = AnnotationsPath.Key(kdcv1alpha1.AnnotationRestoreFrom)

func TestValidateRestoreKey(t *testing.T) {
	tests := []struct {
		name, key string
		want      field.ErrorList
	}{
		{name: "valid", key: "c1/c1-20260101T020000Z.db"},
		{name: "traversal", key: "../etc/passwd", want: field.ErrorList{field.Invalid(fromPath, "../etc/passwd",
			`InvalidKey: key contains an empty, "." or ".." path element; use a key under "c1/", for example c1/c1-20260101T020000Z.db`)}},
		{name: "empty", key: "", want: field.ErrorList{field.Invalid(fromPath, "",
			`InvalidKey: key is empty; use a key under "c1/", for example c1/c1-20260101T020000Z.db`)}},
		{name: "foreign", key: "c2/c2-20260101T020000Z.db", want: field.ErrorList{field.Invalid(fromPath, "c2/c2-20260101T020000Z.db",
			`ForeignKey: key belongs to another cluster "c2", not to "c1"; use a key under "c1/", for example c1/c1-20260101T020000Z.db`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, ValidateRestoreKey(fromPath, tt.key, "c1")); diff != "" {
				t.Errorf("ValidateRestoreKey(%q) mismatch (-want +got):\n%s", tt.key, diff)
			}
		})
	}
}

func dataStore(replicas int32) *kdcv1alpha1.KdcClusterDatastore {
	return &kdcv1alpha1.KdcClusterDatastore{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ds"},
		Spec:       kdcv1alpha1.KdcClusterDatastoreSpec{Etcd: kdcv1alpha1.EtcdSpec{Replicas: replicas}},
	}
}

func TestValidateDataStoreForRestore(t *testing.T) {
	tests := []struct {
		name string
		ds   *kdcv1alpha1.KdcClusterDatastore
		want field.ErrorList
	}{
		{name: "single replica", ds: dataStore(1)},
		{name: "unknown", want: field.ErrorList{field.Forbidden(fromPath,
			"DataStoreUnknown: the cluster's KdcClusterDatastore cannot be found; wait until status.dataStoreName is set, or fix spec.dataStore, then annotate again")}},
		{name: "three replicas", ds: dataStore(3)},
		{name: "four replicas", ds: dataStore(4), want: field.ErrorList{field.Forbidden(fromPath,
			"MultiReplicaUnsupported: KdcClusterDatastore ns/ds runs 4 etcd replicas (spec.etcd.replicas); restores support 1, 3, 5, 7 or 9 members. Do not scale a running multi-member etcd down (it loses quorum unless the other members are removed first); restore by hand as docs/restore.md \"Multi-member datastores\" describes")}},
		{name: "zero replicas", ds: dataStore(0), want: field.ErrorList{field.Forbidden(fromPath,
			"MultiReplicaUnsupported: KdcClusterDatastore ns/ds runs 0 etcd replicas (spec.etcd.replicas); restores support 1, 3, 5, 7 or 9 members. Do not scale a running multi-member etcd down (it loses quorum unless the other members are removed first); restore by hand as docs/restore.md \"Multi-member datastores\" describes")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, ValidateDataStoreForRestore(fromPath, tt.ds)); diff != "" {
				t.Errorf("ValidateDataStoreForRestore() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateDataStoreFound(t *testing.T) {
	tests := []struct {
		name, ns, ds string
		want         []cause
	}{
		{name: "no name", ns: "ns", want: []cause{{field.ErrorTypeForbidden, fromField, kdcv1alpha1.ReasonDataStoreUnknown}}},
		{name: "named", ns: "ns", ds: "ds", want: []cause{{field.ErrorTypeForbidden, fromField, kdcv1alpha1.ReasonDataStoreUnknown}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, causesOf(ValidateDataStoreFound(fromPath, tt.ns, tt.ds))); diff != "" {
				t.Errorf("ValidateDataStoreFound() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// restoring are the annotations of a cluster whose restore runs.
func restoring(phase kdcv1alpha1.RestorePhase) map[string]string {
	return map[string]string{
		kdcv1alpha1.AnnotationRestoreFrom:        "c1/c1-20260101T020000Z.db",
		kdcv1alpha1.AnnotationRestoreState:       string(phase),
		kdcv1alpha1.AnnotationRestoreRequestedBy: "alice",
		kdcv1alpha1.AnnotationRestoreRequestedAt: "2025-12-31T03:00:00Z",
	}
}

func TestValidateNoRestoreInProgress(t *testing.T) {
	inProgress := []cause{{field.ErrorTypeForbidden, fromField, kdcv1alpha1.ReasonRestoreInProgress}}
	tests := []struct {
		name string
		old  map[string]string
		want []cause
	}{
		{name: "no annotations"},
		{name: "succeeded", old: restoring(kdcv1alpha1.PhaseSucceeded)},
		{name: "failed", old: restoring(kdcv1alpha1.PhaseFailed)},
		{name: "unknown phase", old: restoring("Bogus")},
		{name: "validating", old: restoring(kdcv1alpha1.PhaseValidating), want: inProgress},
		{name: "draining", old: restoring(kdcv1alpha1.PhaseDrainingControlPlane), want: inProgress},
		{name: "starting control plane", old: restoring(kdcv1alpha1.PhaseStartingControlPlane), want: inProgress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, causesOf(ValidateNoRestoreInProgress(fromPath, tt.old))); diff != "" {
				t.Errorf("ValidateNoRestoreInProgress() mismatch (-want +got):\n%s", diff)
			}
		})
	}
	got := ValidateNoRestoreInProgress(fromPath, restoring(kdcv1alpha1.PhaseStoppingEtcd))
	want := field.ErrorList{field.Forbidden(fromPath, `RestoreInProgress: a restore from "c1/c1-20260101T020000Z.db" is StoppingEtcd (requested by alice at 2025-12-31T03:00:00Z); wait until it ends (kubectl get kdccluster shows it in the RESTORE column), then annotate again`)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ValidateNoRestoreInProgress() text mismatch (-want +got):\n%s", diff)
	}
}

func without(m map[string]string, key string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if k != key {
			out[k] = v
		}
	}
	return out
}

func with(m map[string]string, key, value string) map[string]string {
	out := without(m, key)
	out[key] = value
	return out
}

func TestValidateRestoreFromKept(t *testing.T) {
	inProgress := []cause{{field.ErrorTypeForbidden, fromField, kdcv1alpha1.ReasonRestoreInProgress}}
	running := restoring(kdcv1alpha1.PhaseRestoringSnapshot)
	tests := []struct {
		name     string
		old, new map[string]string
		want     []cause
	}{
		{name: "kept", old: running, new: running},
		{name: "removed while running", old: running, new: without(running, kdcv1alpha1.AnnotationRestoreFrom), want: inProgress},
		{name: "emptied while running", old: running, new: with(running, kdcv1alpha1.AnnotationRestoreFrom, ""), want: inProgress},
		{name: "changed while running", old: running, new: with(running, kdcv1alpha1.AnnotationRestoreFrom, "c1/c1-20260102T020000Z.db"), want: inProgress},
		{name: "removed after failure", old: restoring(kdcv1alpha1.PhaseFailed), new: without(restoring(kdcv1alpha1.PhaseFailed), kdcv1alpha1.AnnotationRestoreFrom)},
		{name: "no restore"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, causesOf(ValidateRestoreFromKept(fromPath, tt.old, tt.new))); diff != "" {
				t.Errorf("ValidateRestoreFromKept() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateDeletion(t *testing.T) {
	statePath := AnnotationsPath.Key(kdcv1alpha1.AnnotationRestoreState)
	tests := []struct {
		name string
		ann  map[string]string
		want []cause
	}{
		{name: "no restore"},
		{name: "succeeded", ann: restoring(kdcv1alpha1.PhaseSucceeded)},
		{name: "running", ann: restoring(kdcv1alpha1.PhaseStartingEtcd), want: []cause{{field.ErrorTypeForbidden, statePath.String(), kdcv1alpha1.ReasonRestoreInProgress}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, causesOf(ValidateDeletion(statePath, tt.ann))); diff != "" {
				t.Errorf("ValidateDeletion() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateBookkeepingAnnotations(t *testing.T) {
	now := time.Date(2026, 1, 1, 3, 0, 0, 0, time.UTC)
	request := map[string]string{kdcv1alpha1.AnnotationRestoreFrom: "c1/c1-20260101T020000Z.db"}
	stamped := with(with(with(request,
		kdcv1alpha1.AnnotationRestoreState, "Validating"),
		kdcv1alpha1.AnnotationRestoreRequestedBy, "alice"),
		kdcv1alpha1.AnnotationRestoreRequestedAt, "2026-01-01T03:00:00Z")
	running := restoring(kdcv1alpha1.PhaseDrainingControlPlane)
	accepted := StampsAllowed{NewRequest: true, Requester: "alice", Now: now}
	plain := StampsAllowed{Requester: "alice", Now: now}
	protected := func(key string) cause {
		return cause{field.ErrorTypeForbidden, AnnotationsPath.Key(key).String(), kdcv1alpha1.ReasonProtectedAnnotation}
	}
	tests := []struct {
		name     string
		old, new map[string]string
		allowed  StampsAllowed
		want     []cause
	}{
		{name: "nothing", allowed: plain},
		{name: "other annotations", new: map[string]string{"example.com/x": "y"}, allowed: plain},
		{name: "unchanged bookkeeping", old: running, new: running, allowed: plain},
		{name: "stamps of an accepted request", new: stamped, allowed: accepted},
		{name: "stamps replacing a finished restore's", old: restoring(kdcv1alpha1.PhaseFailed), new: stamped, allowed: accepted},
		{name: "stamps without a request", new: stamped, allowed: plain, want: []cause{
			protected(kdcv1alpha1.AnnotationRestoreRequestedAt), protected(kdcv1alpha1.AnnotationRestoreRequestedBy), protected(kdcv1alpha1.AnnotationRestoreState)}},
		{name: "state other than Validating", new: with(stamped, kdcv1alpha1.AnnotationRestoreState, "RestoringSnapshot"), allowed: accepted, want: []cause{
			protected(kdcv1alpha1.AnnotationRestoreState)}},
		{name: "forged requester", new: with(stamped, kdcv1alpha1.AnnotationRestoreRequestedBy, "bob"), allowed: accepted, want: []cause{
			protected(kdcv1alpha1.AnnotationRestoreRequestedBy)}},
		{name: "stale request time", new: with(stamped, kdcv1alpha1.AnnotationRestoreRequestedAt, "2025-01-01T03:00:00Z"), allowed: accepted, want: []cause{
			protected(kdcv1alpha1.AnnotationRestoreRequestedAt)}},
		{name: "malformed request time", new: with(stamped, kdcv1alpha1.AnnotationRestoreRequestedAt, "now"), allowed: accepted, want: []cause{
			protected(kdcv1alpha1.AnnotationRestoreRequestedAt)}},
		{name: "other bookkeeping on a request", new: with(stamped, kdcv1alpha1.AnnotationRestoreSwapped, "true"), allowed: accepted, want: []cause{
			protected(kdcv1alpha1.AnnotationRestoreSwapped)}},
		{name: "advance the state", old: running, new: with(running, kdcv1alpha1.AnnotationRestoreState, "Succeeded"), allowed: plain, want: []cause{
			protected(kdcv1alpha1.AnnotationRestoreState)}},
		{name: "remove the state", old: running, new: without(running, kdcv1alpha1.AnnotationRestoreState), allowed: plain, want: []cause{
			protected(kdcv1alpha1.AnnotationRestoreState)}},
		{name: "set unknown restore annotation", new: map[string]string{"kube-dc.com/restore-anything": "x"}, allowed: plain, want: []cause{
			protected("kube-dc.com/restore-anything")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ValidateBookkeepingAnnotations(AnnotationsPath, tt.old, tt.new, tt.allowed, "system:serviceaccount:kdc:manager")
			if diff := cmp.Diff(tt.want, causesOf(got)); diff != "" {
				t.Errorf("ValidateBookkeepingAnnotations() mismatch (-want +got):\n%s", diff)
			}
		})
	}
	got := ValidateBookkeepingAnnotations(AnnotationsPath, running, without(running, kdcv1alpha1.AnnotationRestoreState), plain, "system:serviceaccount:kdc:manager")
	want := field.ErrorList{field.Forbidden(AnnotationsPath.Key(kdcv1alpha1.AnnotationRestoreState),
		"ProtectedAnnotation: kube-dc.com/restore-state is restore bookkeeping and cannot be removed by alice; only the controller (system:serviceaccount:kdc:manager) writes it. To start a restore set only kube-dc.com/restore-from")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ValidateBookkeepingAnnotations() text mismatch (-want +got):\n%s", diff)
	}
}

func TestValidateBackupSpec(t *testing.T) {
	invalid := func(f string) cause {
		return cause{field.ErrorTypeInvalid, "spec.backup." + f, kdcv1alpha1.ReasonInvalidBackupSpec}
	}
	tests := []struct {
		name string
		spec kdcv1alpha1.BackupSpec
		want []cause
	}{
		{name: "empty"},
		{name: "default schedule", spec: kdcv1alpha1.BackupSpec{Schedule: "0 2 * * *"}},
		{name: "ranges and steps", spec: kdcv1alpha1.BackupSpec{Schedule: "*/15 1-5 1,15 */2 MON-FRI"}},
		{name: "six fields", spec: kdcv1alpha1.BackupSpec{Schedule: "0 0 2 * * *"}, want: []cause{invalid("schedule")}},
		{name: "four fields", spec: kdcv1alpha1.BackupSpec{Schedule: "0 2 * *"}, want: []cause{invalid("schedule")}},
		{name: "minute 60", spec: kdcv1alpha1.BackupSpec{Schedule: "60 2 * * *"}, want: []cause{invalid("schedule")}},
		{name: "descriptor", spec: kdcv1alpha1.BackupSpec{Schedule: "@daily"}, want: []cause{invalid("schedule")}},
		{name: "time zone", spec: kdcv1alpha1.BackupSpec{Schedule: "TZ=Europe/Berlin 0 2 * * *"}, want: []cause{invalid("schedule")}},
		{name: "cron time zone", spec: kdcv1alpha1.BackupSpec{Schedule: "CRON_TZ=UTC 0 2 * * *"}, want: []cause{invalid("schedule")}},
		{name: "garbage", spec: kdcv1alpha1.BackupSpec{Schedule: "every night"}, want: []cause{invalid("schedule")}},
		{name: "https endpoint", spec: kdcv1alpha1.BackupSpec{S3Endpoint: "https://s3.example.com"}},
		{name: "http endpoint with port", spec: kdcv1alpha1.BackupSpec{S3Endpoint: "http://minio.storage.svc:9000"}},
		{name: "ipv6 endpoint", spec: kdcv1alpha1.BackupSpec{S3Endpoint: "http://[::1]:9000"}},
		{name: "endpoint without scheme", spec: kdcv1alpha1.BackupSpec{S3Endpoint: "s3.example.com"}, want: []cause{invalid("s3Endpoint")}},
		{name: "ftp endpoint", spec: kdcv1alpha1.BackupSpec{S3Endpoint: "ftp://s3.example.com"}, want: []cause{invalid("s3Endpoint")}},
		{name: "endpoint without host", spec: kdcv1alpha1.BackupSpec{S3Endpoint: "https://"}, want: []cause{invalid("s3Endpoint")}},
		{name: "endpoint with credentials", spec: kdcv1alpha1.BackupSpec{S3Endpoint: "https://key:secret@s3.example.com"}, want: []cause{invalid("s3Endpoint")}},
		{name: "endpoint with query", spec: kdcv1alpha1.BackupSpec{S3Endpoint: "https://s3.example.com?x=1"}, want: []cause{invalid("s3Endpoint")}},
		{name: "endpoint with bad port", spec: kdcv1alpha1.BackupSpec{S3Endpoint: "https://s3.example.com:99999"}, want: []cause{invalid("s3Endpoint")}},
		{name: "endpoint with spaces", spec: kdcv1alpha1.BackupSpec{S3Endpoint: "https://s3 example.com"}, want: []cause{invalid("s3Endpoint")}},
		{name: "bucket", spec: kdcv1alpha1.BackupSpec{DestinationPath: "s3://team-backups"}},
		{name: "bucket and prefix", spec: kdcv1alpha1.BackupSpec{DestinationPath: "s3://team.backups/etcd/prod_1"}},
		{name: "trailing slash", spec: kdcv1alpha1.BackupSpec{DestinationPath: "s3://team-backups/etcd/"}},
		{name: "no scheme", spec: kdcv1alpha1.BackupSpec{DestinationPath: "team-backups/etcd"}, want: []cause{invalid("destinationPath")}},
		{name: "short bucket", spec: kdcv1alpha1.BackupSpec{DestinationPath: "s3://ab"}, want: []cause{invalid("destinationPath")}},
		{name: "upper case bucket", spec: kdcv1alpha1.BackupSpec{DestinationPath: "s3://Team-Backups"}, want: []cause{invalid("destinationPath")}},
		{name: "bucket with dots in a row", spec: kdcv1alpha1.BackupSpec{DestinationPath: "s3://team..backups"}, want: []cause{invalid("destinationPath")}},
		{name: "ip bucket", spec: kdcv1alpha1.BackupSpec{DestinationPath: "s3://192.168.1.1"}, want: []cause{invalid("destinationPath")}},
		{name: "bucket ending in hyphen", spec: kdcv1alpha1.BackupSpec{DestinationPath: "s3://backups-"}, want: []cause{invalid("destinationPath")}},
		{name: "traversal prefix", spec: kdcv1alpha1.BackupSpec{DestinationPath: "s3://backups/a/../b"}, want: []cause{invalid("destinationPath")}},
		{name: "double slash prefix", spec: kdcv1alpha1.BackupSpec{DestinationPath: "s3://backups//b"}, want: []cause{invalid("destinationPath")}},
		{name: "prefix with space", spec: kdcv1alpha1.BackupSpec{DestinationPath: "s3://backups/a b"}, want: []cause{invalid("destinationPath")}},
		{name: "all bad", spec: kdcv1alpha1.BackupSpec{Schedule: "x", S3Endpoint: "x", DestinationPath: "x"}, want: []cause{
			invalid("schedule"), invalid("s3Endpoint"), invalid("destinationPath")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, causesOf(ValidateBackupSpec(field.NewPath("spec", "backup"), &tt.spec))); diff != "" {
				t.Errorf("ValidateBackupSpec(%+v) mismatch (-want +got):\n%s", tt.spec, diff)
			}
		})
	}
}

func TestValidateDataStoreReplicas(t *testing.T) {
	replicasPath := field.NewPath("spec", "etcd", "replicas")
	tests := []struct {
		name      string
		old, new  int32
		restoring []string
		want      field.ErrorList
	}{
		{name: "unchanged while restoring", old: 1, new: 1, restoring: []string{"ns/c1"}},
		{name: "changed without restore", old: 1, new: 3},
		{name: "changed while restoring", old: 1, new: 3, restoring: []string{"ns/c1", "ns/c2"}, want: field.ErrorList{field.Forbidden(replicasPath,
			"RestoreInProgress: cannot change etcd replicas from 1 to 3 while a restore of ns/c1, ns/c2 runs; wait until it ends, then change them")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, ValidateDataStoreReplicas(replicasPath, tt.old, tt.new, tt.restoring)); diff != "" {
				t.Errorf("ValidateDataStoreReplicas() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReasonOf(t *testing.T) {
	tests := []struct {
		name string
		err  *field.Error
		want string
	}{
		{name: "nil"},
		{name: "rule error", err: ValidateRestoreKey(fromPath, "x", "c1")[0], want: kdcv1alpha1.ReasonInvalidKey},
		{name: "foreign", err: ValidateRestoreKey(fromPath, "c2/c2-20260101T020000Z.db", "c1")[0], want: kdcv1alpha1.ReasonForeignKey},
		{name: "other error", err: field.Required(fromPath, "must be set")},
		{name: "unknown prefix", err: field.Forbidden(fromPath, "Something: else")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, ReasonOf(tt.err)); diff != "" {
				t.Errorf("ReasonOf() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
