package datapath

import (
	"io"
	"net"
	"sync"
	"testing"
)

// gateProxy is a TCP proxy on 127.0.0.1 in front of a real server. It forwards everything until
// the client has sent limit bytes in total (or, made by newServerGateProxy, the server has),
// then holds further bytes in that direction back until Release, so a test can interrupt an
// upload or a download at a known point without racing it.
type gateProxy struct {
	Addr       string
	target     string
	fromServer bool // the gate counts and holds the server's bytes instead of the client's
	limit      int64
	ln         net.Listener
	reached    chan struct{}
	release    chan struct{}

	mu     sync.Mutex
	sent   int64
	once   sync.Once
	relOne sync.Once
	conns  []net.Conn
}

func newGateProxy(t *testing.T, target string, limit int64) *gateProxy {
	t.Helper()
	return startGateProxy(t, &gateProxy{target: target, limit: limit})
}

// newServerGateProxy is a gateProxy that holds the server's bytes after limit of them.
func newServerGateProxy(t *testing.T, target string, limit int64) *gateProxy {
	t.Helper()
	return startGateProxy(t, &gateProxy{target: target, limit: limit, fromServer: true})
}

func startGateProxy(t *testing.T, p *gateProxy) *gateProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.Addr, p.ln, p.reached, p.release = ln.Addr().String(), ln, make(chan struct{}), make(chan struct{})
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
	if p.fromServer {
		go p.pump(up, c, false)
		p.pump(c, up, true)
		return
	}
	go p.pump(c, up, false)
	p.pump(up, c, true)
}

// pump copies src to dst until either fails, through the gate when gated, then closes both.
func (p *gateProxy) pump(dst, src net.Conn, gated bool) {
	defer func() {
		src.Close()
		dst.Close()
	}()
	if !gated {
		_, _ = io.Copy(dst, src)
		return
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			p.sent += int64(n)
			over := p.sent > p.limit
			p.mu.Unlock()
			if over {
				p.once.Do(func() { close(p.reached) })
				<-p.release
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
