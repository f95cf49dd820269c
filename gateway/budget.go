package main

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// budget holds each sandbox's use of the gateway: the bytes it moved both ways over all its connections, and the
// connections it has open. Past its caps its connections are closed and new ones refused.
type budget struct {
	mu        sync.Mutex
	sandboxes map[string]*use
}

type use struct {
	bytes  atomic.Int64
	over   atomic.Bool
	conns  map[*countedConn]struct{}
	caps   Egress
	lastAt time.Time
}

func newBudget() *budget { return &budget{sandboxes: map[string]*use{}} }

// budgetListener counts every byte on every connection from a sandbox (CONNECT tunnels and plain HTTP alike).
type budgetListener struct {
	net.Listener
	g *Gateway
}

func (l *budgetListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		sb := l.g.sandboxes.ByIP(ip, 0)
		if sb == nil {
			// Not known yet (a claim a moment old): counted when it is, refused by the role check if never.
			return c, nil
		}
		cc, why := l.g.budget.open(sb, c)
		if cc != nil {
			return cc, nil
		}
		l.g.book.Add(sb.Egress.ID, Record{At: nowMs(), Kind: "connect", Allowed: false, Reason: why})
		l.g.metrics.connection(false, "capped")
		_ = c.Close()
	}
}

// open registers a connection of a sandbox, or says which cap refuses it.
func (b *budget) open(sb *Sandbox, c net.Conn) (*countedConn, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	u := b.sandboxes[sb.Egress.ID]
	if u == nil {
		u = &use{conns: map[*countedConn]struct{}{}}
		b.sandboxes[sb.Egress.ID] = u
	}
	u.caps = *sb.Egress
	u.lastAt = time.Now()
	if u.over.Load() {
		return nil, "the sandbox's byte cap was reached (maxBytes)"
	}
	if u.caps.MaxConnections > 0 && len(u.conns) >= u.caps.MaxConnections {
		return nil, "the sandbox has as many connections open as it may (maxConnections)"
	}
	cc := &countedConn{Conn: c, u: u, b: b}
	u.conns[cc] = struct{}{}
	return cc, ""
}

// overFor says whether the sandbox at an address has used up its bytes.
func (b *budget) overFor(ip string, sandboxes *Sandboxes) bool {
	sb := sandboxes.ByIP(ip, 0)
	if sb == nil {
		return false
	}
	b.mu.Lock()
	u := b.sandboxes[sb.Egress.ID]
	b.mu.Unlock()
	return u != nil && u.over.Load()
}

// expire forgets sandboxes idle for longer than keep.
func (b *budget) expire(now time.Time, keep time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, u := range b.sandboxes {
		if len(u.conns) == 0 && now.Sub(u.lastAt) > keep {
			delete(b.sandboxes, id)
		}
	}
}

type countedConn struct {
	net.Conn
	u    *use
	b    *budget
	once sync.Once
}

func (c *countedConn) add(n int) {
	if n <= 0 {
		return
	}
	if total := c.u.bytes.Add(int64(n)); c.u.caps.MaxBytes > 0 && total > c.u.caps.MaxBytes && !c.u.over.Swap(true) {
		// Every connection of the sandbox ends now; new ones are refused.
		c.b.mu.Lock()
		conns := make([]*countedConn, 0, len(c.u.conns))
		for x := range c.u.conns {
			conns = append(conns, x)
		}
		c.b.mu.Unlock()
		for _, x := range conns {
			_ = x.Conn.Close()
		}
	}
}

func (c *countedConn) Read(p []byte) (int, error) {
	if c.u.over.Load() {
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(p)
	c.add(n)
	return n, err
}

func (c *countedConn) Write(p []byte) (int, error) {
	if c.u.over.Load() {
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Write(p)
	c.add(n)
	return n, err
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.b.mu.Lock()
		delete(c.u.conns, c)
		c.u.lastAt = time.Now()
		c.b.mu.Unlock()
	})
	return c.Conn.Close()
}

// Hijacked connections keep their wrapper: goproxy hands the countedConn to the tunnel, so its bytes count too.
var _ net.Conn = (*countedConn)(nil)
