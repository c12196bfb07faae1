package pgtest

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Proxy is a TCP proxy standing for a load balancer in blue/green tests:
// each new connection goes to the backend address written in BackendFile,
// read at connect time, so a shell command (a cutover hook) flips it with
// `echo host:port > file`. Established connections are left alone.
type Proxy struct {
	// Addr is the proxy's listening address, 127.0.0.1:port.
	Addr string
	// Port is its port.
	Port int
	// BackendFile holds the backend's host:port.
	BackendFile string

	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// StartProxy starts a proxy to backend; dir holds its BackendFile. Close
// stops it.
func StartProxy(backend, dir string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: ln.Addr().String(), Port: ln.Addr().(*net.TCPAddr).Port, ln: ln, conns: map[net.Conn]bool{},
		BackendFile: filepath.Join(dir, "backend")}
	if err := p.Point(backend); err != nil {
		ln.Close()
		return nil, err
	}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// StartProxyT is StartProxy for tests; the proxy stops when the test ends.
func StartProxyT(t testing.TB, backend string) *Proxy {
	t.Helper()
	p, err := StartProxy(backend, t.TempDir())
	if err != nil {
		t.Fatalf("pgtest: proxy: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// Point sets the backend for new connections.
func (p *Proxy) Point(backend string) error {
	return os.WriteFile(p.BackendFile, []byte(backend+"\n"), 0o644)
}

// Backend is the backend new connections go to.
func (p *Proxy) Backend() string {
	b, _ := os.ReadFile(p.BackendFile)
	return strings.TrimSpace(string(b))
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", p.Backend())
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[b] = true, true
		p.mu.Unlock()
		p.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		go pipe(b, c)
		go pipe(c, b)
	}
}

// Close stops the proxy and its connections.
func (p *Proxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
