package snapshot

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// etcdHashSize is the size of the SHA-256 etcd appends to a snapshot stream, over the database
// bytes before it. A snapshot file (what `etcdctl snapshot save` writes and what we store) is the
// database followed by this hash.
const etcdHashSize = sha256.Size

// hasEtcdHash mirrors etcdutl's test for a snapshot with an appended hash: the database is a
// whole number of 512-byte blocks, so the file size modulo 512 is the hash size.
func hasEtcdHash(size int64) bool { return size%512 == etcdHashSize }

// s3Checksum is the parsed x-amz-checksum-sha256 of an object: a full-object SHA-256 (single
// PutObject) or a composite one (multipart: SHA-256 of the concatenated part SHA-256s, "-N").
type s3Checksum struct {
	// Digest is the base64 digest without the part-count suffix.
	Digest string
	// Parts is N of a composite checksum; 0 for a full-object checksum.
	Parts int
}

// parseS3Checksum parses an x-amz-checksum-sha256 value; ok is false for "".
func parseS3Checksum(v string) (s3Checksum, bool, error) {
	if v == "" {
		return s3Checksum{}, false, nil
	}
	digest, parts, composite := strings.Cut(v, "-")
	c := s3Checksum{Digest: digest}
	if composite {
		n, err := strconv.Atoi(parts)
		if err != nil || n < 1 {
			return c, false, fmt.Errorf("malformed composite checksum %q", v)
		}
		c.Parts = n
	}
	raw, err := base64.StdEncoding.DecodeString(digest)
	if err != nil || len(raw) != sha256.Size {
		return c, false, fmt.Errorf("malformed SHA-256 checksum %q", v)
	}
	return c, true, nil
}

func (c s3Checksum) String() string {
	if c.Parts == 0 {
		return c.Digest
	}
	return c.Digest + "-" + strconv.Itoa(c.Parts)
}

// compositeOf is the composite checksum of parts given by their base64 SHA-256s.
func compositeOf(partSums []string) (s3Checksum, error) {
	h := sha256.New()
	for i, p := range partSums {
		raw, err := base64.StdEncoding.DecodeString(p)
		if err != nil || len(raw) != sha256.Size {
			return s3Checksum{}, fmt.Errorf("part %d has a malformed SHA-256 checksum %q", i+1, p)
		}
		h.Write(raw)
	}
	return s3Checksum{Digest: base64.StdEncoding.EncodeToString(h.Sum(nil)), Parts: len(partSums)}, nil
}

// partHasher hashes a stream in parts of a fixed size, to recompute a composite checksum.
type partHasher struct {
	partSize int64
	cur      hash.Hash
	n        int64
	sums     []string
}

func newPartHasher(partSize int64) *partHasher {
	return &partHasher{partSize: partSize, cur: sha256.New()}
}

func (p *partHasher) Write(b []byte) (int, error) {
	written := len(b)
	for len(b) > 0 {
		chunk := b
		if left := p.partSize - p.n; int64(len(chunk)) > left {
			chunk = chunk[:left]
		}
		p.cur.Write(chunk)
		p.n += int64(len(chunk))
		b = b[len(chunk):]
		if p.n == p.partSize {
			p.flush()
		}
	}
	return written, nil
}

func (p *partHasher) flush() {
	p.sums = append(p.sums, base64.StdEncoding.EncodeToString(p.cur.Sum(nil)))
	p.cur.Reset()
	p.n = 0
}

// composite finishes the stream and returns its composite checksum.
func (p *partHasher) composite() (s3Checksum, error) {
	if p.n > 0 {
		p.flush()
	}
	return compositeOf(p.sums)
}
