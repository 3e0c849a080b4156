package datadir

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// PreviousSuffix names the kept previous generation of a data directory: <data-dir>.previous.
const PreviousSuffix = ".previous"

// PreviousDataDir is the kept previous generation of dataDir.
func PreviousDataDir(dataDir string) string { return filepath.Clean(dataDir) + PreviousSuffix }

// exchange atomically swaps the directories a and b (renameat2 RENAME_EXCHANGE). On a filesystem
// without it, it falls back to three renames through a temporary name next to a.
func exchange(a, b string) error {
	err := renameat2(a, b, flagExchange)
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EOPNOTSUPP) {
		return err
	}
	tmp := a + ".exchange"
	if err := os.Rename(a, tmp); err != nil {
		return err
	}
	if err := os.Rename(b, a); err != nil {
		_ = os.Rename(tmp, a)
		return err
	}
	return os.Rename(tmp, b)
}

// exists reports whether path exists; other errors than "not exist" are returned.
func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

// syncDir fsyncs a directory, making renames and creations in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// syncTree fsyncs every regular file and directory under root, children before parents.
func syncTree(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, path)
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		serr := f.Sync()
		cerr := f.Close()
		return errors.Join(serr, cerr)
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := syncDir(dirs[i]); err != nil {
			return err
		}
	}
	return nil
}

// renameNoReplace renames a to b, failing when b exists.
func renameNoReplace(a, b string) error {
	err := renameat2(a, b, flagNoReplace)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
		if ok, serr := exists(b); serr != nil || ok {
			return errors.Join(serr, fs.ErrExist)
		}
		return os.Rename(a, b)
	}
	return err
}
