package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stripe/goproxy"
	"github.com/stripe/smokescreen/pkg/smokescreen"
	acl "github.com/stripe/smokescreen/pkg/smokescreen/acl/v1"
	"github.com/stripe/smokescreen/pkg/smokescreen/conntrack"
)

// Gateway is smokescreen (CONNECT and plain HTTP, its own resolution, private and internal ranges refused after it)
// with what a sandbox gateway adds: who is talking (its pod's address and its credential), each sandbox's
// allow-list with ports, the name inside a tunnel (TLS SNI or HTTP Host) checked against the CONNECT host, caps on
// bytes and open connections per sandbox, and a record of every connection.
type Gateway struct {
	key       []byte
	sandboxes *Sandboxes
	book      *Book
	metrics   *Metrics
	log       *slog.Logger
	// refusals carries why a request's sandbox could not be told (the role callback's reason) to its reject handler.
	refusals sync.Map // *http.Request -> string
	budget   *budget
	// How long a connection from an address the pod watch does not know yet waits for it.
	identityWait time.Duration
}

// Credential is what a sandbox presents (Proxy-Authorization: Basic id:credential).
func Credential(key []byte, id string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("egress:" + id))
	return hex.EncodeToString(m.Sum(nil))
}

func (g *Gateway) refuse(req *http.Request, why string) error {
	g.refusals.Store(req, why)
	return errors.New(why)
}

// role tells which sandbox sent the request: the pod at its source address, which must present that pod's own
// credential. It returns the pod's name (smokescreen's "role").
func (g *Gateway) role(req *http.Request) (string, error) {
	ip, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		return "", g.refuse(req, "no source address")
	}
	sb := g.sandboxes.ByIP(ip, g.identityWait)
	if sb == nil {
		return "", g.refuse(req, "the source address is no sandbox with egress")
	}
	id, secret, ok := proxyAuth(req)
	if !ok {
		return "", g.refuse(req, "no sandbox credential (Proxy-Authorization)")
	}
	if id != sb.Egress.ID || subtle.ConstantTimeCompare([]byte(secret), []byte(Credential(g.key, sb.Egress.ID))) != 1 {
		return "", g.refuse(req, "the credential is not this sandbox's")
	}
	return sb.Pod, nil
}

func proxyAuth(req *http.Request) (string, string, bool) {
	h := req.Header.Get("Proxy-Authorization")
	if !strings.HasPrefix(h, "Basic ") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(h, "Basic "))
	if err != nil {
		return "", "", false
	}
	id, secret, ok := strings.Cut(string(raw), ":")
	return id, secret, ok
}

// decider is the allow-list of the sandbox smokescreen found (its role), with ports.
type decider struct{ g *Gateway }

func (d decider) Decide(a acl.DecideArgs) (acl.Decision, error) {
	deny := func(why string) (acl.Decision, error) { return acl.Decision{Result: acl.Deny, Reason: why}, nil }
	if a.ConnectProxyHost != "" {
		return deny("chaining to another proxy is not allowed")
	}
	ip, _, _ := net.SplitHostPort(a.Req.RemoteAddr)
	sb := d.g.sandboxes.ByIP(ip, 0)
	if sb == nil || sb.Pod != a.Service {
		return deny("the sandbox is gone")
	}
	port := portOf(a.Req)
	if ok, why := sb.Egress.Allows(a.Host, port); !ok {
		return deny(why)
	} else {
		return acl.Decision{Result: acl.Allow, Reason: why, Project: "sandbox"}, nil
	}
}

// portOf is the destination port of a CONNECT (host:port) or a plain-HTTP request (its URL's, or its scheme's).
func portOf(req *http.Request) int {
	if _, p, err := net.SplitHostPort(req.Host); err == nil {
		n, _ := strconv.Atoi(p)
		return n
	}
	if req.URL != nil && req.URL.Port() != "" {
		n, _ := strconv.Atoi(req.URL.Port())
		return n
	}
	if req.URL != nil && req.URL.Scheme == "https" {
		return 443
	}
	return 80
}

func hostOf(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return strings.ToLower(h)
	}
	return strings.ToLower(hostport)
}

// record adds a record for the sandbox at the request's source address.
func (g *Gateway) record(req *http.Request, r Record) *live {
	ip, _, _ := net.SplitHostPort(req.RemoteAddr)
	sb := g.sandboxes.ByIP(ip, 0)
	id := "unknown:" + ip
	if sb != nil {
		id = sb.Egress.ID
	}
	g.metrics.connection(r.Allowed, r.Kind)
	g.log.Info("connection", "sandbox", id, "host", r.Host, "port", r.Port, "kind", r.Kind, "allowed", r.Allowed,
		"reason", r.Reason)
	return g.book.Add(id, r)
}

// rejected records a request smokescreen refused (the allow-list, an address refused after resolution, a name that
// does not resolve, a destination that does not answer, or a sandbox it could not tell).
func (g *Gateway) rejected(sctx *smokescreen.SmokescreenContext, resp *http.Response) {
	req := resp.Request
	if req == nil {
		return
	}
	reason := ""
	if v, ok := g.refusals.LoadAndDelete(req); ok {
		reason = v.(string)
	} else if sctx.Decision != nil && sctx.Decision.Reason != "" {
		reason = sctx.Decision.Reason
	}
	if reason == "" || (sctx.Decision != nil && strings.Contains(reason, "allowed by")) {
		// Allowed, then failed on the way (resolution, connection): the error says why.
		reason = strings.TrimSpace(resp.Header.Get("X-Smokescreen-Error"))
	}
	if reason == "" {
		reason = resp.Status
	}
	kind := "http"
	if sctx.ProxyType == "connect" {
		kind = "connect"
	}
	g.record(req, Record{At: nowMs(), Host: hostOf(req.Host), Port: portOf(req), Kind: kind, Allowed: false, Reason: reason})
}

// accepted records an allowed plain-HTTP request, counting its response's bytes as they are read.
func (g *Gateway) accepted(sctx *smokescreen.SmokescreenContext, resp *http.Response) error {
	if sctx.ProxyType == "connect" || resp.Request == nil {
		return nil // a tunnel is recorded by its copy
	}
	req := resp.Request
	address := ""
	if sctx.Decision != nil && sctx.Decision.ResolvedAddr != nil {
		address = sctx.Decision.ResolvedAddr.String()
	}
	l := g.record(req, Record{At: nowMs(), Host: hostOf(req.Host), Port: portOf(req), Kind: "http", Allowed: true,
		Address: address})
	if req.ContentLength > 0 {
		l.sent.Add(req.ContentLength)
	}
	ip, _, _ := net.SplitHostPort(req.RemoteAddr)
	resp.Body = &countedBody{ReadCloser: resp.Body, l: l, g: g, ip: ip}
	return nil
}

type countedBody struct {
	io.ReadCloser
	l    *live
	g    *Gateway
	ip   string
	once sync.Once
}

func (b *countedBody) Read(p []byte) (int, error) {
	if b.g.budget.overFor(b.ip, b.g.sandboxes) {
		why := "cut short: the sandbox's byte cap (maxBytes) was reached"
		b.l.cut.Store(&why)
		return 0, net.ErrClosed
	}
	n, err := b.ReadCloser.Read(p)
	b.l.received.Add(int64(n))
	b.g.metrics.bytes("received", n)
	return n, err
}

func (b *countedBody) Close() error {
	b.once.Do(func() { b.l.ended.Store(nowMs()) })
	return b.ReadCloser.Close()
}

// tunnel carries an allowed CONNECT once the name inside it is the one allowed: a TLS ClientHello whose SNI is the
// CONNECT host, or an HTTP request whose Host is. Anything else is refused and closed.
func (g *Gateway) tunnel(ctx *goproxy.ProxyCtx, client, target net.Conn) {
	defer client.Close()
	defer target.Close()
	req := ctx.Req
	host := hostOf(req.Host)
	address := ""
	if sctx, ok := ctx.UserData.(*smokescreen.SmokescreenContext); ok && sctx.Decision != nil && sctx.Decision.ResolvedAddr != nil {
		address = sctx.Decision.ResolvedAddr.String()
	}
	first, inner, err := peekName(client)
	rec := Record{At: nowMs(), Host: host, Port: portOf(req), Kind: "connect", Allowed: true, Address: address}
	if err == nil && !strings.EqualFold(strings.TrimSuffix(hostOf(inner), "."), host) {
		err = fmt.Errorf("the name inside the tunnel (%s) is not the CONNECT host %s", inner, host)
	}
	if err != nil {
		rec.Allowed = false
		rec.Reason = err.Error()
		g.record(req, rec)
		if ctx.ConnErrorHandler != nil {
			ctx.ConnErrorHandler(err)
		}
		return
	}
	l := g.record(req, rec)
	defer func() { l.ended.Store(nowMs()) }()
	if _, err := target.Write(first); err != nil {
		return
	}
	l.sent.Add(int64(len(first)))
	done := make(chan struct{}, 2)
	go func() {
		n, _ := io.Copy(countingWriter{target, &l.sent, g.metrics, "sent"}, client)
		_ = n
		if tc, ok := target.(interface{ CloseWrite() error }); ok {
			_ = tc.CloseWrite()
		} else {
			target.Close()
		}
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(countingWriter{client, &l.received, g.metrics, "received"}, target)
		client.Close()
		done <- struct{}{}
	}()
	<-done
	<-done
	if cc, ok := client.(*countedConn); ok && cc.u.over.Load() {
		why := "cut short: the sandbox's byte cap (maxBytes) was reached"
		l.cut.Store(&why)
	}
}

type countingWriter struct {
	w   io.Writer
	n   interface{ Add(int64) int64 }
	m   *Metrics
	dir string
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	c.m.bytes(c.dir, n)
	return n, err
}

var errStop = errors.New("seen")

// peekName reads the first message the sandbox sends into a tunnel and the name it carries: a TLS ClientHello's
// SNI, or an HTTP request's Host header. It returns the bytes it read, to be sent on.
func peekName(client net.Conn) ([]byte, string, error) {
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer func() { _ = client.SetReadDeadline(time.Time{}) }()
	br := bufio.NewReaderSize(client, 16*1024)
	head, err := br.Peek(1)
	if err != nil {
		return nil, "", fmt.Errorf("nothing was sent into the tunnel: %v", err)
	}
	var seen bytes.Buffer
	if head[0] == 0x16 { // a TLS handshake record
		var hello *tls.ClientHelloInfo
		_ = tls.Server(readOnly{Conn: client, r: io.TeeReader(br, &seen)}, &tls.Config{
			GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
				hello = h
				return nil, errStop
			},
		}).Handshake()
		if hello == nil {
			return nil, "", errors.New("a TLS handshake without a readable ClientHello")
		}
		if hello.ServerName == "" {
			return nil, "", errors.New("a TLS ClientHello without a server name (SNI)")
		}
		return withBuffered(seen.Bytes(), br), hello.ServerName, nil
	}
	r, err := http.ReadRequest(bufio.NewReader(io.TeeReader(io.LimitReader(br, 16*1024), &seen)))
	if err != nil {
		return nil, "", errors.New("neither TLS nor HTTP was sent into the tunnel")
	}
	return withBuffered(seen.Bytes(), br), r.Host, nil
}

// withBuffered is what was read, and what br holds beyond it (the stream goes on from the connection itself).
func withBuffered(read []byte, br *bufio.Reader) []byte {
	rest := br.Buffered()
	extra, _ := br.Peek(rest)
	out := append(append([]byte{}, read...), extra...)
	_, _ = br.Discard(rest)
	return out
}

type readOnly struct {
	net.Conn
	r io.Reader
}

func (c readOnly) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c readOnly) Write(p []byte) (int, error) { return 0, io.ErrClosedPipe }

// Config builds smokescreen's configuration for the gateway.
func (g *Gateway) Config(resolver smokescreen.Resolver, deny []string, connectTimeout time.Duration) (*smokescreen.Config, error) {
	cfg := smokescreen.NewConfig()
	cfg.Log = logrus.New()
	cfg.Log.SetFormatter(&logrus.JSONFormatter{})
	cfg.Log.SetLevel(logrus.WarnLevel)
	cfg.Resolver = resolver
	cfg.ConnectTimeout = connectTimeout
	cfg.RoleFromRequest = g.role
	cfg.EgressACL = decider{g}
	cfg.RejectResponseHandlerWithCtx = g.rejected
	cfg.AcceptResponseHandler = g.accepted
	cfg.AdditionalErrorMessageOnDeny = "durable-sandbox egress gateway: the sandbox's allow-list (network.allow) names what it may reach"
	if err := cfg.SetDenyRanges(deny); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Serve serves the proxy on ln until ctx ends.
func (g *Gateway) Serve(ctx context.Context, cfg *smokescreen.Config, ln net.Listener) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := cfg.InitializeSelfConnectionDetection(); err != nil {
		return err
	}
	cfg.ConnTracker = conntrack.NewTracker(cfg.IdleTimeout, cfg.MetricsClient, cfg.Log, cfg.ShuttingDown, nil)
	cfg.ShuttingDown.Store(false)
	proxy := smokescreen.BuildProxy(cfg)
	proxy.Tr.Proxy = nil // never through another proxy, whatever the environment says
	proxy.ConnectCopyHandler = g.tunnel
	srv := &http.Server{Handler: proxy, ReadHeaderTimeout: 30 * time.Second}
	go func() {
		<-ctx.Done()
		cfg.ShuttingDown.Store(true)
		_ = srv.Close()
	}()
	err := srv.Serve(&budgetListener{Listener: ln, g: g})
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
