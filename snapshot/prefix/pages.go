package prefix

import (
	"context"
	"io"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Page sizes: etcd limits a range by key count only, so the count of the next page follows the
// mean size of the keys read so far, to keep each page near pageBytes whatever the values' sizes.
const (
	pageBytes   = 4 << 20
	firstPage   = 256
	minPageKeys = 16
	maxPageKeys = 10000
)

// pages reads the keys of one range at one revision, page by page, in key order. The first
// page is a linearizable read (unless the revision is given) whose header revision pins every
// later page.
type pages struct {
	c     *etcdConn
	rng   KeyRange
	rev   int64
	next  string
	more  bool
	limit int64
	kvs   []*mvccpb.KeyValue
	i     int
}

func newPages(c *etcdConn, rng KeyRange, rev int64) *pages {
	return &pages{c: c, rng: rng, rev: rev, next: rng.Start, more: true, limit: firstPage}
}

// fetch reads the next page; it returns io.EOF when there is none.
func (p *pages) fetch(ctx context.Context) error {
	if !p.more {
		return io.EOF
	}
	opts := []clientv3.OpOption{clientv3.WithRange(p.rng.End), clientv3.WithLimit(p.limit)}
	if p.rev != 0 {
		// Same member as the pinning read (connect), which has applied rev: serializable is exact.
		opts = append(opts, clientv3.WithRev(p.rev), clientv3.WithSerializable())
	}
	resp, err := p.c.cli.Get(ctx, p.next, opts...)
	if err != nil {
		return etcdError("read the prefix "+p.rng.Start, p.c, err)
	}
	if p.rev == 0 {
		p.rev = resp.Header.Revision
	}
	p.kvs, p.i, p.more = resp.Kvs, 0, resp.More
	var bytes int64
	for _, kv := range resp.Kvs {
		bytes += int64(len(kv.Key) + len(kv.Value) + 32)
	}
	if n := len(resp.Kvs); n > 0 {
		p.next = string(resp.Kvs[n-1].Key) + "\x00"
		p.limit = min(max(int64(pageBytes)*int64(n)/max(bytes, 1), minPageKeys), 2*p.limit, maxPageKeys)
	} else {
		p.more = false
	}
	return nil
}

// Next yields the next key into r (Key and Value alias the page); io.EOF at the end.
func (p *pages) Next(ctx context.Context, r *Record) error {
	for p.i >= len(p.kvs) {
		if err := p.fetch(ctx); err != nil {
			return err
		}
		if len(p.kvs) == 0 {
			return io.EOF
		}
	}
	kv := p.kvs[p.i]
	p.kvs[p.i] = nil // the page's keys are garbage as soon as they are used
	p.i++
	*r = Record{Key: kv.Key, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version, Value: kv.Value, Lease: kv.Lease}
	return nil
}

// aheadPage is a page read ahead, or the error that ended reading.
type aheadPage struct {
	kvs []*mvccpb.KeyValue
	err error
}

// readAhead reads the pages after the current one in a goroutine, one page ahead of the
// consumer, so etcd serves the next page while the current one is encoded and uploaded. The
// channel closes after the last page; the goroutine ends at stop or ctx's end too. From then on
// the goroutine owns p's cursor; the consumer only takes pages from the channel.
func (p *pages) readAhead(ctx context.Context, stop <-chan struct{}) <-chan aheadPage {
	ch := make(chan aheadPage, 1)
	q := *p // the goroutine's own cursor; the consumer keeps the current page in p
	go func() {
		defer close(ch)
		for q.more {
			err := q.fetch(ctx)
			if err == nil && len(q.kvs) == 0 {
				return
			}
			select {
			case ch <- aheadPage{kvs: q.kvs, err: err}:
			case <-stop:
				return
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}
