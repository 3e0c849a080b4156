package datadir

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/jobspec"
	"kube-dc.com/etcd-backup/snapshot"
)

// revisionBump is what a restore adds to the snapshot's revision so the restored revision is
// margin above both the snapshot's revision and the highest revision known before the restore.
// A margin of 0 asks for no bump at all.
func revisionBump(snapshot, before int64, margin uint64) uint64 {
	if margin == 0 {
		return 0
	}
	return margin + uint64(max(0, before-snapshot))
}

// readRevisionMarks reads the marks of a restore into dataDir of the snapshots of cluster: the
// data directory and its previous generation (etcd is stopped, so they are at rest) and the
// newest backup's recorded revision in S3.
func readRevisionMarks(ctx context.Context, c *s3.Client, loc jobspec.S3Location, cluster, dataDir string, given int64) (*jobspec.RevisionMarks, error) {
	m := &jobspec.RevisionMarks{Given: given}
	var err error
	if m.Data, err = dataDirRevision(dataDir); err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return m, jobspec.Errorf(jobspec.ExitLocalIO, "the database in %s is locked by another process: etcd still runs on it; stop etcd (scale its StatefulSet to 0) before restoring", dataDir)
		}
		m.DataError = err.Error()
	}
	// The previous generation only raises the mark; unreadable, it is simply not counted.
	m.Previous, _ = dataDirRevision(PreviousDataDir(dataDir))
	if m.BackupKey, m.Backup, err = newestBackupRevision(ctx, c, loc, cluster); err != nil {
		return m, err
	}
	return m, nil
}

// dataDirRevision is the revision etcd starts at on the data directory dir, 0 when dir has no
// database.
func dataDirRevision(dir string) (int64, error) {
	db := filepath.Join(dir, "member", "snap", "db")
	if _, err := os.Stat(db); errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	r, err := readDBRevisions(db)
	return r.current(), err
}

// dbRevisions are the revisions of a bolt database (or snapshot).
type dbRevisions struct {
	// Key is the newest key revision: what etcdutl bumps.
	Key int64
	// Compacted is the compacted revision, above Key when the newest revisions were deletions
	// that compaction removed.
	Compacted int64
}

// current is the revision etcd starts at on the database, as its store restores it.
func (r dbRevisions) current() int64 { return max(r.Key, r.Compacted) }

// readDBRevisions reads the revisions of the bolt database (or snapshot) at path.
func readDBRevisions(path string) (rev dbRevisions, err error) {
	defer func() {
		// bbolt panics on some corrupt pages; a corrupt database simply has no readable revision.
		if r := recover(); r != nil {
			rev, err = dbRevisions{}, fmt.Errorf("corrupt database %s: %v", path, r)
		}
	}()
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: timeoutOpenDB})
	if err != nil {
		return rev, fmt.Errorf("failed to open %s: %w", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("key"))
		if b == nil {
			return fmt.Errorf("%s has no key bucket: not an etcd database", path)
		}
		if k, _ := b.Cursor().Last(); k != nil {
			if len(k) < 8 {
				return fmt.Errorf("%s: malformed revision key %x", path, k)
			}
			rev.Key = int64(binary.BigEndian.Uint64(k[:8]))
		}
		if meta := tx.Bucket([]byte("meta")); meta != nil {
			for _, name := range []string{"scheduledCompactRev", "finishedCompactRev"} {
				if v := meta.Get([]byte(name)); len(v) >= 8 {
					rev.Compacted = max(rev.Compacted, int64(binary.BigEndian.Uint64(v[:8])))
				}
			}
		}
		return nil
	})
	return rev, err
}

// timeoutOpenDB bounds the wait for bbolt's file lock: held, etcd still runs on the database.
const timeoutOpenDB = 2 * time.Second

// newestBackupRevision is the etcd revision recorded in the metadata of the newest snapshot of
// cluster under loc (by the time in its key), and its key; "" and 0 when there is none.
func newestBackupRevision(ctx context.Context, c *s3.Client, loc jobspec.S3Location, cluster string) (string, int64, error) {
	type snap struct {
		objectKey string
		at        int64
	}
	var snaps []snap
	prefix := loc.ObjectKey(cluster) + "/"
	pages := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(loc.Bucket), Prefix: aws.String(prefix)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return "", 0, snapshot.ClassifyS3Error("list the snapshots (to read the newest backup's revision, which the restore moves past) under", loc, prefix, err)
		}
		for _, o := range page.Contents {
			k := aws.ToString(o.Key)
			if _, at, err := v1alpha1.ParseSnapshotKey(cluster+"/"+k[len(prefix):], cluster); err == nil {
				snaps = append(snaps, snap{k, at.UnixNano()})
			}
		}
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].at > snaps[j].at })
	for _, s := range snaps {
		head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(loc.Bucket), Key: aws.String(s.objectKey)})
		if err != nil {
			se := snapshot.ClassifyS3Error("read", loc, s.objectKey, err)
			if jobspec.CodeOf(se) == jobspec.ExitObjectMissing {
				continue // expired since the listing
			}
			return "", 0, se
		}
		rev, err := strconv.ParseInt(head.Metadata[snapshot.MetaEtcdRevision], 10, 64)
		if err != nil {
			continue // not written by a backup of this tool
		}
		return s.objectKey, rev, nil
	}
	return "", 0, nil
}

// pinnedBump is the bump that restores a snapshot at revision snap exactly at pinned (a
// multi-member restore's agreed revision); a pinned revision below the one the rule requires
// (snap + ruleBump) is refused, never used: it would not move past this member's marks.
func pinnedBump(snap int64, ruleBump uint64, pinned int64) (uint64, error) {
	if pinned == 0 {
		return ruleBump, nil
	}
	if need := snap + int64(ruleBump); pinned < need {
		return 0, fmt.Errorf("--restored-revision %d is below %d, the revision this member must be restored at (the snapshot's %d + %d, docs/restore.md \"Revisions\"); stage every member again with --restored-revision of at least %d", pinned, need, snap, ruleBump, need)
	}
	return uint64(pinned - snap), nil
}
