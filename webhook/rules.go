package webhook

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"k8s.io/apimachinery/pkg/util/validation/field"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/engine"
)

// The rules of the admission webhooks. Each is a pure function returning field.ErrorList; the
// detail of every error starts with its reason ("InvalidKey: ...") so kubectl shows it and
// ReasonOf recovers it. The restore controller re-checks requests with the same functions.

// AnnotationsPath is the field path of the object's annotations.
var AnnotationsPath = field.NewPath("metadata", "annotations")

// scheduleParser accepts exactly the standard 5 cron fields (no descriptors like @daily, no
// seconds), the form the CRD documents.
var scheduleParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// reasons are the reasons ReasonOf recognises at the start of an error's detail.
var reasons = []string{
	kdcv1alpha1.ReasonInvalidKey,
	kdcv1alpha1.ReasonForeignKey,
	kdcv1alpha1.ReasonMultiReplicaUnsupported,
	kdcv1alpha1.ReasonDataStoreUnknown,
	kdcv1alpha1.ReasonRestoreInProgress,
	kdcv1alpha1.ReasonProtectedAnnotation,
	kdcv1alpha1.ReasonInvalidBackupSpec,
	kdcv1alpha1.ReasonDataStoreInUse,
	kdcv1alpha1.ReasonPrefixUnknown,
}

// detail is the detail of an error: its reason, a colon and the message.
func detail(reason, format string, args ...any) string {
	return reason + ": " + fmt.Sprintf(format, args...)
}

// ReasonOf returns the reason of an error returned by one of the rules of this package (the
// docs/webhook.md reason such as "InvalidKey"), or "" when err is nil or carries none.
func ReasonOf(err *field.Error) string {
	if err == nil {
		return ""
	}
	reason, _, ok := strings.Cut(err.Detail, ": ")
	if !ok || !slices.Contains(reasons, reason) {
		return ""
	}
	return reason
}

// ExampleSnapshotKey is a well-formed key of cluster, for messages.
func ExampleSnapshotKey(cluster string) string { return engine.ExampleSnapshotKey(cluster) }

// ValidateRestoreKey is the restore engine's key rule (engine.CheckKey) as a field error:
// InvalidKey or ForeignKey.
func ValidateRestoreKey(fldPath *field.Path, key, cluster string) field.ErrorList {
	if v := engine.CheckKey(cluster, key); v != nil {
		return field.ErrorList{field.Invalid(fldPath, key, v.String())}
	}
	return nil
}

// ValidateDataStoreForRestore is the restore engine's datastore rule (engine.CheckDataStore) as
// a field error: DataStoreUnknown for a nil ds, MultiReplicaUnsupported.
func ValidateDataStoreForRestore(fldPath *field.Path, ds *kdcv1alpha1.KdcClusterDatastore) field.ErrorList {
	if v := engine.CheckDataStore(ds); v != nil {
		return field.ErrorList{field.Forbidden(fldPath, v.String())}
	}
	return nil
}

// ValidateDataStoreFound is DataStoreUnknown for a datastore namespace/name ("" when the cluster
// names none) that cannot be found (engine.DataStoreMissing).
func ValidateDataStoreFound(fldPath *field.Path, namespace, name string) field.ErrorList {
	return field.ErrorList{field.Forbidden(fldPath, engine.DataStoreMissing(namespace, name).String())}
}

// describeRestore says which restore runs, from the annotations of the object.
func describeRestore(annotations map[string]string) string {
	s := fmt.Sprintf("restore from %q is %s", annotations[kdcv1alpha1.AnnotationRestoreFrom], annotations[kdcv1alpha1.AnnotationRestoreState])
	if by := annotations[kdcv1alpha1.AnnotationRestoreRequestedBy]; by != "" {
		s += fmt.Sprintf(" (requested by %s", by)
		if at := annotations[kdcv1alpha1.AnnotationRestoreRequestedAt]; at != "" {
			s += " at " + at
		}
		s += ")"
	}
	return s
}

// ValidateNoRestoreInProgress rejects a new restore request when the current (old) annotations
// show a running restore (RestoreInProgress). It must be given the stored object's annotations,
// never the incoming ones: the mutating webhook already stamped those.
func ValidateNoRestoreInProgress(fldPath *field.Path, oldAnnotations map[string]string) field.ErrorList {
	if !kdcv1alpha1.RestoreRunning(oldAnnotations) {
		return nil
	}
	return field.ErrorList{field.Forbidden(fldPath, detail(kdcv1alpha1.ReasonRestoreInProgress,
		"a %s; wait until it ends (kubectl get kdccluster shows it in the RESTORE column), then annotate again",
		describeRestore(oldAnnotations)))}
}

// ValidateRestoreFromKept rejects removing or changing restore-from while a restore runs
// (RestoreInProgress); only the controller may do that.
func ValidateRestoreFromKept(fldPath *field.Path, oldAnnotations, newAnnotations map[string]string) field.ErrorList {
	if !kdcv1alpha1.RestoreRunning(oldAnnotations) {
		return nil
	}
	oldKey, newKey := oldAnnotations[kdcv1alpha1.AnnotationRestoreFrom], newAnnotations[kdcv1alpha1.AnnotationRestoreFrom]
	_, present := newAnnotations[kdcv1alpha1.AnnotationRestoreFrom]
	if present && oldKey == newKey {
		return nil
	}
	return field.ErrorList{field.Forbidden(fldPath, detail(kdcv1alpha1.ReasonRestoreInProgress,
		"%s cannot be removed or changed while a %s; a running restore cannot be cancelled, wait until it ends",
		kdcv1alpha1.AnnotationRestoreFrom, describeRestore(oldAnnotations)))}
}

// ValidateDeletion rejects deleting a cluster whose restore runs (RestoreInProgress).
func ValidateDeletion(fldPath *field.Path, annotations map[string]string) field.ErrorList {
	if !kdcv1alpha1.RestoreRunning(annotations) {
		return nil
	}
	return field.ErrorList{field.Forbidden(fldPath, detail(kdcv1alpha1.ReasonRestoreInProgress,
		"the cluster cannot be deleted while a %s; wait until it ends, then delete it",
		describeRestore(annotations)))}
}

// RestoreStamps are the annotations the mutating webhook adds to an accepted restore request:
// state Validating, the requester and the request time (RFC 3339, UTC, seconds).
func RestoreStamps(requester string, now time.Time) map[string]string {
	return map[string]string{
		kdcv1alpha1.AnnotationRestoreState:       string(kdcv1alpha1.PhaseValidating),
		kdcv1alpha1.AnnotationRestoreRequestedBy: requester,
		kdcv1alpha1.AnnotationRestoreRequestedAt: now.UTC().Format(time.RFC3339),
	}
}

// StampsAllowed says which stamps a non-controller request may carry: none, or those of an
// accepted new restore request by Requester at about Now.
type StampsAllowed struct {
	// NewRequest is true when the request sets a new or changed restore-from (one failing the
	// restore rules is rejected for that, whatever its stamps).
	NewRequest bool
	// Requester is the username of the request.
	Requester string
	// Now is the validating webhook's clock.
	Now time.Time
}

// validStamp reports whether value is the stamp the mutating webhook writes for key.
func (s StampsAllowed) validStamp(key, value string) bool {
	if !s.NewRequest {
		return false
	}
	switch key {
	case kdcv1alpha1.AnnotationRestoreState:
		return value == string(kdcv1alpha1.PhaseValidating)
	case kdcv1alpha1.AnnotationRestoreRequestedBy:
		return value == s.Requester
	case kdcv1alpha1.AnnotationRestoreRequestedAt:
		t, err := time.Parse(time.RFC3339, value)
		if err != nil {
			return false
		}
		d := t.Sub(s.Now)
		return d > -kdcv1alpha1.MaxRequestedAtSkew && d < kdcv1alpha1.MaxRequestedAtSkew
	}
	return false
}

// ValidateBookkeepingAnnotations rejects a non-controller identity setting, changing or
// removing any restore bookkeeping annotation (ProtectedAnnotation), except the stamps of an
// accepted new restore request (see StampsAllowed). controller names the identity that may.
func ValidateBookkeepingAnnotations(fldPath *field.Path, oldAnnotations, newAnnotations map[string]string, allowed StampsAllowed, controller string) field.ErrorList {
	keys := map[string]bool{}
	for k := range oldAnnotations {
		if kdcv1alpha1.IsRestoreBookkeeping(k) {
			keys[k] = true
		}
	}
	for k := range newAnnotations {
		if kdcv1alpha1.IsRestoreBookkeeping(k) {
			keys[k] = true
		}
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	slices.Sort(sorted)

	var errs field.ErrorList
	for _, k := range sorted {
		oldV, inOld := oldAnnotations[k]
		newV, inNew := newAnnotations[k]
		if inOld == inNew && oldV == newV {
			continue
		}
		if inNew && allowed.validStamp(k, newV) {
			continue
		}
		verb := "changed"
		switch {
		case !inNew:
			verb = "removed"
		case !inOld:
			verb = "set"
		}
		errs = append(errs, field.Forbidden(fldPath.Key(k), detail(kdcv1alpha1.ReasonProtectedAnnotation,
			"%s is restore bookkeeping and cannot be %s by %s; only the controller (%s) writes it. To start a restore set only %s",
			k, verb, allowed.Requester, controller, kdcv1alpha1.AnnotationRestoreFrom)))
	}
	return errs
}

// ValidateSchedule checks a 5-field cron schedule, evaluated in UTC (no time zone prefix).
func ValidateSchedule(fldPath *field.Path, schedule string) field.ErrorList {
	if schedule == "" {
		return nil
	}
	if strings.HasPrefix(schedule, "TZ=") || strings.HasPrefix(schedule, "CRON_TZ=") {
		return field.ErrorList{field.Invalid(fldPath, schedule, detail(kdcv1alpha1.ReasonInvalidBackupSpec,
			"schedules are evaluated in UTC and take no time zone; drop the TZ= prefix and give the time in UTC"))}
	}
	if _, err := scheduleParser.Parse(schedule); err != nil {
		return field.ErrorList{field.Invalid(fldPath, schedule, detail(kdcv1alpha1.ReasonInvalidBackupSpec,
			"not a 5-field cron schedule (%v); use minute hour day-of-month month day-of-week, for example \"0 2 * * *\"", err))}
	}
	return nil
}

// ValidateS3Endpoint checks that endpoint is an http(s) URL of a host, without credentials,
// query or fragment.
func ValidateS3Endpoint(fldPath *field.Path, endpoint string) field.ErrorList {
	if endpoint == "" {
		return nil
	}
	bad := func(why string) field.ErrorList {
		return field.ErrorList{field.Invalid(fldPath, endpoint, detail(kdcv1alpha1.ReasonInvalidBackupSpec,
			"%s; use an http(s) URL like https://s3.example.com or http://minio.storage:9000", why))}
	}
	u, err := url.Parse(endpoint)
	switch {
	case err != nil:
		return bad("not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return bad(fmt.Sprintf("scheme %q is not http or https", u.Scheme))
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return bad("the URL names no host")
	case u.User != nil:
		return bad("the URL carries credentials; put them in the Secret named by s3CredentialSecret")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return bad("the URL has a query or fragment")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return bad(fmt.Sprintf("port %q is not a number from 1 to 65535", p))
		}
	}
	return nil
}

// ValidateDestinationPath checks s3://bucket[/prefix]: an S3 bucket name (3 to 63 lower-case
// letters, digits, dots and hyphens, starting and ending with a letter or digit, not an IP
// address) and a prefix without empty, "." or ".." elements.
func ValidateDestinationPath(fldPath *field.Path, dest string) field.ErrorList {
	if dest == "" {
		return nil
	}
	bad := func(why string) field.ErrorList {
		return field.ErrorList{field.Invalid(fldPath, dest, detail(kdcv1alpha1.ReasonInvalidBackupSpec,
			"%s; use s3://bucket or s3://bucket/prefix, for example s3://team-backups/etcd", why))}
	}
	rest, ok := strings.CutPrefix(dest, "s3://")
	if !ok {
		return bad("does not start with s3://")
	}
	bucket, prefix, _ := strings.Cut(rest, "/")
	if why := bucketNameProblem(bucket); why != "" {
		return bad(why)
	}
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix == "" {
		return nil
	}
	for _, el := range strings.Split(prefix, "/") {
		if el == "" || el == "." || el == ".." {
			return bad(fmt.Sprintf("prefix %q has an empty, \".\" or \"..\" element", prefix))
		}
		for _, r := range el {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
				return bad(fmt.Sprintf("prefix %q contains %q; use letters, digits, '.', '_', '-' and '/'", prefix, r))
			}
		}
	}
	return nil
}

// bucketNameProblem says what is wrong with an S3 bucket name, or "".
func bucketNameProblem(b string) string {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Sprintf("bucket name %q must be 3 to 63 characters long", b)
	}
	for _, r := range b {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-') {
			return fmt.Sprintf("bucket name %q may only contain lower-case letters, digits, '.' and '-'", b)
		}
	}
	if !isAlnum(b[0]) || !isAlnum(b[len(b)-1]) {
		return fmt.Sprintf("bucket name %q must start and end with a letter or digit", b)
	}
	if strings.Contains(b, "..") {
		return fmt.Sprintf("bucket name %q must not contain \"..\"", b)
	}
	if net.ParseIP(b) != nil {
		return fmt.Sprintf("bucket name %q must not be an IP address", b)
	}
	return ""
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// ValidateBackupSpec checks spec.backup where the CRD schema cannot: the cron schedule, the S3
// endpoint and the destination path.
func ValidateBackupSpec(fldPath *field.Path, b *kdcv1alpha1.BackupSpec) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, ValidateSchedule(fldPath.Child("schedule"), b.Schedule)...)
	errs = append(errs, ValidateS3Endpoint(fldPath.Child("s3Endpoint"), b.S3Endpoint)...)
	errs = append(errs, ValidateDestinationPath(fldPath.Child("destinationPath"), b.DestinationPath)...)
	return errs
}

// ValidateDataStoreReplicas rejects changing a datastore's spec.etcd.replicas while a restore
// of a cluster using it runs (RestoreInProgress). restoring lists those clusters
// (namespace/name).
func ValidateDataStoreReplicas(fldPath *field.Path, oldReplicas, newReplicas int32, restoring []string) field.ErrorList {
	if oldReplicas == newReplicas || len(restoring) == 0 {
		return nil
	}
	return field.ErrorList{field.Forbidden(fldPath, detail(kdcv1alpha1.ReasonRestoreInProgress,
		"cannot change etcd replicas from %d to %d while a restore of %s runs; wait until it ends, then change them",
		oldReplicas, newReplicas, strings.Join(restoring, ", ")))}
}

// ValidateNoWholeEtcdRestore is DataStoreInUse: a KdcCluster may not be attached to a datastore
// on which a whole-etcd restore of another cluster runs (engine.WholeEtcdRestoreOn).
func ValidateNoWholeEtcdRestore(fldPath *field.Path, c *kdcv1alpha1.KdcCluster, users []kdcv1alpha1.KdcCluster) field.ErrorList {
	for i := range users {
		u := &users[i]
		if u.Namespace == c.Namespace && u.Name == c.Name {
			continue
		}
		if engine.WholeEtcdRestoreRunning(u.Annotations) {
			return field.ErrorList{field.Forbidden(fldPath, detail(kdcv1alpha1.ReasonDataStoreInUse,
				"KdcCluster %s/%s restores the whole etcd of KdcClusterDatastore %s/%s (%s); a cluster attached now would be rolled back with it. Wait until that restore ends, then try again",
				u.Namespace, u.Name, c.DataStoreNamespace(), c.DataStore(), describeRestore(u.Annotations)))}
		}
	}
	return nil
}
