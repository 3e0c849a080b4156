package framework

import (
	"archive/tar"
	"errors"
	"io"
)

// TarEntry is what the tests of the release archives check of one tar entry.
type TarEntry struct {
	Name     string
	Mode     int64
	UID, GID int
}

// ReadTar reads a tar stream: its entries in order and the contents of its regular files by name.
func ReadTar(r io.Reader) ([]TarEntry, map[string][]byte, error) {
	var entries []TarEntry
	files := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return entries, files, nil
		}
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, TarEntry{Name: h.Name, Mode: h.Mode, UID: h.Uid, GID: h.Gid})
		if h.Typeflag == tar.TypeReg {
			if files[h.Name], err = io.ReadAll(tr); err != nil {
				return nil, nil, err
			}
		}
	}
}
