package main

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// resolver resolves names for smokescreen: a hosts file's mappings first (optional; re-read when it changes: the
// tests name their "outside" servers there), then the system's resolver. Whatever it answers, smokescreen then
// refuses internal addresses, so a name that resolves inside is refused (DNS rebinding included: it connects to the
// address it checked).
type resolver struct {
	file  string
	log   *slog.Logger
	mu    sync.RWMutex
	hosts map[string][]net.IP
	mtime time.Time
}

func newResolver(file string, log *slog.Logger) *resolver {
	r := &resolver{file: file, log: log, hosts: map[string][]net.IP{}}
	r.load()
	return r
}

func (r *resolver) watch(ctx context.Context) {
	if r.file == "" {
		return
	}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.load()
		}
	}
}

func (r *resolver) load() {
	if r.file == "" {
		return
	}
	st, err := os.Stat(r.file)
	if err != nil || st.ModTime().Equal(r.mtime) {
		return
	}
	f, err := os.Open(r.file)
	if err != nil {
		return
	}
	defer f.Close()
	hosts := map[string][]net.IP{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(strings.SplitN(sc.Text(), "#", 2)[0])
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		ip := net.ParseIP(fields[0])
		if ip == nil {
			continue
		}
		for _, name := range fields[1:] {
			name = strings.ToLower(strings.TrimSuffix(name, "."))
			hosts[name] = append(hosts[name], ip)
		}
	}
	r.mu.Lock()
	r.hosts = hosts
	r.mtime = st.ModTime()
	r.mu.Unlock()
	r.log.Info("hosts file read", "file", r.file, "names", len(hosts))
}

func (r *resolver) LookupIP(ctx context.Context, network, host string) ([]net.IP, error) {
	r.mu.RLock()
	ips := r.hosts[strings.ToLower(strings.TrimSuffix(host, "."))]
	r.mu.RUnlock()
	if len(ips) > 0 {
		return ips, nil
	}
	return net.DefaultResolver.LookupIP(ctx, network, host)
}

func (r *resolver) LookupPort(ctx context.Context, network, service string) (int, error) {
	return net.DefaultResolver.LookupPort(ctx, network, service)
}

// Metrics are the gateway's own: connections by outcome and kind, bytes by direction.
type Metrics struct {
	registry    *prometheus.Registry
	connections *prometheus.CounterVec
	moved       *prometheus.CounterVec
}

func newMetrics() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "durable_sandbox_gateway_connections_total",
			Help: "Connections and plain-HTTP requests from sandboxes, by outcome (allowed, refused) and kind.",
		}, []string{"outcome", "kind"}),
		moved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "durable_sandbox_gateway_bytes_total",
			Help: "Bytes moved for sandboxes, by direction (sent by the sandbox, received by it).",
		}, []string{"direction"}),
	}
	m.registry.MustRegister(m.connections, m.moved)
	return m
}

func (m *Metrics) connection(allowed bool, kind string) {
	outcome := "refused"
	if allowed {
		outcome = "allowed"
	}
	m.connections.WithLabelValues(outcome, kind).Inc()
}

func (m *Metrics) bytes(direction string, n int) {
	if n > 0 {
		m.moved.WithLabelValues(direction).Add(float64(n))
	}
}
