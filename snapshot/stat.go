package snapshot

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// `kubectl kdc backups` judges a snapshot by the checks restore and verify run before a
// download, so a listing and a restore always agree.

// ObjectStat is what a snapshot object's HEAD and tags tell without downloading it.
type ObjectStat struct {
	// Size is the object size in bytes.
	Size int64
	// S3ChecksumSHA256 is the object's x-amz-checksum-sha256, "" when it has none: a full-object
	// SHA-256 (single PutObject) or a composite one ending in "-N" (multipart).
	S3ChecksumSHA256 string
	// TagSHA256 is the object tag TagSHA256, the whole-object SHA-256 in hex; "" when absent or
	// when the backend or the credentials do not allow reading tags.
	TagSHA256 string
	// Revision is the metadata MetaEtcdRevision, 0 when absent.
	Revision int64
	// EtcdVersion is the metadata MetaEtcdVersion.
	EtcdVersion string
	// Format is the metadata MetaSnapshotFormat: "" for an etcd snapshot (a whole-etcd backup),
	// else the form of a prefix snapshot (one tenant's keys on a shared datastore).
	Format string
}

// StatObject reads the size, checksum, metadata and sha256 tag of the object objectKey (the
// location's prefix included), an etcd snapshot or a prefix snapshot (Format), and runs the
// checks a restore runs before downloading: a well-formed
// checksum whose part count matches the size and the part-size metadata, and a size that is a
// database followed by etcd's 32-byte hash. It returns an *Error: ExitIntegrity when a check
// fails, ExitObjectMissing, ExitBucketMissing, ExitAccessDenied or ExitS3Unreachable otherwise.
func StatObject(ctx context.Context, c *s3.Client, loc S3Location, objectKey string) (*ObjectStat, error) {
	tags := readTags(ctx, c, loc, objectKey)
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(loc.Bucket), Key: aws.String(objectKey), ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		<-tags // the tags request must not outlive the call
		return nil, notFoundError(ctx, c, loc, objectKey, s3Error("read", loc, objectKey, err))
	}
	format := head.Metadata[MetaSnapshotFormat]
	var info *ObjectInfo
	if format != "" {
		info, err = newStreamInfo(loc, objectKey, aws.ToInt64(head.ContentLength), aws.ToString(head.ChecksumSHA256), head.Metadata, tags)
	} else {
		info, err = newObjectInfo(loc, objectKey, aws.ToInt64(head.ContentLength), aws.ToString(head.ChecksumSHA256), head.Metadata, tags)
	}
	if err != nil {
		return nil, err
	}
	st := &ObjectStat{Size: info.Size, TagSHA256: info.TagSHA256, Revision: info.Revision, EtcdVersion: info.EtcdVersion, Format: format}
	if info.HasChecksum {
		st.S3ChecksumSHA256 = info.Checksum.String()
	}
	return st, nil
}

// ClassifyS3Error turns err from an S3 call made to do what (e.g. "list") on objectKey ("" for
// the bucket itself) into an *Error whose Code tells the class: ExitBucketMissing,
// ExitObjectMissing, ExitAccessDenied, ExitS3Unreachable, ExitIntegrity or ExitFailed.
func ClassifyS3Error(what string, loc S3Location, objectKey string, err error) error {
	return s3Error(what, loc, objectKey, err)
}
