package snapshot

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// TestReleaseCopied copies a file the way etcdutl does (in order, each piece written after it is
// read) with releaseCopied running, and checks at every step that the source is freed exactly up
// to what the copy has written and never beyond, and that the copy is intact.
func TestReleaseCopied(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	const size = 5*releaseChunk + 12345
	want := make([]byte, size)
	for i := range want {
		want[i] = byte(i%251) + 1 // no zero bytes: a hole reads as zeros
	}
	srcPath, src := writeDownload(t, dir, want)
	if !punchesSafely(src) {
		t.Skipf("the test directory %s is not on ext4, xfs, btrfs or tmpfs; releaseCopied keeps the download whole there", dir)
	}
	dstPath := filepath.Join(dir, "data", "member", "snap", "db")
	stop := releaseCopied(src, size, dstPath)
	defer stop()

	if err := os.MkdirAll(filepath.Dir(dstPath), 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(dstPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	in, err := os.Open(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()

	// A third of a chunk at a time, so the copy's size is often between chunk boundaries.
	const step = releaseChunk/3 + 1
	for copied := int64(0); copied < size; {
		n, err := io.CopyN(out, in, min(step, size-copied))
		if err != nil {
			t.Fatal(err)
		}
		copied += n
		freed := copied &^ (releaseChunk - 1)
		g.Eventually(func() int64 { return zeroPrefix(t, srcPath) }).
			WithTimeout(10*time.Second).WithPolling(releasePoll).
			Should(Equal(freed), "after copying %d bytes, the source should be a hole up to the last chunk boundary below it", copied)
		rest := readAt(t, srcPath, freed, size-freed)
		if !bytes.Equal(rest, want[freed:]) {
			t.Fatalf("after copying %d bytes, the source changed beyond the first %d bytes", copied, freed)
		}
	}
	stop()

	got, err := os.ReadFile(dstPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the copy differs from the original")
	}
	fi, err := os.Stat(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != size {
		t.Fatalf("the source's size changed to %d, want %d: only holes are punched, nothing is truncated", fi.Size(), size)
	}
}

// TestReleaseCopiedStops checks that the release ends when it is told to, even if the
// destination never appears (etcdutl failed before copying), and leaves the source whole.
func TestReleaseCopiedStops(t *testing.T) {
	dir := t.TempDir()
	want := bytes.Repeat([]byte{7}, 2*releaseChunk)
	srcPath, src := writeDownload(t, dir, want)
	stop := releaseCopied(src, int64(len(want)), filepath.Join(dir, "never", "db"))
	stop()
	stop() // a second call returns too
	got, err := os.ReadFile(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the source changed although nothing was copied")
	}
}

// writeDownload writes data as dir/snapshot.db and opens it for releaseCopied.
func writeDownload(t *testing.T, dir string, data []byte) (string, *os.File) {
	t.Helper()
	path := filepath.Join(dir, "snapshot.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return path, f
}

// zeroPrefix is how many bytes at the start of the file at path read as zeros, in whole chunks.
func zeroPrefix(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, releaseChunk)
	var n int64
	for {
		m, err := io.ReadFull(f, buf)
		if m < len(buf) || !allZero(buf) {
			return n
		}
		n += int64(m)
		if err != nil {
			return n
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func readAt(t *testing.T, path string, off, n int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}
