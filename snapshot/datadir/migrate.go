package datadir

import (
	"fmt"
	"strings"

	"github.com/coreos/go-semver/semver"
	"go.etcd.io/etcd/server/v3/storage/backend"
	"go.etcd.io/etcd/server/v3/storage/datadir"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.uber.org/zap"
)

// parseTargetVersion turns "3.6", "v3.6" or "v3.6.16" into the storage version 3.6.0; "" is
// nil (no migration).
func parseTargetVersion(v string) (*semver.Version, error) {
	v = strings.TrimPrefix(strings.TrimSpace(v), "v")
	if v == "" {
		return nil, nil
	}
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return nil, fmt.Errorf("etcd version %q is not X.Y or X.Y.Z", v)
	}
	sv, err := semver.NewVersion(parts[0] + "." + parts[1] + ".0")
	if err != nil {
		return nil, fmt.Errorf("etcd version %q: %w", v, err)
	}
	if sv.LessThan(semver.Version{Major: 3, Minor: 5}) {
		return nil, fmt.Errorf("etcd version %q is older than 3.5", v)
	}
	return sv, nil
}

// migrateStorage is `etcdutl migrate --target-version` for a freshly restored, single-member
// data directory: it sets the storage schema to target, and lowers a recorded cluster version
// above target to target, so an older etcd minor version than the one that took the snapshot can
// start on it (etcd v3.6 refuses a v3.7 storage version and a v3.7 cluster version; v3.5 reads
// neither). A restored member is a new one-member cluster, so there is no running cluster whose
// version this could contradict; the server sets the cluster version again once it runs.
func migrateStorage(lg *zap.Logger, dataDir string, target semver.Version) error {
	be := backend.NewDefaultBackend(lg, datadir.ToBackendFileName(dataDir))
	defer be.Close()
	mb := schema.NewMembershipBackend(lg, be)
	if cv := mb.ClusterVersionFromBackend(); cv != nil && target.LessThan(*cv) {
		mb.MustSaveClusterVersionToBackend(&target)
		be.ForceCommit()
	}
	current, err := schema.DetectSchemaVersion(lg, be.ReadTx())
	if err != nil {
		return fmt.Errorf("failed to detect the storage version: %w", err)
	}
	if current == target {
		return nil
	}
	w, err := wal.OpenForRead(lg, datadir.ToWALDir(dataDir), &walpb.Snapshot{})
	if err != nil {
		return fmt.Errorf("failed to open the WAL: %w", err)
	}
	walVersion, err := wal.ReadWALVersion(w)
	w.Close()
	if err != nil {
		return fmt.Errorf("failed to read the WAL: %w", err)
	}
	if err := schema.Migrate(lg, be.BatchTx(), walVersion, target); err != nil {
		return fmt.Errorf("failed to migrate the storage version from %s to %s: %w", current, target, err)
	}
	be.ForceCommit()
	return nil
}
