//go:build !linux

package datadir

import (
	"os"

	"golang.org/x/sys/unix"
)

// Elsewhere the data path's Linux calls are unsupported and the callers take their fallbacks:
// three renames instead of one exchange, no preallocation; the package's tests build anywhere.

const (
	flagExchange  = 0
	flagNoReplace = 0
)

func renameat2(a, b string, flags uint) error { return unix.ENOSYS }

func fallocate(*os.File, int64) error { return unix.ENOTSUP }

func pathFree(path string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
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
	return uint64(st.Ino), nil
}
