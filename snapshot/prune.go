package snapshot

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// LifecyclePruned: the backend does not implement lifecycle rules, so the backup itself deleted
// the cluster's snapshots older than the retention (the fallback docs/backup.md, "Retention", promises); the
// termination message's pruned lists them.
const LifecyclePruned = "pruned"

// pruneDeleteBatch is the most keys one DeleteObjects request takes (the S3 limit).
const pruneDeleteBatch = 1000

// expiredSnapshots picks, from the object keys under the cluster's prefix, the snapshots of
// cluster taken more than days before now (by the timestamp in the key, which is when the backup
// ran). It never picks keep (the snapshot just uploaded) or the newest snapshot, whatever the
// clocks say, and never an object that is not a snapshot key of this cluster. keys are relative
// to the bucket; prefix is the destinationPath prefix ("" for none).
func expiredSnapshots(keys []string, prefix, cluster string, days int32, now time.Time, keep string) []string {
	type snap struct {
		objectKey string
		at        time.Time
	}
	var snaps []snap
	for _, k := range keys {
		rel := k
		if prefix != "" {
			var ok bool
			if rel, ok = strings.CutPrefix(k, strings.Trim(prefix, "/")+"/"); !ok {
				continue
			}
		}
		_, at, err := kdcv1alpha1.ParseSnapshotKey(rel, cluster)
		if err != nil {
			continue
		}
		snaps = append(snaps, snap{k, at})
	}
	if len(snaps) == 0 {
		return nil
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].at.After(snaps[j].at) })
	cutoff := now.Add(-time.Duration(days) * 24 * time.Hour)
	var out []string
	for _, s := range snaps[1:] {
		if s.objectKey != keep && s.at.Before(cutoff) {
			out = append(out, s.objectKey)
		}
	}
	sort.Strings(out)
	return out
}

// PruneExpired is the retention fallback for backends without lifecycle rules: it lists the
// cluster's snapshots under loc and deletes those taken more than days before now
// (expiredSnapshots; keep is never deleted). It returns the deleted object keys; on an error the
// keys deleted so far are returned with it.
func PruneExpired(ctx context.Context, c *s3.Client, loc S3Location, cluster string, days int32, now time.Time, keep string) ([]string, error) {
	var keys []string
	pages := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{
		Bucket: aws.String(loc.Bucket),
		Prefix: aws.String(lifecyclePrefix(loc, cluster)),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, s3Error("list the snapshots under", loc, lifecyclePrefix(loc, cluster), err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	expired := expiredSnapshots(keys, loc.Prefix, cluster, days, now, keep)
	var deleted []string
	for len(expired) > 0 {
		batch := expired[:min(len(expired), pruneDeleteBatch)]
		expired = expired[len(batch):]
		ids := make([]types.ObjectIdentifier, len(batch))
		for i, k := range batch {
			ids[i] = types.ObjectIdentifier{Key: aws.String(k)}
		}
		out, err := c.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: aws.String(loc.Bucket),
			Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
		})
		if err != nil {
			return deleted, s3Error("delete expired snapshots in", loc, "", err)
		}
		failed := map[string]bool{}
		var errs []error
		for _, e := range out.Errors {
			failed[aws.ToString(e.Key)] = true
			errs = append(errs, fmt.Errorf("%s: %s %s", aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message)))
		}
		for _, k := range batch {
			if !failed[k] {
				deleted = append(deleted, k)
			}
		}
		if len(errs) > 0 {
			return deleted, fmt.Errorf("failed to delete %d expired snapshots in bucket %q: %w", len(errs), loc.Bucket, errors.Join(errs...))
		}
	}
	return deleted, nil
}
