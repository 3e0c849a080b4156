package backup

import "time"

// Options configure the backup controllers; the manager fills them from its flags.
type Options struct {
	// Image is the manager's own image, run by the backup Jobs.
	Image string
	// S3Endpoint is the default S3 endpoint (the manager's S3_ENDPOINT), used when neither the
	// KdcCluster nor the ObjectBucketClaim's ConfigMap names one.
	S3Endpoint string
	// SpreadWindow spreads clusters sharing a schedule over this window (0: off).
	SpreadWindow time.Duration
	// MaxConcurrentBackups is how many backup Jobs may run at once in the management cluster;
	// the others wait, suspended, in order (0: no limit).
	MaxConcurrentBackups int
}
