package datadir

import (
	"os"

	"golang.org/x/sys/unix"
)

// The Linux calls of the data directory, behind small helpers so the package also builds on
// other systems (fs_other.go).

const (
	flagExchange  = unix.RENAME_EXCHANGE
	flagNoReplace = unix.RENAME_NOREPLACE
)

func renameat2(a, b string, flags uint) error {
	return unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, flags)
}

// fallocate reserves size bytes for f.
func fallocate(f *os.File, size int64) error { return unix.Fallocate(int(f.Fd()), 0, 0, size) }

// pathFree is the free space of the filesystem holding path.
func pathFree(path string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// inode is the inode number of path, 0 when it does not exist; renames keep it.
func inode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		if err == unix.ENOENT {
			return 0, nil
		}
		return 0, &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	return st.Ino, nil
}
