package datapath

import (
	"io"
	"net"
	"sync"
	"testing"
)

// gateProxy is a TCP proxy on 127.0.0.1 in front of a real server. It forwards everything until
// the client has sent limit bytes in total, then holds further client bytes back until Release,
// so a test can interrupt an upload at a known point without racing it.
type gateProxy struct {
	Addr    string
	target  string
	limit   int64
	ln      net.Listener
	reached chan struct{}
	release chan struct{}

	mu     sync.Mutex
	sent   int64
	once   sync.Once
	relOne sync.Once
	conns  []net.Conn
}

func newGateProxy(t *testing.T, target string, limit int64) *gateProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &gateProxy{Addr: ln.Addr().String(), target: target, limit: limit, ln: ln, reached: make(chan struct{}), release: make(chan struct{})}
	go p.serve()
	t.Cleanup(func() {
		p.Release()
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	return p
}

// Reached is closed once the client sent limit bytes.
func (p *gateProxy) Reached() <-chan struct{} { return p.reached }

// Release lets held bytes through again.
func (p *gateProxy) Release() { p.relOne.Do(func() { close(p.release) }) }

func (p *gateProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *gateProxy) handle(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, c, up)
	p.mu.Unlock()
	go func() {
		_, _ = io.Copy(c, up)
		c.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			p.mu.Lock()
			p.sent += int64(n)
			over := p.sent > p.limit
			p.mu.Unlock()
			if over {
				p.once.Do(func() { close(p.reached) })
				<-p.release
			}
			if _, werr := up.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	up.Close()
	c.Close()
}
