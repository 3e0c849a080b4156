package prefix

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	clientv3 "go.etcd.io/etcd/client/v3"

	"kube-dc.com/etcd-backup/jobspec"
	"kube-dc.com/etcd-backup/snapshot"
)

// etcd's default request limits (--max-txn-ops, --max-request-bytes).
const (
	DefaultMaxTxnOps       = jobspec.DefaultMaxTxnOps
	DefaultMaxRequestBytes = jobspec.DefaultMaxRequestBytes
	// requestMargin is left under --max-request-bytes for what etcd wraps around a transaction
	// (the raft request's header, the user name).
	requestMargin = 4 << 10
	// opOverhead bounds the framing of one put or delete and its compare besides the key (twice)
	// and the value: tags, lengths, the lease, the mod revision.
	opOverhead = 64
)

// Limits are the etcd server's request limits a convergence stays within.
type Limits struct {
	// MaxTxnOps is etcd's --max-txn-ops: the most operations (and compares) of a transaction.
	MaxTxnOps int
	// MaxRequestBytes is etcd's --max-request-bytes.
	MaxRequestBytes int
}

func (l Limits) withDefaults() Limits {
	if l.MaxTxnOps == 0 {
		l.MaxTxnOps = DefaultMaxTxnOps
	}
	if l.MaxRequestBytes == 0 {
		l.MaxRequestBytes = DefaultMaxRequestBytes
	}
	return l
}

// Stats count what a convergence did.
type Stats struct {
	Put       int64 `json:"put"`
	Deleted   int64 `json:"deleted"`
	Unchanged int64 `json:"unchanged"`
	// LeasesGranted is the number of fresh leases granted for keys that carried one.
	LeasesGranted int `json:"leasesGranted"`
	// ExpiredLeaseKeys are the snapshot's keys left out because their lease had expired when
	// the backup read it (etcd deleted them too).
	ExpiredLeaseKeys int64 `json:"expiredLeaseKeys"`
	Transactions     int   `json:"transactions"`
	// RevisionBefore is the revision the prefix was read at; RevisionAfter the revision of the
	// last write (RevisionBefore when nothing was written).
	RevisionBefore int64 `json:"revisionBefore"`
	RevisionAfter  int64 `json:"revisionAfter"`
}

// op is one write of a convergence.
type op struct {
	key   []byte
	value []byte
	// lease is the snapshot's lease ID of the key; a fresh lease replaces it.
	lease int64
	del   bool
	// modRev is the key's mod revision in the pinned read; 0 when absent. The write happens
	// only if the key is still exactly that.
	modRev int64
}

// size bounds the op's share of a transaction request.
func (o op) size() int { return 2*len(o.key) + len(o.value) + opOverhead }

// next is an iterator over key-sorted records; io.EOF at the end. Key and Value may alias
// buffers that the next call reuses.
type next func(*Record) error

// diff merges the wanted and the current key-sorted sequences: a key only wanted is put, a key
// only current is deleted, a key in both is put when its value or whether it carries a lease
// differs (a current lease is kept), else counted as unchanged. Ops own their bytes.
func diff(want, have next, emit func(op) error, unchanged func()) error {
	var w, h Record
	wok, err := advance(want, &w)
	if err != nil {
		return err
	}
	hok, err := advance(have, &h)
	if err != nil {
		return err
	}
	for wok || hok {
		c := 0
		switch {
		case !wok:
			c = 1
		case !hok:
			c = -1
		default:
			c = bytes.Compare(w.Key, h.Key)
		}
		switch {
		case c < 0:
			err = emit(op{key: bytes.Clone(w.Key), value: bytes.Clone(w.Value), lease: w.Lease})
		case c > 0:
			err = emit(op{key: bytes.Clone(h.Key), del: true, modRev: h.ModRevision})
		case bytes.Equal(w.Value, h.Value) && (w.Lease != 0) == (h.Lease != 0):
			unchanged()
		default:
			err = emit(op{key: bytes.Clone(w.Key), value: bytes.Clone(w.Value), lease: w.Lease, modRev: h.ModRevision})
		}
		if err != nil {
			return err
		}
		if c <= 0 {
			if wok, err = advance(want, &w); err != nil {
				return err
			}
		}
		if c >= 0 {
			if hok, err = advance(have, &h); err != nil {
				return err
			}
		}
	}
	return nil
}

func advance(n next, r *Record) (bool, error) {
	err := n(r)
	if errors.Is(err, io.EOF) {
		return false, nil
	}
	return err == nil, err
}

// batcher groups ops into transactions within the limits.
type batcher struct {
	limits Limits
	ops    []op
	bytes  int
}

// add reports whether o fits into the current batch; when not, the caller flushes first. An
// empty batch takes any op (one too large for etcd alone fails there, with etcd's error).
func (b *batcher) add(o op) bool {
	if len(b.ops) > 0 && (len(b.ops)+1 > b.limits.MaxTxnOps || b.bytes+o.size() > b.limits.MaxRequestBytes-requestMargin) {
		return false
	}
	b.ops = append(b.ops, o)
	b.bytes += o.size()
	return true
}

func (b *batcher) reset() { b.ops, b.bytes = b.ops[:0], 0 }

// ErrPrefixChanged is wrapped when a key changed between the pinned read and its write.
var ErrPrefixChanged = errors.New("the prefix changed during the restore")

// converger writes ops to etcd, one guarded transaction per batch.
type converger struct {
	c      *etcdConn
	rng    KeyRange
	leases map[int64]Lease
	fresh  map[int64]clientv3.LeaseID
	b      batcher
	stats  Stats
	// wrote is set before the first transaction is sent: from then on etcd may hold a change.
	wrote bool
	// afterTxn is a test's fault point, called after every committed transaction.
	afterTxn func(Stats) error
	log      *slog.Logger
}

func (cv *converger) emit(ctx context.Context, o op) error {
	if !cv.rng.Contains(o.key) {
		return errorf(snapshot.ExitIntegrity, "refusing to write key %q: it is not under %q", o.key, cv.rng.Start)
	}
	if cv.b.add(o) {
		return nil
	}
	if err := cv.flush(ctx); err != nil {
		return err
	}
	cv.b.add(o)
	return nil
}

// flush commits the batch as one transaction: every op's key must still have the mod
// revision of the pinned read.
func (cv *converger) flush(ctx context.Context) error {
	if len(cv.b.ops) == 0 {
		return nil
	}
	cmps := make([]clientv3.Cmp, 0, len(cv.b.ops))
	ops := make([]clientv3.Op, 0, len(cv.b.ops))
	var put, del int64
	for _, o := range cv.b.ops {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(o.key)), "=", o.modRev))
		if o.del {
			ops = append(ops, clientv3.OpDelete(string(o.key)))
			del++
			continue
		}
		var opts []clientv3.OpOption
		if o.lease != 0 {
			id, err := cv.lease(ctx, o.lease)
			if err != nil {
				return err
			}
			opts = append(opts, clientv3.WithLease(id))
		}
		ops = append(ops, clientv3.OpPut(string(o.key), string(o.value), opts...))
		put++
	}
	cv.wrote = true
	resp, err := cv.c.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return etcdError(fmt.Sprintf("write %d keys from %q", len(ops), cv.b.ops[0].key), cv.c, err)
	}
	if !resp.Succeeded {
		return errorf(snapshot.ExitFailed, "a key between %q and %q changed after revision %d: %w; another writer is active on the prefix, drain the tenant's control plane and re-run",
			cv.b.ops[0].key, cv.b.ops[len(cv.b.ops)-1].key, cv.stats.RevisionBefore, ErrPrefixChanged)
	}
	cv.stats.Put += put
	cv.stats.Deleted += del
	cv.stats.Transactions++
	cv.stats.RevisionAfter = resp.Header.Revision
	cv.b.reset()
	if cv.afterTxn != nil {
		return cv.afterTxn(cv.stats)
	}
	return nil
}

// lease is the fresh lease that replaces the snapshot's lease id, granted on first use with
// the TTL the lease had left when the backup read it.
func (cv *converger) lease(ctx context.Context, id int64) (clientv3.LeaseID, error) {
	if f, ok := cv.fresh[id]; ok {
		return f, nil
	}
	l := cv.leases[id]
	resp, err := cv.c.cli.Grant(ctx, l.TTL)
	if err != nil {
		return 0, etcdError(fmt.Sprintf("grant a lease of %ds", l.TTL), cv.c, err)
	}
	cv.fresh[id] = resp.ID
	cv.stats.LeasesGranted++
	return resp.ID, nil
}

// converge makes the prefix hold exactly the records of src: reading the prefix at rev (0: a
// fresh revision) and writing the difference. It is idempotent: a second run finds nothing to
// write. wrote reports whether a write may have reached etcd.
func converge(ctx context.Context, c *etcdConn, rng KeyRange, src *Reader, leases []Lease, rev int64, limits Limits, afterTxn func(Stats) error, log *slog.Logger) (Stats, bool, error) {
	cv := &converger{c: c, rng: rng, leases: map[int64]Lease{}, fresh: map[int64]clientv3.LeaseID{}, b: batcher{limits: limits.withDefaults()}, afterTxn: afterTxn, log: log}
	for _, l := range leases {
		cv.leases[int64(l.ID)] = l
	}
	live := newPages(c, rng, rev)
	if err := live.fetch(ctx); err != nil {
		return cv.stats, false, err
	}
	cv.stats.RevisionBefore, cv.stats.RevisionAfter = live.rev, live.rev
	want := func(r *Record) error {
		for {
			if err := src.Next(r); err != nil {
				return err
			}
			if l, ok := cv.leases[r.Lease]; r.Lease == 0 || (ok && l.TTL > 0) {
				return nil
			}
			cv.stats.ExpiredLeaseKeys++
		}
	}
	have := func(r *Record) error { return live.Next(ctx, r) }
	err := diff(want, have, func(o op) error { return cv.emit(ctx, o) }, func() { cv.stats.Unchanged++ })
	if err == nil {
		err = cv.flush(ctx)
	}
	var ce *snapshot.Error
	switch {
	case err == nil, errors.As(err, &ce):
	case errors.Is(err, ErrCorrupt):
		err = errorf(snapshot.ExitIntegrity, "the snapshot cannot be read: %w", err)
	default:
		err = errorf(snapshot.ExitFailed, "the convergence stopped: %w", err)
	}
	return cv.stats, cv.wrote, err
}
