package prefix

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"slices"

	clientv3 "go.etcd.io/etcd/client/v3"

	"kube-dc.com/etcd-backup/snapshot"
)

// dump streams the keys of one prefix at one revision in the prefix snapshot form. Its Read
// returns io.EOF only once every page was read, the leases described and the trailer and hash
// written, so an upload of it never completes a partial snapshot.
type dump struct {
	ctx   context.Context
	c     *etcdConn
	pages *pages
	// ahead yields the pages after the first, read while the current one is encoded and sent.
	ahead  <-chan aheadPage
	stop   chan struct{}
	enc    *encoder
	header Header
	// pending is produced but not yet read: the header, a record too large for the reader's
	// buffer, the end; carry keeps its storage.
	pending []byte
	carry   []byte
	rec     Record
	done    bool
	err     error
}

// startDump reads the first page (which pins the revision, unless rev is given) so that the
// header, and the object metadata taken from it, carry the revision before anything is sent.
func startDump(ctx context.Context, c *etcdConn, rng KeyRange, rev int64, h Header) (*dump, error) {
	d := &dump{ctx: ctx, c: c, pages: newPages(c, rng, rev)}
	if err := d.pages.fetch(ctx); err != nil {
		return nil, err
	}
	h.Format, h.Prefix, h.Revision, h.EtcdVersion = FormatV1, rng.Prefix, d.pages.rev, c.version
	h.ClusterID, h.MemberID = fmt.Sprintf("%x", c.clusterID), fmt.Sprintf("%x", c.memberID)
	enc, head, err := newEncoder(h)
	if err != nil {
		return nil, err
	}
	d.enc, d.header, d.pending = enc, h, head
	d.stop = make(chan struct{})
	d.ahead = d.pages.readAhead(ctx, d.stop)
	return d, nil
}

// close stops reading ahead (an upload that failed reads no further).
func (d *dump) close() {
	select {
	case <-d.stop:
	default:
		close(d.stop)
	}
}

// firstPageKeys is the number of keys of the first page and whether more follow.
func (d *dump) firstPageKeys() (int, bool) { return len(d.pages.kvs), d.pages.more }

// Read encodes records straight into p: each value is copied once, from etcd's page into the
// upload's part buffer, and hashed there.
func (d *dump) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && d.err == nil {
		if len(d.pending) > 0 {
			c := copy(p[n:], d.pending)
			d.pending, n = d.pending[c:], n+c
			continue
		}
		if d.done {
			break
		}
		d.err = d.fill(p, &n)
	}
	switch {
	case n > 0:
		return n, nil
	case d.err != nil:
		return 0, d.err
	}
	return 0, io.EOF
}

// fill encodes the current page's records into p[*n:] while they fit; one that does not goes to
// pending. At the page's end it takes the next page, or finishes the snapshot.
func (d *dump) fill(p []byte, n *int) error {
	for d.pages.i < len(d.pages.kvs) {
		if err := d.pages.Next(d.ctx, &d.rec); err != nil {
			return err
		}
		size := framedSize(&d.rec)
		fits := size <= len(p)-*n
		dst := d.carry[:0]
		if fits {
			dst = p[*n:*n]
		}
		out, err := d.enc.encode(dst, &d.rec)
		if err != nil {
			return errorf(snapshot.ExitIntegrity, "etcd %s returned %v; retry", d.c.endpoint, err)
		}
		if len(out) != size {
			return errorf(snapshot.ExitIntegrity, "record of key %q encoded to %d bytes, not the %d it was given room for", d.rec.Key, len(out), size)
		}
		if !fits {
			d.pending, d.carry = out, out[:0]
			return nil
		}
		*n += len(out)
	}
	if pg, ok := <-d.ahead; ok {
		if pg.err != nil {
			return pg.err
		}
		d.pages.kvs, d.pages.i = pg.kvs, 0
		return nil
	}
	leases, err := d.describeLeases()
	if err != nil {
		return err
	}
	if d.pending, err = d.enc.finish(leases); err != nil {
		return err
	}
	d.done = true
	return nil
}

// describeLeases asks etcd for the TTLs of the leases the records carry.
func (d *dump) describeLeases() ([]Lease, error) {
	ids := make([]int64, 0, len(d.enc.leases))
	for id := range d.enc.leases {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]Lease, 0, len(ids))
	for _, id := range ids {
		resp, err := d.c.cli.TimeToLive(d.ctx, clientv3.LeaseID(id))
		if err != nil {
			return nil, etcdError(fmt.Sprintf("read lease %x", id), d.c, err)
		}
		out = append(out, Lease{ID: LeaseID(id), GrantedTTL: resp.GrantedTTL, TTL: resp.TTL, Keys: d.enc.leases[id]})
	}
	return out, nil
}

// SHA256 is the hex SHA-256 of the whole stream, once Read returned io.EOF: the encoder's hash
// went on over the final 32 bytes too.
func (d *dump) SHA256() string { return hex.EncodeToString(d.enc.hash.Sum(nil)) }

// Trailer is the snapshot's trailer, once Read returned io.EOF.
func (d *dump) Trailer() Trailer { return d.enc.trailer }
