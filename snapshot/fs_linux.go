package snapshot

import (
	"os"

	"golang.org/x/sys/unix"
)

// The Linux calls of the data path, behind small helpers so the package (and kubectl-kdc, which
// imports it for S3) also builds on other systems (fs_other.go).

const (
	flagExchange  = unix.RENAME_EXCHANGE
	flagNoReplace = unix.RENAME_NOREPLACE
)

func renameat2(a, b string, flags uint) error {
	return unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, flags)
}

// fallocate reserves size bytes for f.
func fallocate(f *os.File, size int64) error { return unix.Fallocate(int(f.Fd()), 0, 0, size) }

// punchHole frees n bytes of f at off, keeping its size.
func punchHole(f *os.File, off, n int64) error {
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}

// fileVolume is the free space of f's filesystem and whether punchHole is safe on it.
func fileVolume(f *os.File) (free int64, punchable bool, err error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return 0, false, err
	}
	return int64(st.Bavail) * st.Bsize, punchableFS(st.Type), nil
}

// pathVolume is fileVolume of the filesystem holding path.
func pathVolume(path string) (free int64, punchable bool, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, false, err
	}
	return int64(st.Bavail) * st.Bsize, punchableFS(st.Type), nil
}

// punchableFS reports whether a filesystem of statfs type t is one punchesSafely accepts.
func punchableFS(t int64) bool {
	switch t {
	case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC, unix.BTRFS_SUPER_MAGIC, unix.TMPFS_MAGIC:
		return true
	}
	return false
}
