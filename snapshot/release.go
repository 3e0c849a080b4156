package snapshot

import (
	"os"
	"sync"
	"time"
)

// releaseChunk is how much of the download releaseCopied frees at a time.
const releaseChunk = 4 << 20

// releasePoll is how often releaseCopied looks at the copy's progress. etcdutl copies 200 MB in
// 50-400 ms here, so a poll frees at most a few chunks.
const releasePoll = time.Millisecond

// punchesSafely reports whether f is on a local filesystem whose copy_file_range either copies
// through the page cache in order (ext4, tmpfs) or shares the blocks (xfs, btrfs): on those, a
// byte of the source below the destination's size has been read. A network filesystem's
// server-side copy gives no such guarantee, so the download is kept whole there.
func punchesSafely(f *os.File) bool {
	_, punchable, err := fileVolume(f)
	return err == nil && punchable
}

// releaseCopied frees the downloaded snapshot src (its blocks on the data volume and its page
// cache) behind etcdutl as etcdutl copies it into dst, its database, until the returned function
// is called; that function waits for it to have stopped.
//
// etcdutl reads its snapshot file once, from the start to the end, and writes each piece into dst
// after reading it (io.Copy: copy_file_range, or read and write; afterwards it truncates dst by
// the 32 bytes of etcd's hash and reads only dst). So every byte of src below dst's current size
// has been read, and punching it out of src cannot change what etcdutl copies. Without this, the
// restore holds the snapshot twice until etcdutl is done (twice its size in blocks on the data
// volume and in page cache); with it, the copy's new pages and blocks are largely the ones the
// download held a moment before. Anything that stops it (no hole punching on this filesystem, an
// error) only leaves the rest of the download in place, to be removed after etcdutl as before.
func releaseCopied(src *os.File, size int64, dst string) func() {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		if !punchesSafely(src) {
			return
		}
		tick := time.NewTicker(releasePoll)
		defer tick.Stop()
		var out *os.File
		defer func() {
			if out != nil {
				out.Close()
			}
		}()
		limit := size &^ (releaseChunk - 1)
		for released := int64(0); released < limit; {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if out == nil {
				f, err := os.Open(dst)
				if err != nil {
					continue // etcdutl has not created it yet
				}
				out = f
			}
			fi, err := out.Stat()
			if err != nil {
				return
			}
			copied := min(fi.Size(), size) &^ (releaseChunk - 1)
			if copied <= released {
				continue
			}
			if err := punchHole(src, released, copied-released); err != nil {
				return
			}
			released = copied
		}
	}()
	return sync.OnceFunc(func() {
		close(stop)
		<-done
	})
}
