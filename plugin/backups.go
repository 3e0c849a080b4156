package plugin

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/printers"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/engine"
	"kube-dc.com/etcd-backup/snapshot"
)

// Checksum states of a snapshot (the CHECKSUM column).
const (
	// checksumSHA256: the object has S3's SHA-256 checksum and the backup's sha256 tag, as every
	// complete backup of this tool has.
	checksumSHA256 = "sha256"
	// checksumNoTag: S3's SHA-256 checksum but no sha256 tag (tagging failed or is not supported);
	// a restore still verifies the S3 checksum and etcd's hash.
	checksumNoTag = "no-tag"
	// checksumTagOnly: the sha256 tag but no S3 checksum (a backend without checksums).
	checksumTagOnly = "tag-only"
	// checksumMissing: neither; only etcd's own hash can be checked (not written by this tool).
	checksumMissing = "missing"
	// checksumInvalid: the checks a restore runs before downloading fail (malformed checksum, a
	// part count that does not match the size, a size that is not a database plus etcd's hash); a
	// restore of it fails.
	checksumInvalid = "invalid"
)

// Snapshot is one snapshot object of a cluster, as `kubectl kdc backups` lists it.
type Snapshot struct {
	// Key is the snapshot key C/C-<ts>.db, what restore-from takes.
	Key string `json:"key"`
	// Time is the key's timestamp (UTC), when the backup started.
	Time time.Time `json:"time"`
	// ObjectKey is the S3 object key: the destinationPath prefix, if any, and Key.
	ObjectKey string `json:"objectKey"`
	// Size is the object size in bytes.
	Size int64 `json:"size"`
	// LastModified is when S3 stored the object.
	LastModified time.Time `json:"lastModified"`
	// Revision and EtcdVersion are the object's etcd-revision and etcd-version metadata; zero
	// when absent.
	Revision    int64  `json:"revision,omitempty"`
	EtcdVersion string `json:"etcdVersion,omitempty"`
	// Checksum is the checksum state: sha256, no-tag, tag-only, missing or invalid.
	Checksum string `json:"checksum"`
	// SHA256 is the sha256 tag (hex), S3ChecksumSHA256 the object's x-amz-checksum-sha256.
	SHA256           string `json:"sha256,omitempty"`
	S3ChecksumSHA256 string `json:"s3ChecksumSHA256,omitempty"`
	// Problem says why Checksum is invalid.
	Problem string `json:"problem,omitempty"`
	// Mode is whole-etcd (an etcd snapshot) or prefix (one tenant's keys of a shared datastore).
	Mode string `json:"mode,omitempty"`
}

// snapshotList is the -o json/yaml document of `kubectl kdc backups`.
type snapshotList struct {
	Cluster   string `json:"cluster"`
	Namespace string `json:"namespace"`
	Endpoint  string `json:"endpoint"`
	Bucket    string `json:"bucket"`
	Prefix    string `json:"prefix,omitempty"`
	// Items are newest first.
	Items []Snapshot `json:"items"`
}

// statConcurrency bounds the HEAD and tag requests in flight while listing.
const statConcurrency = 8

// listSnapshots lists the cluster's snapshots from S3, newest first, with the location and
// credentials the controller uses (--s3-endpoint overrides the endpoint).
func (o *Options) listSnapshots(ctx context.Context, c *kdcv1alpha1.KdcCluster, s3f *s3Flags) ([]Snapshot, error) {
	list, err := o.snapshotListing(ctx, c, s3f)
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// snapshotListing lists the objects under the cluster's prefix, keeps the snapshot keys of this
// cluster and reads each one's size, checksum, metadata and tag.
func (o *Options) snapshotListing(ctx context.Context, c *kdcv1alpha1.KdcCluster, s3f *s3Flags) (*snapshotList, error) {
	st, err := o.openSnapshotStore(ctx, c, s3f)
	if err != nil {
		return nil, err
	}
	list := &snapshotList{Cluster: c.Name, Namespace: c.Namespace, Endpoint: st.loc.Endpoint, Bucket: st.loc.Bucket, Prefix: st.loc.Prefix, Items: []Snapshot{}}
	pages := s3.NewListObjectsV2Paginator(st.s3, &s3.ListObjectsV2Input{
		Bucket: aws.String(st.loc.Bucket),
		Prefix: aws.String(st.loc.ObjectKey(c.Name + "/")),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, st.explain("list the snapshots in", err)
		}
		for _, obj := range page.Contents {
			key, t, ok := snapshotKeyOf(st.loc, c.Name, aws.ToString(obj.Key))
			if !ok {
				continue
			}
			list.Items = append(list.Items, Snapshot{
				Key: key, Time: t, ObjectKey: aws.ToString(obj.Key), Size: aws.ToInt64(obj.Size),
				LastModified: aws.ToTime(obj.LastModified).UTC(),
			})
		}
	}
	if err := st.statSnapshots(ctx, list.Items); err != nil {
		return nil, err
	}
	list.Items = slices.DeleteFunc(list.Items, func(s Snapshot) bool { return s.Checksum == "" }) // gone meanwhile
	sortSnapshots(list.Items)
	return list, nil
}

// statSnapshots fills in each snapshot's checksum state and metadata, a few objects at a time.
// An object that disappeared since the listing (retention) is left with an empty Checksum.
func (st *snapshotStore) statSnapshots(ctx context.Context, items []Snapshot) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		sem      = make(chan struct{}, statConcurrency)
	)
	for i := range items {
		s := &items[i]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			stat, err := snapshot.StatObject(ctx, st.s3, st.loc, s.ObjectKey)
			switch code := snapshot.CodeOf(err); {
			case err == nil:
				applyStat(s, stat)
			case code == snapshot.ExitIntegrity:
				s.Checksum, s.Problem = checksumInvalid, err.Error()
			case code == snapshot.ExitObjectMissing:
			default:
				mu.Lock()
				if firstErr == nil {
					firstErr = st.explain("read snapshot "+s.Key+" in", err)
					cancel()
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return firstErr
}

// applyStat records what a HEAD and the tags told about s.
func applyStat(s *Snapshot, stat *snapshot.ObjectStat) {
	s.Size, s.Revision, s.EtcdVersion = stat.Size, stat.Revision, stat.EtcdVersion
	s.SHA256, s.S3ChecksumSHA256 = stat.TagSHA256, stat.S3ChecksumSHA256
	s.Checksum = checksumState(stat.S3ChecksumSHA256 != "", stat.TagSHA256 != "")
	s.Mode = string(engine.ModeWholeEtcd)
	if stat.Format != "" {
		s.Mode = string(engine.ModePrefix)
	}
}

// checksumState is the CHECKSUM state of an object that passed the pre-download checks.
func checksumState(hasS3Checksum, hasTag bool) string {
	switch {
	case hasS3Checksum && hasTag:
		return checksumSHA256
	case hasS3Checksum:
		return checksumNoTag
	case hasTag:
		return checksumTagOnly
	}
	return checksumMissing
}

// snapshotKeyOf returns the snapshot key and its time when objectKey, an object under loc's
// prefix, is a snapshot key of cluster; other objects under the prefix are not snapshots.
func snapshotKeyOf(loc snapshot.S3Location, cluster, objectKey string) (string, time.Time, bool) {
	key, ok := strings.CutPrefix(objectKey, loc.ObjectKey(""))
	if !ok {
		return "", time.Time{}, false
	}
	if _, t, err := kdcv1alpha1.ParseSnapshotKey(key, cluster); err == nil {
		return key, t, true
	}
	return "", time.Time{}, false
}

// sortSnapshots orders newest first (by the key's time, then key).
func sortSnapshots(items []Snapshot) {
	slices.SortStableFunc(items, func(a, b Snapshot) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return cmp.Compare(b.Key, a.Key)
	})
}

// backupsOptions are the flags of `kubectl kdc backups`.
type backupsOptions struct {
	s3        s3Flags
	output    string
	noHeaders bool
}

func newBackupsCommand(o *Options) *cobra.Command {
	bo := &backupsOptions{}
	cmd := &cobra.Command{
		Use:     "backups CLUSTER",
		Aliases: []string{"snapshots"},
		Short:   "List the snapshots of a cluster in S3, newest first",
		Long: `List the etcd snapshots of a KdcCluster, newest first, straight from its S3 bucket.

The bucket, prefix and endpoint are resolved exactly as the controller resolves them
(spec.backup.destinationPath and s3Endpoint, the managed-k8s-backups ObjectBucketClaim and its
ConfigMap, else the --s3-endpoint of the cluster's backup CronJob), with the credentials of the
cluster's S3 credential Secret (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY). The in-cluster
endpoint is often not reachable from your machine: forward it with kubectl port-forward and
pass --s3-endpoint.

Columns: KEY (what kube-dc.com/restore-from and kubectl kdc restore take), TIME (the key's UTC
timestamp), AGE, SIZE, REVISION (the etcd revision the snapshot holds at least), CHECKSUM:
  sha256    S3's SHA-256 checksum and the backup's sha256 tag (a complete backup)
  no-tag    S3's SHA-256 checksum only (tagging failed); restores still verify it
  tag-only  the sha256 tag only (a backend without S3 checksums)
  missing   neither (not written by kdc-etcd-backup); only etcd's own hash can be checked
  invalid   fails the checks a restore runs before downloading; a restore of it fails
Objects under the cluster's prefix that are not snapshot keys of this cluster are skipped.`,
		Example: `  # List the snapshots of cluster prod in namespace team-a
  kubectl kdc backups prod -n team-a

  # The same through a port-forward to the in-cluster S3 service
  kubectl port-forward -n rook-ceph svc/rook-ceph-rgw-store 8080:80 &
  kubectl kdc backups prod -n team-a --s3-endpoint=http://127.0.0.1:8080

  # The newest key, for scripts
  kubectl kdc backups prod -n team-a -o json | jq -r '.items[0].key'`,
		Args: oneClusterArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.runBackups(cmd.Context(), args[0], bo)
		},
	}
	bo.s3.AddFlags(cmd.Flags())
	cmd.Flags().StringVarP(&bo.output, "output", "o", "", "Output format: one of (json, yaml, wide)")
	cmd.Flags().BoolVar(&bo.noHeaders, "no-headers", false, "Don't print headers (default print headers)")
	return cmd
}

func (o *Options) runBackups(ctx context.Context, name string, bo *backupsOptions) error {
	switch bo.output {
	case "", "wide", "json", "yaml":
	default:
		return fmt.Errorf("unknown output format %q; use -o json, -o yaml or -o wide, or no -o for a table", bo.output)
	}
	c, err := o.Cluster(ctx, name)
	if err != nil {
		return err
	}
	list, err := o.snapshotListing(ctx, c, &bo.s3)
	if err != nil {
		return err
	}
	switch bo.output {
	case "json", "yaml":
		return printStructured(o.Out, bo.output, list)
	}
	if len(list.Items) == 0 {
		fmt.Fprintf(o.ErrOut, "No snapshots of cluster %s/%s in s3://%s/%s\n", c.Namespace, c.Name, list.Bucket, snapshot.S3Location{Prefix: list.Prefix}.ObjectKey(c.Name+"/"))
		return nil
	}
	return printSnapshotTable(o.Out, list.Items, o.now(), bo.output == "wide", bo.noHeaders, list.Bucket)
}

// printSnapshotTable prints the snapshots as kubectl prints a table.
func printSnapshotTable(w io.Writer, items []Snapshot, now time.Time, wide, noHeaders bool, bucket string) error {
	tw := printers.GetNewTabWriter(w)
	if !noHeaders {
		header := "KEY\tTIME\tAGE\tSIZE\tREVISION\tCHECKSUM"
		if wide {
			header += "\tMODE\tETCD VERSION\tOBJECT"
		}
		fmt.Fprintln(tw, header)
	}
	for _, s := range items {
		fmt.Fprintln(tw, strings.Join(snapshotRow(s, now, wide, bucket), "\t"))
	}
	return tw.Flush()
}

// snapshotRow is the table row of s.
func snapshotRow(s Snapshot, now time.Time, wide bool, bucket string) []string {
	row := []string{
		s.Key,
		s.Time.UTC().Format(time.RFC3339),
		formatSnapshotAge(now, s.Time),
		formatSnapshotSize(s.Size),
		formatRevision(s.Revision),
		s.Checksum,
	}
	if wide {
		version := s.EtcdVersion
		if version == "" {
			version = "<none>"
		}
		mode := s.Mode
		if mode == "" {
			mode = "<unknown>"
		}
		row = append(row, mode, version, "s3://"+bucket+"/"+s.ObjectKey)
	}
	return row
}

// formatSnapshotAge is kubectl's AGE of t.
func formatSnapshotAge(now, t time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t))
}

func formatRevision(n int64) string {
	if n == 0 {
		return "<none>"
	}
	return strconv.FormatInt(n, 10)
}

// formatSnapshotSize prints a byte count with binary units: 512B, 1.5KiB, 20MiB, 1.2GiB.
func formatSnapshotSize(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + "B"
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	f := float64(n) / unit
	for i, u := range units {
		// Round as printed, so 1023.97KiB becomes 1.0MiB rather than 1024KiB.
		digits := 1
		if f >= 9.95 {
			digits = 0
		}
		s := strconv.FormatFloat(f, 'f', digits, 64)
		if v, _ := strconv.ParseFloat(s, 64); v < unit || i == len(units)-1 {
			return s + u
		}
		f /= unit
	}
	return ""
}
