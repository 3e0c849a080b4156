package snapshot

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Outcomes of ApplyLifecycle, reported as "lifecycle" in the backup's termination message.
const (
	// LifecycleApplied: the cluster's rule was added or updated.
	LifecycleApplied = "applied"
	// LifecycleUnchanged: the rule was already as wanted; nothing was written.
	LifecycleUnchanged = "unchanged"
	// LifecycleDisabled: retention-days is 0; lifecycle rules were left alone.
	LifecycleDisabled = "disabled"
	// LifecycleUnsupported: the backend does not implement lifecycle rules, and deleting the expired
	// snapshots (the fallback, PruneExpired) failed; see lifecycleError. The next backup retries.
	LifecycleUnsupported = "unsupported"
	// LifecycleFailed: reading or writing the rules failed; see lifecycleError.
	LifecycleFailed = "failed"
)

// abortIncompleteDays is when the rule aborts multipart uploads a killed backup left behind.
const abortIncompleteDays = 1

// lifecycleAttempts bounds the read-merge-write-check loop against concurrent writers (other
// clusters' backups sharing the bucket).
const lifecycleAttempts = 3

// LifecycleRuleID is the ID of cluster's retention rule.
func LifecycleRuleID(cluster string) string { return "kdc-etcd-backup-" + cluster }

// lifecyclePrefix is the key prefix the rule covers: [prefix/]C/.
func lifecyclePrefix(loc S3Location, cluster string) string {
	return loc.ObjectKey(cluster) + "/"
}

// LifecycleRule is the retention rule of cluster's snapshots under loc.
func LifecycleRule(loc S3Location, cluster string, days int32) types.LifecycleRule {
	return types.LifecycleRule{
		ID:                             aws.String(LifecycleRuleID(cluster)),
		Status:                         types.ExpirationStatusEnabled,
		Filter:                         &types.LifecycleRuleFilter{Prefix: aws.String(lifecyclePrefix(loc, cluster))},
		Expiration:                     &types.LifecycleExpiration{Days: aws.Int32(days)},
		AbortIncompleteMultipartUpload: &types.AbortIncompleteMultipartUpload{DaysAfterInitiation: aws.Int32(abortIncompleteDays)},
	}
}

// MergeLifecycleRules returns existing with want inserted, or replacing the rule with the same
// ID; every other rule is kept as it is and in its place. changed is false when want is already
// there.
func MergeLifecycleRules(existing []types.LifecycleRule, want types.LifecycleRule) (merged []types.LifecycleRule, changed bool) {
	merged = make([]types.LifecycleRule, 0, len(existing)+1)
	found := false
	for _, r := range existing {
		if aws.ToString(r.ID) != aws.ToString(want.ID) {
			merged = append(merged, r)
			continue
		}
		if found { // a duplicate ID would make the configuration invalid; drop it
			changed = true
			continue
		}
		found = true
		if !sameRule(r, want) {
			changed = true
		}
		merged = append(merged, want)
	}
	if !found {
		merged = append(merged, want)
		changed = true
	}
	return merged, changed
}

// sameRule compares the parts of a rule this package sets. A missing
// AbortIncompleteMultipartUpload counts as equal: some backends (MinIO) drop it on write and
// expire stale multipart uploads on their own.
func sameRule(a, b types.LifecycleRule) bool {
	prefix := func(r types.LifecycleRule) string {
		if r.Filter != nil {
			if r.Filter.And != nil || r.Filter.Tag != nil || r.Filter.ObjectSizeGreaterThan != nil || r.Filter.ObjectSizeLessThan != nil {
				return "\x00other"
			}
			return aws.ToString(r.Filter.Prefix)
		}
		//lint:ignore SA1019 rules written by older clients carry the legacy top-level prefix; read it to leave them alone
		return "\x00none:" + aws.ToString(r.Prefix)
	}
	days := func(r types.LifecycleRule) int32 {
		if r.Expiration == nil || r.Expiration.Date != nil || r.Expiration.ExpiredObjectDeleteMarker != nil {
			return -1
		}
		return aws.ToInt32(r.Expiration.Days)
	}
	abortOK := a.AbortIncompleteMultipartUpload == nil || b.AbortIncompleteMultipartUpload == nil ||
		aws.ToInt32(a.AbortIncompleteMultipartUpload.DaysAfterInitiation) == aws.ToInt32(b.AbortIncompleteMultipartUpload.DaysAfterInitiation)
	return a.Status == b.Status && prefix(a) == prefix(b) && days(a) == days(b) && abortOK &&
		len(a.Transitions) == 0 && len(a.NoncurrentVersionTransitions) == 0 && a.NoncurrentVersionExpiration == nil
}

// ApplyLifecycle makes sure the bucket's lifecycle configuration holds cluster's retention rule
// with days, keeping every other rule. It re-reads after writing and retries when a concurrent
// writer replaced the configuration in between. It returns one of the Lifecycle* outcomes.
func ApplyLifecycle(ctx context.Context, c *s3.Client, loc S3Location, cluster string, days int32) (string, error) {
	want := LifecycleRule(loc, cluster, days)
	wrote := false
	for range lifecycleAttempts {
		existing, err := getLifecycle(ctx, c, loc)
		if err != nil {
			if apiCode(err) == codeNotImplemented {
				return LifecycleUnsupported, nil
			}
			return LifecycleFailed, s3Error("read the lifecycle rules of", loc, "", err)
		}
		merged, changed := MergeLifecycleRules(existing, want)
		if !changed {
			if wrote {
				return LifecycleApplied, nil
			}
			return LifecycleUnchanged, nil
		}
		if _, err := c.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{
			Bucket:                 aws.String(loc.Bucket),
			LifecycleConfiguration: &types.BucketLifecycleConfiguration{Rules: merged},
		}); err != nil {
			if apiCode(err) == codeNotImplemented {
				return LifecycleUnsupported, nil
			}
			return LifecycleFailed, s3Error("write the lifecycle rules of", loc, "", err)
		}
		wrote = true
	}
	return LifecycleFailed, fmt.Errorf("the lifecycle rules of bucket %q kept changing under us (%d attempts); the next backup retries", loc.Bucket, lifecycleAttempts)
}

func getLifecycle(ctx context.Context, c *s3.Client, loc S3Location) ([]types.LifecycleRule, error) {
	out, err := c.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: aws.String(loc.Bucket)})
	if err != nil {
		if apiCode(err) == codeNoSuchLifecycle || strings.Contains(err.Error(), codeNoSuchLifecycle) {
			return nil, nil
		}
		return nil, err
	}
	return out.Rules, nil
}
