package datadir

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/types"
	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.etcd.io/etcd/server/v3/storage/backend"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.uber.org/zap"

	"kube-dc.com/etcd-backup/api/v1alpha1"
	"kube-dc.com/etcd-backup/jobspec"
	"kube-dc.com/etcd-backup/snapshot"
)

// stagingPrefix names the staging directories next to the data directory.
const stagingPrefix = ".kdc-restore-"

// RestoreOptions configure Restore: the restore subcommand's arguments, the credentials and
// the logger.
type RestoreOptions struct {
	jobspec.Restore
	Credentials snapshot.Credentials
	Logger      *slog.Logger
}

func (o *RestoreOptions) defaults() {
	if o.Member.DataDir == "" {
		o.Member.DataDir = v1alpha1.EtcdDataDir
	}
	o.Member.DataDir = filepath.Clean(o.Member.DataDir)
	if o.Member.Name == "" {
		o.Member.Name = jobspec.DefaultMemberName
	}
	if len(o.Member.PeerURLs) == 0 {
		o.Member.PeerURLs = []string{jobspec.DefaultPeerURL}
	}
	if o.Member.InitialCluster == "" {
		o.Member.InitialCluster = o.Member.Name + "=" + o.Member.PeerURLs[0]
	}
	if o.Member.ClusterToken == "" {
		o.Member.ClusterToken = jobspec.DefaultClusterToken
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func (o *RestoreOptions) validate() error {
	if err := snapshot.CheckKey(o.Key, o.Cluster); err != nil {
		return err
	}
	if err := o.Location.Validate(); err != nil {
		return err
	}
	if !filepath.IsAbs(o.Member.DataDir) || o.Member.DataDir == "/" {
		return jobspec.Errorf(jobspec.ExitUsage, "--data-dir %q must be an absolute path below /", o.Member.DataDir)
	}
	if _, err := types.NewURLs(o.Member.PeerURLs); err != nil {
		return jobspec.Errorf(jobspec.ExitUsage, "--initial-advertise-peer-urls %q: %w", strings.Join(o.Member.PeerURLs, ","), err)
	}
	if _, err := types.NewURLsMap(o.Member.InitialCluster); err != nil {
		return jobspec.Errorf(jobspec.ExitUsage, "--initial-cluster %q: %w", o.Member.InitialCluster, err)
	}
	if _, err := parseTargetVersion(o.TargetVersion); err != nil {
		return jobspec.Errorf(jobspec.ExitUsage, "--target-version: %w", err)
	}
	if o.MinRevision < 0 {
		return jobspec.Errorf(jobspec.ExitUsage, "--min-revision %d must not be negative", o.MinRevision)
	}
	if o.RestoredRevision < 0 || (o.RestoredRevision > 0 && o.BumpRevision == 0) {
		return jobspec.Errorf(jobspec.ExitUsage, "--restored-revision %d needs a positive value and --bump-revision > 0 (it sets the bumped revision)", o.RestoredRevision)
	}
	if o.MarkCompacted != (o.BumpRevision > 0) {
		return jobspec.Errorf(jobspec.ExitUsage, "--bump-revision > 0 and --mark-compacted go together (etcdutl bumps only a revision it marks compacted); use both, or --bump-revision=0 --mark-compacted=false")
	}
	return nil
}

// Restore downloads and checks a snapshot, restores it with etcdutl into a staging directory
// next to DataDir, fsyncs it and swaps it in atomically, keeping the replaced data directory as
// DataDir.previous (one generation). Any failure before the swap leaves DataDir and its previous
// generation exactly as they were. etcd must be stopped.
func Restore(ctx context.Context, o RestoreOptions) (*jobspec.Result, error) {
	res, err := restore(ctx, o)
	if jobspec.CodeOf(err) == jobspec.ExitDiskFull && res != nil && res.Size > 0 {
		err = jobspec.Errorf(jobspec.ExitDiskFull, "%w; %s", err, restoreSpaceHint(filepath.Dir(res.DataDir), res.Size))
	}
	return res, err
}

// restoreSpaceHint says how much free space a restore of a snapshot of size bytes needs next to
// the data directory, and how much parent's volume has (after the failed restore cleaned up).
func restoreSpaceHint(parent string, size int64) string {
	free, err := pathFree(parent)
	if err != nil {
		return fmt.Sprintf("a restore of this snapshot needs about %s free", mib(restoreSpaceNeeded(size)))
	}
	return fmt.Sprintf("a restore of this snapshot needs about %s free next to the data directory, besides the data directory and its previous generation: the snapshot's %s twice (the download and etcdutl's copy) and %s of etcd's preallocated WAL segments; %s is free",
		mib(restoreSpaceNeeded(size)), mib(size), mib(restoreWALSpace), mib(free))
}

// restoreWALSpace is what etcdutl's new WAL takes: its first segment and the next one, both
// preallocated.
var restoreWALSpace = 2 * int64(wal.SegmentSizeBytes)

// restoreSpaceNeeded is the free space a restore of a snapshot of size bytes needs: the download,
// etcdutl's copy of it, and the WAL.
func restoreSpaceNeeded(size int64) int64 { return 2*size + restoreWALSpace }

// mib formats n bytes in MiB.
func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

// restore is Restore without the space hint of a full volume.
func restore(ctx context.Context, o RestoreOptions) (*jobspec.Result, error) {
	start := time.Now()
	o.defaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	res := &jobspec.Result{Command: jobspec.CommandRestore, Key: o.Key, ObjectKey: o.Location.ObjectKey(o.Key), Bucket: o.Location.Bucket, DataDir: o.Member.DataDir}
	log := o.Logger.With("objectKey", res.ObjectKey, "bucket", o.Location.Bucket, "dataDir", o.Member.DataDir)
	parent := filepath.Dir(o.Member.DataDir)

	if _, err := os.Stat(parent); err != nil {
		return res, snapshot.LocalIOError("open the data volume", parent, err)
	}
	removeStaleStaging(parent, log)
	if err := clearStaged(o.Member.DataDir, log); err != nil {
		return res, err
	}

	c := snapshot.NewS3Client(o.Location, o.Credentials)
	// The marks need no part of the download: read them while it runs.
	cluster, _, _ := v1alpha1.ParseSnapshotKey(o.Key, "")
	marksc := make(chan error, 1)
	go func() {
		var err error
		res.Marks, err = readRevisionMarks(ctx, c, o.Location, cluster, o.Member.DataDir, o.MinRevision)
		marksc <- err
	}()
	marksRead := sync.OnceValue(func() error { return <-marksc })
	defer marksRead() // res is the caller's once restore returns
	info, body, err := snapshot.OpenObject(ctx, c, o.Location, res.ObjectKey)
	if err != nil {
		return res, err
	}
	defer body.Close()
	res.Size, res.S3Checksum, res.EtcdVersion = info.Size, info.ChecksumState(), info.EtcdVersion

	staging, err := os.MkdirTemp(parent, stagingPrefix)
	if err != nil {
		return res, snapshot.LocalIOError("create a staging directory in", parent, err)
	}
	defer func() {
		if err := os.RemoveAll(staging); err != nil {
			log.Warn("Failed to remove the staging directory", "staging", staging, "err", err)
		}
	}()

	// 1. Download, checking everything on the fly.
	snapPath := filepath.Join(staging, "snapshot.db")
	f, err := os.OpenFile(snapPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return res, snapshot.LocalIOError("create", snapPath, err)
	}
	if err := preallocate(f, info.Size); err != nil {
		f.Close()
		return res, snapshot.LocalIOError("allocate space for the snapshot in", snapPath, err)
	}
	sum, err := snapshot.Download(o.Location, info, body, f)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = snapshot.LocalIOError("write", snapPath, cerr)
	}
	merr := marksRead()
	if err != nil {
		return res, err
	}
	res.SHA256 = sum
	log.Info("Downloaded and verified snapshot", "size", info.Size, "sha256", sum, "s3Checksum", res.S3Checksum, "seconds", time.Since(start).Seconds())
	if merr != nil {
		return res, merr
	}
	snapRev, err := readDBRevisions(snapPath)
	if err != nil {
		return res, jobspec.Errorf(jobspec.ExitIntegrity, "s3://%s/%s passed its checksums but is not a readable etcd database: %w; restore another snapshot (the data directory is unchanged)", o.Location.Bucket, res.ObjectKey, err)
	}
	if res.Marks.DataError != "" {
		log.Warn("The data directory's revision is unreadable; the restore moves past the other marks", "err", res.Marks.DataError)
	}
	// etcdutl bumps the newest key revision; a compacted revision above it must be passed too.
	res.Revision, res.RevisionBefore = snapRev.Key, res.Marks.Highest()
	bump := revisionBump(res.Revision, max(res.RevisionBefore, snapRev.Compacted), o.BumpRevision)
	if bump, err = pinnedBump(res.Revision, bump, o.RestoredRevision); err != nil {
		return res, jobspec.Errorf(jobspec.ExitUsage, "restore of s3://%s/%s into %s: %w (the data directory is unchanged)", o.Location.Bucket, res.ObjectKey, o.Member.DataDir, err)
	}
	res.BumpRevision = int64(bump)
	log.Info("Revision bump", "snapshotRevision", res.Revision, "revisionBefore", res.RevisionBefore, "bump", bump, "marks", res.Marks)

	// 2. etcdutl snapshot restore. Its own hash check would read the file a third time for the
	// check download just made over exactly these bytes (see etcdutlRestore).
	restored := filepath.Join(staging, "data")
	if err := etcdutlRestore(o, bump, snapPath, restored); err != nil {
		if jobspec.CodeOf(err) == jobspec.ExitDiskFull {
			return res, snapshot.LocalIOError("restore the snapshot into", restored, err)
		}
		return res, jobspec.Errorf(jobspec.ExitIntegrity, "etcdutl could not restore s3://%s/%s: %w; the object is not a usable etcd snapshot, restore another one (the data directory is unchanged)", o.Location.Bucket, res.ObjectKey, err)
	}
	// etcdutl has its own copy now. Removing the download overlaps the steps up to the swap,
	// which waits for it.
	snapRemoved := removeInBackground(snapPath)
	defer snapRemoved() // before the staging directory's removal (defers run last first)
	if target, _ := parseTargetVersion(o.TargetVersion); target != nil {
		if err := migrateStorage(zap.NewNop(), restored, *target); err != nil {
			if jobspec.CodeOf(err) == jobspec.ExitDiskFull {
				return res, snapshot.LocalIOError("migrate", restored, err)
			}
			return res, jobspec.Errorf(jobspec.ExitIntegrity, "s3://%s/%s cannot be prepared for etcd %s: %w; restore a snapshot taken by etcd %s or older (the data directory is unchanged)", o.Location.Bucket, res.ObjectKey, o.TargetVersion, err, o.TargetVersion)
		}
	}
	restoredRev, err := readDBRevisions(filepath.Join(restored, "member", "snap", "db"))
	if err != nil {
		return res, jobspec.Errorf(jobspec.ExitIntegrity, "failed to read the restored revision of s3://%s/%s: %w", o.Location.Bucket, res.ObjectKey, err)
	}
	res.RestoredRevision = restoredRev.current()
	if want := res.Revision + res.BumpRevision; bump > 0 && (res.RestoredRevision != want || res.RestoredRevision <= res.RevisionBefore) {
		return res, jobspec.Errorf(jobspec.ExitIntegrity, "etcdutl restored s3://%s/%s at revision %d, want %d (the snapshot's %d + %d, above %d); the data directory is unchanged", o.Location.Bucket, res.ObjectKey, res.RestoredRevision, want, res.Revision, res.BumpRevision, res.RevisionBefore)
	}

	log.Info("Restored the database with etcdutl", "seconds", time.Since(start).Seconds())

	// 3. Durable before it becomes visible.
	if err := os.Chmod(restored, 0o700); err != nil {
		return res, snapshot.LocalIOError("chmod", restored, err)
	}
	if err := syncTree(restored); err != nil {
		return res, snapshot.LocalIOError("fsync", restored, err)
	}

	if err := snapRemoved(); err != nil {
		return res, snapshot.LocalIOError("remove", snapPath, err)
	}
	log.Info("Synced the restored data", "seconds", time.Since(start).Seconds())

	// 4. Swap, or stop once staged for a multi-member restore's swap.
	if o.StageOnly {
		if err := commitStaged(staging, restored, o.Member, res); err != nil {
			return res, err
		}
		log.Info("Staged the restore; swap it in with `swap`", "stagedDir", res.StagedDir, "revision", res.Revision, "revisionBefore", res.RevisionBefore, "bumpRevision", res.BumpRevision, "restoredRevision", res.RestoredRevision)
		res.DurationSeconds = time.Since(start).Seconds()
		return res, nil
	}
	prev, err := swapIn(restored, o.Member.DataDir, staging)
	if err != nil {
		return res, err
	}
	res.PreviousDataDir, res.State = prev, jobspec.StateSwapped
	log.Info("Restored snapshot", "revision", res.Revision, "revisionBefore", res.RevisionBefore, "bumpRevision", res.BumpRevision, "restoredRevision", res.RestoredRevision, "previousDataDir", prev)
	res.DurationSeconds = time.Since(start).Seconds()
	return res, nil
}

// removeInBackground removes path in a goroutine; the returned function waits for it and returns
// its error (every call, the same).
func removeInBackground(path string) func() error {
	done := make(chan error, 1)
	go func() { done <- os.Remove(path) }()
	return sync.OnceValue(func() error { return <-done })
}

// preallocate reserves size bytes for f up front (fallocate), so a volume too small for the
// snapshot fails here, before anything is downloaded. A filesystem without fallocate is not an
// error; only a full volume is.
func preallocate(f *os.File, size int64) error {
	err := fallocate(f, size)
	if err != nil && jobspec.CodeOf(err) == jobspec.ExitDiskFull {
		return err
	}
	return nil
}

// swapIn makes restored the data directory. The replaced data directory becomes the previous
// generation and an older previous generation is dropped, in an order where each step is one
// rename and a crash at any point leaves dataDir either the old or the new complete directory.
func swapIn(restored, dataDir, staging string) (string, error) {
	had, err := exists(dataDir)
	if err != nil {
		return "", snapshot.LocalIOError("read", dataDir, err)
	}
	if !had {
		if err := renameNoReplace(restored, dataDir); err != nil {
			return "", snapshot.LocalIOError("move the restored data into", dataDir, err)
		}
		if err := syncDir(filepath.Dir(dataDir)); err != nil {
			return "", snapshot.LocalIOError("sync", filepath.Dir(dataDir), err)
		}
		return "", nil
	}
	if err := exchange(restored, dataDir); err != nil {
		return "", snapshot.LocalIOError("swap the restored data into", dataDir, err)
	}
	// restored now holds the old data directory.
	return keepPrevious(restored, dataDir, filepath.Join(staging, olderPrevious))
}

// olderPrevious is where a swap moves the generation it drops, inside its staging directory.
const olderPrevious = "older-previous"

// keepPrevious makes old, the data directory a swap just replaced, the previous generation of
// dataDir, moving an older previous generation to trash (which the caller removes).
func keepPrevious(old, dataDir, trash string) (string, error) {
	prev := PreviousDataDir(dataDir)
	hadPrev, err := exists(prev)
	if err != nil {
		return "", snapshot.LocalIOError("read", prev, err)
	}
	if hadPrev {
		if err := os.Rename(prev, trash); err != nil {
			return "", snapshot.LocalIOError("drop the older previous generation", prev, err)
		}
	}
	if err := os.Rename(old, prev); err != nil {
		return "", snapshot.LocalIOError("keep the replaced data directory as", prev, err)
	}
	if err := syncDir(filepath.Dir(dataDir)); err != nil {
		return "", snapshot.LocalIOError("sync", filepath.Dir(dataDir), err)
	}
	return prev, nil
}

// removeStaleStaging deletes staging directories a killed restore left next to the data
// directory; they only hold downloads and half-restored data.
func removeStaleStaging(parent string, log *slog.Logger) {
	stale, _ := filepath.Glob(filepath.Join(parent, stagingPrefix+"*"))
	for _, s := range stale {
		log.Info("Removing a stale staging directory", "staging", s)
		if err := os.RemoveAll(s); err != nil {
			log.Warn("Failed to remove a stale staging directory", "staging", s, "err", err)
		}
	}
}

// etcdutlRestore runs etcdutl's snapshot restore (as a library) into out.
//
// SkipHashCheck is safe here and only here: snapPath was written by download, which passed
// every byte it wrote through the SHA-256 that it compared with etcd's appended hash (and the
// S3 checksum, the sha256 tag and the size) before returning success, and nothing else writes
// the file. etcdutl's check would hash the same bytes again (from the page cache: it reads its
// copy right after writing it). etcdutl still cuts the 32-byte hash off the database, because
// the file size says it has one (newObjectInfo requires that).
func etcdutlRestore(o RestoreOptions, bump uint64, snapPath, out string) error {
	lg := zap.NewNop()
	return etcdutl.NewV3(lg).Restore(etcdutl.RestoreConfig{
		SnapshotPath:        snapPath,
		Name:                o.Member.Name,
		OutputDataDir:       out,
		PeerURLs:            o.Member.PeerURLs,
		InitialCluster:      o.Member.InitialCluster,
		InitialClusterToken: o.Member.ClusterToken,
		SkipHashCheck:       true, // download verified etcd's hash over exactly this file's bytes
		RevisionBump:        bump,
		MarkCompacted:       o.MarkCompacted,
		// etcdutl's own default (its --initial-memory-map-size): left at 0, each bbolt open maps
		// the database at the file's size and remaps it, populating every page again, as the
		// restore grows the file.
		InitialMmapSize: backend.InitialMmapSize,
	})
}
