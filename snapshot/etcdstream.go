package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
)

// snapshotStream is an io.Reader over etcd's Maintenance.Snapshot stream. It yields exactly what
// `etcdctl snapshot save` writes: the database bytes followed by etcd's 32-byte SHA-256 of them.
// It hashes everything on the fly and, when the stream ends, checks that it delivered the size
// the first message announced and that etcd's hash matches. Any problem is returned from Read
// instead of io.EOF, so an uploader reading it never completes a bad object.
type snapshotStream struct {
	recv     func(*snapshotMessage) error
	msg      snapshotMessage
	endpoint string

	dbSize  int64 // announced database size, without the hash
	dbRead  int64
	trailer []byte
	whole   hash.Hash // SHA-256 of everything yielded
	dbSum   []byte    // SHA-256 of the database bytes, captured when they are complete
	pending []byte
	done    bool
	err     error
}

// newSnapshotStream reads the stream's first message, which announces the database size, and
// returns the reader positioned at the start. The storage version (etcd >= 3.6, else "") comes
// from the same message.
// recv decodes the next message into its argument (the Blob of the previous one may be reused)
// and returns io.EOF at the end of the stream.
func newSnapshotStream(endpoint string, recv func(*snapshotMessage) error) (*snapshotStream, string, error) {
	s := &snapshotStream{recv: recv, endpoint: endpoint, whole: sha256.New()}
	if err := recv(&s.msg); err != nil {
		return nil, "", errorf(ExitEtcdUnavailable, "failed to open the snapshot stream from etcd %s: %w; check the endpoint, the DS-etcd-certs client certificate and that etcd is healthy", endpoint, err)
	}
	s.dbSize = int64(len(s.msg.Blob)) + int64(s.msg.RemainingBytes)
	if err := s.accept(s.msg.Blob); err != nil {
		return nil, "", err
	}
	return s, s.msg.Version, nil
}

// Size is the object size: the announced database size plus etcd's hash.
func (s *snapshotStream) Size() int64 { return s.dbSize + etcdHashSize }

// SHA256 is the hex SHA-256 of everything read; valid once Read returned io.EOF.
func (s *snapshotStream) SHA256() string { return hex.EncodeToString(s.whole.Sum(nil)) }

func (s *snapshotStream) Read(p []byte) (int, error) {
	for len(s.pending) == 0 {
		if s.err != nil {
			return 0, s.err
		}
		if s.done {
			return 0, io.EOF
		}
		err := s.recv(&s.msg)
		switch {
		case errors.Is(err, io.EOF):
			s.msg.release()
			if err := s.finish(); err != nil {
				s.err = err
				return 0, err
			}
			s.done = true
		case err != nil:
			s.err = errorf(ExitEtcdUnavailable, "snapshot stream from etcd %s broke after %d of %d bytes: %w; check etcd's health and logs", s.endpoint, s.dbRead, s.dbSize, err)
		default:
			if err := s.accept(s.msg.Blob); err != nil {
				s.err = err
			}
		}
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

// accept hashes one received blob, splitting it at the end of the database.
func (s *snapshotStream) accept(blob []byte) error {
	db := blob
	if left := s.dbSize - s.dbRead; int64(len(db)) > left {
		db = db[:left]
	}
	s.whole.Write(db)
	s.dbRead += int64(len(db))
	if s.dbRead == s.dbSize && s.dbSum == nil {
		// Sum leaves the hasher's state alone: this is etcd's hash of the database, and the same
		// hasher goes on over the 32 bytes for the whole-object SHA-256.
		s.dbSum = s.whole.Sum(nil)
	}
	rest := blob[len(db):]
	if len(s.trailer)+len(rest) > etcdHashSize {
		return errorf(ExitIntegrity, "snapshot stream from etcd %s sent more bytes than the %d it announced; the stream is corrupt, retry", s.endpoint, s.dbSize)
	}
	s.trailer = append(s.trailer, rest...)
	s.whole.Write(rest)
	s.pending = blob
	return nil
}

// finish runs the end-of-stream checks.
func (s *snapshotStream) finish() error {
	if s.dbRead != s.dbSize {
		return errorf(ExitIntegrity, "snapshot stream from etcd %s ended after %d of %d bytes; the snapshot is truncated, retry", s.endpoint, s.dbRead, s.dbSize)
	}
	if len(s.trailer) != etcdHashSize {
		return errorf(ExitIntegrity, "snapshot stream from etcd %s ended without etcd's %d-byte hash (got %d bytes); the snapshot is truncated, retry", s.endpoint, etcdHashSize, len(s.trailer))
	}
	if !bytes.Equal(s.dbSum, s.trailer) {
		return errorf(ExitIntegrity, "snapshot stream from etcd %s does not match etcd's own hash (computed %x, etcd sent %x); the stream is corrupt, retry", s.endpoint, s.dbSum, s.trailer)
	}
	return nil
}
