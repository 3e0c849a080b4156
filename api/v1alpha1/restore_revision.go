package v1alpha1

import (
	"fmt"
	"strconv"
	"strings"
)

// RestoreRevision is how a restore moved etcd's revision (docs/restore.md, "Revisions"): the
// restored revision is the larger of the snapshot's revision and the highest revision known
// before the restore, plus a margin, so the tenant's clients only ever see revisions go forward.
// The restore Job reports it in its termination message; the controller records it in
// AnnotationRestoreRevision.
// +kubebuilder:object:generate=false
type RestoreRevision struct {
	// Revision is the snapshot's own revision.
	Revision int64 `json:"revision"`
	// RevisionBefore is the highest revision the tenant's clients can have seen before the
	// restore, as far as it is known: the replaced data's, its previous generation's, the newest
	// backup's and any given one.
	RevisionBefore int64 `json:"revisionBefore"`
	// BumpRevision is what the restore added to Revision.
	BumpRevision int64 `json:"bumpRevision"`
	// RestoredRevision is etcd's revision after the restore: Revision + BumpRevision.
	RestoredRevision int64 `json:"restoredRevision"`
}

// String is the annotation form: "before=B bump=X after=A snapshot=S".
func (r RestoreRevision) String() string {
	return fmt.Sprintf("before=%d bump=%d after=%d snapshot=%d", r.RevisionBefore, r.BumpRevision, r.RestoredRevision, r.Revision)
}

// Describe says it in a sentence, for Events and the plugin.
func (r RestoreRevision) Describe() string {
	return fmt.Sprintf("etcd revision %d before the restore, %d after it (the snapshot's %d + %d)", r.RevisionBefore, r.RestoredRevision, r.Revision, r.BumpRevision)
}

// ParseRestoreRevision reads the String form back.
func ParseRestoreRevision(s string) (RestoreRevision, error) {
	var r RestoreRevision
	fields := map[string]*int64{"before": &r.RevisionBefore, "bump": &r.BumpRevision, "after": &r.RestoredRevision, "snapshot": &r.Revision}
	seen := 0
	for _, f := range strings.Fields(s) {
		name, val, ok := strings.Cut(f, "=")
		dst := fields[name]
		if !ok || dst == nil {
			return RestoreRevision{}, fmt.Errorf("restore revision %q: unexpected %q, want before=B bump=X after=A snapshot=S", s, f)
		}
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			return RestoreRevision{}, fmt.Errorf("restore revision %q: %s: %w", s, name, err)
		}
		*dst = n
		seen++
	}
	if seen != len(fields) {
		return RestoreRevision{}, fmt.Errorf("restore revision %q: want before=B bump=X after=A snapshot=S", s)
	}
	return r, nil
}
