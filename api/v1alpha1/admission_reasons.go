package v1alpha1

import "time"

// Reasons only the admission webhooks give (the restore rejection reasons shared with the
// controller are in conditions.go). They start the detail of each admission error cause.
const (
	// ReasonProtectedAnnotation: a restore bookkeeping annotation (see IsRestoreBookkeeping) was
	// set, changed or removed by an identity other than the controller's.
	ReasonProtectedAnnotation = "ProtectedAnnotation"
	// ReasonInvalidBackupSpec: spec.backup has a bad cron schedule, S3 endpoint or destination path.
	ReasonInvalidBackupSpec = "InvalidBackupSpec"
)

// MaxRequestedAtSkew bounds how far kube-dc.com/restore-requested-at, as stamped by the mutating
// webhook, may be from the validating webhook's clock.
const MaxRequestedAtSkew = 2 * time.Minute
