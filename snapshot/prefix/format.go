package prefix

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// The prefix snapshot form (docs/jobs.md, "Prefix snapshot form"):
//
//	Magic
//	uvarint n, Header as JSON (n bytes)
//	{ uvarint n > 0, one mvccpb.KeyValue in protobuf wire form (n bytes) }   in key order
//	uvarint 0
//	uvarint n, Trailer as JSON (n bytes)
//	SHA-256 of every byte above (32 bytes)
const (
	// Magic opens every prefix snapshot; a text line, so `head -c 200` shows what the file is.
	Magic = "kdc-etcd-prefix-snapshot v1\n"
	// FormatV1 is Header.Format of this version.
	FormatV1 = "kdc-etcd-prefix/v1"
	// maxRecord bounds one record (etcd's request limit is far lower), so a corrupt length
	// cannot make a reader allocate without bound.
	maxRecord = 64 << 20
	// maxJSON bounds the header and the trailer.
	maxJSON = 64 << 20
)

// Purposes of a prefix snapshot (Header.Purpose).
const (
	// PurposeBackup is a scheduled or on-demand backup, stored under C/C-<ts>.db.
	PurposeBackup = "backup"
	// PurposePreRestore is the prefix as it was before a restore's first write.
	PurposePreRestore = "pre-restore"
)

// Header describes a prefix snapshot; it precedes the records.
type Header struct {
	Format string `json:"format"`
	// Prefix is the tenant's etcd prefix without the trailing slash; the snapshot holds exactly
	// the keys under Prefix + "/".
	Prefix string `json:"prefix"`
	// Cluster is the tenant cluster C.
	Cluster string `json:"cluster"`
	// Revision is the etcd revision every record was read at.
	Revision int64 `json:"revision"`
	// EtcdVersion is the server version of the member it was read from.
	EtcdVersion string `json:"etcdVersion"`
	// ClusterID and MemberID (hex) of the etcd it was read from.
	ClusterID string    `json:"clusterID"`
	MemberID  string    `json:"memberID"`
	CreatedAt time.Time `json:"createdAt"`
	// Purpose is PurposeBackup or PurposePreRestore.
	Purpose string `json:"purpose"`
	// RestoreOf is, for a pre-restore copy, the snapshot key the restore converges to.
	RestoreOf string `json:"restoreOf,omitempty"`
	// Attempt is, for a pre-restore copy, the restore attempt it belongs to.
	Attempt string `json:"attempt,omitempty"`
}

// Trailer follows the records.
type Trailer struct {
	// Keys is the number of records.
	Keys int64 `json:"keys"`
	// KeyBytes and ValueBytes are the sums of the keys' and the values' lengths.
	KeyBytes   int64 `json:"keyBytes"`
	ValueBytes int64 `json:"valueBytes"`
	// Leases are the leases attached to records, in ID order.
	Leases []Lease `json:"leases"`
}

// Lease is a lease some records carried, as etcd reported it when the backup had read the keys.
type Lease struct {
	// ID is the lease ID in hex, as etcdctl prints it.
	ID LeaseID `json:"id"`
	// GrantedTTL is the TTL the lease was granted with, in seconds.
	GrantedTTL int64 `json:"grantedTTL"`
	// TTL is what was left of it, in seconds; -1 when the lease had already expired (its keys
	// are then left out of a restore, as etcd deleted them).
	TTL int64 `json:"ttl"`
	// Keys is how many records carry it.
	Keys int64 `json:"keys"`
}

// LeaseID is an etcd lease ID, written in hex in JSON.
type LeaseID int64

func (id LeaseID) String() string { return strconv.FormatInt(int64(id), 16) }

func (id LeaseID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

func (id *LeaseID) UnmarshalText(b []byte) error {
	v, err := strconv.ParseInt(string(b), 16, 64)
	*id = LeaseID(v)
	return err
}

// Record is one key: the fields of mvccpb.KeyValue.
type Record struct {
	Key            []byte
	CreateRevision int64
	ModRevision    int64
	Version        int64
	Value          []byte
	Lease          int64
}

// mvccpb.KeyValue field numbers.
const (
	fieldKey            protowire.Number = 1
	fieldCreateRevision protowire.Number = 2
	fieldModRevision    protowire.Number = 3
	fieldVersion        protowire.Number = 4
	fieldValue          protowire.Number = 5
	fieldLease          protowire.Number = 6
)

// recordFields lists r's integer fields in wire order.
func recordFields(r *Record) [3]struct {
	num protowire.Number
	v   int64
} {
	return [3]struct {
		num protowire.Number
		v   int64
	}{{fieldCreateRevision, r.CreateRevision}, {fieldModRevision, r.ModRevision}, {fieldVersion, r.Version}}
}

// recordSize is the length of r in mvccpb.KeyValue's wire form.
func recordSize(r *Record) int {
	n := 0
	if len(r.Key) > 0 {
		n += protowire.SizeTag(fieldKey) + protowire.SizeBytes(len(r.Key))
	}
	for _, f := range recordFields(r) {
		if f.v != 0 {
			n += protowire.SizeTag(f.num) + protowire.SizeVarint(uint64(f.v))
		}
	}
	if len(r.Value) > 0 {
		n += protowire.SizeTag(fieldValue) + protowire.SizeBytes(len(r.Value))
	}
	if r.Lease != 0 {
		n += protowire.SizeTag(fieldLease) + protowire.SizeVarint(uint64(r.Lease))
	}
	return n
}

// framedSize is the length of r in the snapshot: its wire form and that form's length before it.
func framedSize(r *Record) int { return protowire.SizeBytes(recordSize(r)) }

// appendRecord appends r in mvccpb.KeyValue's wire form (proto3: zero fields are omitted).
func appendRecord(b []byte, r *Record) []byte {
	if len(r.Key) > 0 {
		b = protowire.AppendTag(b, fieldKey, protowire.BytesType)
		b = protowire.AppendBytes(b, r.Key)
	}
	for _, f := range recordFields(r) {
		if f.v != 0 {
			b = protowire.AppendTag(b, f.num, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(f.v))
		}
	}
	if len(r.Value) > 0 {
		b = protowire.AppendTag(b, fieldValue, protowire.BytesType)
		b = protowire.AppendBytes(b, r.Value)
	}
	if r.Lease != 0 {
		b = protowire.AppendTag(b, fieldLease, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(r.Lease))
	}
	return b
}

// parseRecord decodes an mvccpb.KeyValue; Key and Value alias b.
func parseRecord(b []byte, r *Record) error {
	*r = Record{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case (num == fieldKey || num == fieldValue) && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			if num == fieldKey {
				r.Key = v
			} else {
				r.Value = v
			}
			b = b[n:]
		case num >= fieldCreateRevision && num <= fieldLease && num != fieldValue && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			switch num {
			case fieldCreateRevision:
				r.CreateRevision = int64(v)
			case fieldModRevision:
				r.ModRevision = int64(v)
			case fieldVersion:
				r.Version = int64(v)
			case fieldLease:
				r.Lease = int64(v)
			}
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	return nil
}

// encoder produces the prefix snapshot form, hashing everything it produces in order. It checks
// what it is given: keys in strictly increasing order, each under the prefix.
type encoder struct {
	hash    hash.Hash
	rng     KeyRange
	last    []byte
	trailer Trailer
	leases  map[int64]int64
}

// newEncoder returns the encoder and the snapshot's beginning: the magic and the header.
func newEncoder(h Header) (*encoder, []byte, error) {
	rng, err := RangeOf(h.Prefix)
	if err != nil {
		return nil, nil, err
	}
	hj, err := json.Marshal(h)
	if err != nil {
		return nil, nil, err
	}
	e := &encoder{hash: sha256.New(), rng: rng, leases: map[int64]int64{}}
	head := protowire.AppendBytes(append([]byte(nil), Magic...), hj)
	e.hash.Write(head)
	return e, head, nil
}

// encode appends r, framed, to dst (in place when dst has the room: framedSize) and hashes it
// there, while it is in the CPU's cache.
func (e *encoder) encode(dst []byte, r *Record) ([]byte, error) {
	if !e.rng.Contains(r.Key) {
		return dst, fmt.Errorf("key %q is not under %q", r.Key, e.rng.Start)
	}
	if e.last != nil && bytes.Compare(r.Key, e.last) <= 0 {
		return dst, fmt.Errorf("key %q does not follow %q in key order", r.Key, e.last)
	}
	e.last = append(e.last[:0], r.Key...)
	start := len(dst)
	dst = protowire.AppendVarint(dst, uint64(recordSize(r)))
	dst = appendRecord(dst, r)
	e.hash.Write(dst[start:])
	e.trailer.Keys++
	e.trailer.KeyBytes += int64(len(r.Key))
	e.trailer.ValueBytes += int64(len(r.Value))
	if r.Lease != 0 {
		e.leases[r.Lease]++
	}
	return dst, nil
}

// finish returns the end marker, the trailer (with leases) and the SHA-256 of everything
// before it. The hash then goes on over those 32 bytes, so it ends as the whole object's.
func (e *encoder) finish(leases []Lease) ([]byte, error) {
	e.trailer.Leases = leases
	tj, err := json.Marshal(e.trailer)
	if err != nil {
		return nil, err
	}
	out := protowire.AppendVarint(nil, 0)
	out = protowire.AppendBytes(out, tj)
	e.hash.Write(out)
	sum := e.hash.Sum(nil)
	e.hash.Write(sum)
	return append(out, sum...), nil
}

// Reader reads a prefix snapshot and checks it as it goes: the form, keys in strictly
// increasing order and under the header's prefix, and at the end the key count, the leases and
// the SHA-256. Next returns io.EOF only when all of it holds.
type Reader struct {
	r       *consumer
	header  Header
	rng     KeyRange
	trailer Trailer
	buf     []byte
	last    []byte
	n       int64
	leases  map[int64]bool
	done    bool
	err     error
}

// ErrCorrupt is wrapped by every error of a malformed prefix snapshot.
var ErrCorrupt = errors.New("not a valid prefix snapshot")

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// consumer hashes what is consumed from a buffered reader (not what the buffer reads ahead).
type consumer struct {
	br   *bufio.Reader
	hash hash.Hash
	one  [1]byte
}

func (c *consumer) ReadByte() (byte, error) {
	b, err := c.br.ReadByte()
	if err == nil {
		c.one[0] = b
		c.hash.Write(c.one[:])
	}
	return b, err
}

func (c *consumer) readFull(p []byte) error {
	n, err := io.ReadFull(c.br, p)
	c.hash.Write(p[:n])
	return err
}

// NewReader reads the magic and the header of a prefix snapshot.
func NewReader(r io.Reader) (*Reader, error) {
	rd := &Reader{r: &consumer{br: bufio.NewReaderSize(r, 1<<20), hash: sha256.New()}, leases: map[int64]bool{}}
	magic := make([]byte, len(Magic))
	if err := rd.r.readFull(magic); err != nil || string(magic) != Magic {
		return nil, corrupt("it does not start with %q", strings.TrimSpace(Magic))
	}
	hj, err := rd.readChunk(maxJSON)
	if err != nil {
		return nil, corrupt("header: %v", err)
	}
	if err := json.Unmarshal(hj, &rd.header); err != nil {
		return nil, corrupt("header: %v", err)
	}
	if rd.header.Format != FormatV1 {
		return nil, corrupt("format %q; this binary reads %q", rd.header.Format, FormatV1)
	}
	if rd.rng, err = RangeOf(rd.header.Prefix); err != nil {
		return nil, corrupt("header: %v", err)
	}
	return rd, nil
}

// Header is the snapshot's header.
func (rd *Reader) Header() Header { return rd.header }

// Trailer is the snapshot's trailer, once Next returned io.EOF.
func (rd *Reader) Trailer() Trailer { return rd.trailer }

// readChunk reads a uvarint length and that many bytes (into a reused buffer).
func (rd *Reader) readChunk(limit int) ([]byte, error) {
	n, err := binary.ReadUvarint(rd.r)
	if err != nil {
		return nil, eofIsUnexpected(err)
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("a length of %d bytes, more than %d", n, limit)
	}
	if cap(rd.buf) < int(n) {
		rd.buf = make([]byte, n)
	}
	rd.buf = rd.buf[:n]
	if err := rd.r.readFull(rd.buf); err != nil {
		return nil, eofIsUnexpected(err)
	}
	return rd.buf, nil
}

func eofIsUnexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Next decodes the next record into r; Key and Value stay valid until the next call. At the end
// it checks the trailer and the hash and returns io.EOF.
func (rd *Reader) Next(r *Record) error {
	if rd.err != nil {
		return rd.err
	}
	if rd.done {
		return io.EOF
	}
	rd.err = rd.next(r)
	if errors.Is(rd.err, io.EOF) {
		rd.done = true
	}
	return rd.err
}

func (rd *Reader) next(r *Record) error {
	b, err := rd.readChunk(maxRecord)
	if err != nil {
		return corrupt("record %d: %v", rd.n+1, err)
	}
	if len(b) == 0 {
		return rd.finish()
	}
	if err := parseRecord(b, r); err != nil {
		return corrupt("record %d: %v", rd.n+1, err)
	}
	if !rd.rng.Contains(r.Key) {
		return corrupt("record %d: key %q is not under %q", rd.n+1, r.Key, rd.rng.Start)
	}
	if rd.last != nil && bytes.Compare(r.Key, rd.last) <= 0 {
		return corrupt("record %d: key %q does not follow %q in key order", rd.n+1, r.Key, rd.last)
	}
	rd.last = append(rd.last[:0], r.Key...)
	rd.n++
	if r.Lease != 0 {
		rd.leases[r.Lease] = true
	}
	return nil
}

func (rd *Reader) finish() error {
	tj, err := rd.readChunk(maxJSON)
	if err != nil {
		return corrupt("trailer: %v", err)
	}
	if err := json.Unmarshal(tj, &rd.trailer); err != nil {
		return corrupt("trailer: %v", err)
	}
	sum := rd.r.hash.Sum(nil)
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(rd.r.br, want); err != nil {
		return corrupt("the final SHA-256 is missing: %v", eofIsUnexpected(err))
	}
	// Reading on to the end lets a verifying source run its own end checks.
	if extra, err := rd.r.br.Peek(1); len(extra) > 0 {
		return corrupt("bytes follow the final SHA-256")
	} else if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if !bytes.Equal(sum, want) {
		return corrupt("its SHA-256 is %x but it records %x", sum, want)
	}
	if rd.trailer.Keys != rd.n {
		return corrupt("it holds %d records but its trailer counts %d", rd.n, rd.trailer.Keys)
	}
	described := map[int64]bool{}
	for _, l := range rd.trailer.Leases {
		described[int64(l.ID)] = true
	}
	for id := range rd.leases {
		if !described[id] {
			return corrupt("records carry lease %s, which its trailer does not describe", LeaseID(id))
		}
	}
	return io.EOF
}
