// durable-sandbox-gateway: the egress gateway of durable-sandbox's sandboxes. The only thing a sandbox with an
// allow-list can reach, and from there only the named domains it was allowed, on their ports: a sandbox is told by
// its pod's address (from a watch of the sandbox namespace's pods that carry the egress label) and the credential
// the worker gave it (HMAC of its egress id). Built on stripe/smokescreen, which proxies CONNECT and plain HTTP,
// resolves names itself and refuses private, loopback, link-local and internal addresses after resolution.
//
// It also serves, on its report address: GET /v1/sandboxes/{id}/connections?since=MS (the worker reads what a
// sandbox reached and was refused; Authorization: Bearer <report credential>), /metrics (Prometheus) and /healthz.
package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var (
		listen         = flag.String("listen", ":3128", "where sandboxes reach the proxy")
		report         = flag.String("report", ":3129", "where the worker reads records (and /metrics, /healthz)")
		kubeconfig     = flag.String("kubeconfig", "", "kubeconfig (default: in-cluster)")
		namespace      = flag.String("namespace", "durable-sandbox", "the sandbox namespace")
		keyFile        = flag.String("key-file", "", "the key shared with the worker (credentials are HMACs of it)")
		hostsFile      = flag.String("hosts-file", "", "optional name → address mappings the gateway resolves first (re-read when it changes)")
		ipset          = flag.String("ipset", "", "keep this ipset to the addresses of the sandboxes with egress (the host's firewall lets only them in)")
		connectTimeout = flag.Duration("connect-timeout", 10*time.Second, "how long a connection to a destination may take")
		identityWait   = flag.Duration("identity-wait", 2*time.Second, "how long a connection from an address not known yet waits for the pod watch")
		deny           listFlag
	)
	flag.Var(&deny, "deny", "a CIDR refused after resolution, besides private, loopback and link-local ranges (repeatable: the cluster's pod and service ranges)")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	if err := run(log, *listen, *report, *kubeconfig, *namespace, *keyFile, *hostsFile, *ipset, *connectTimeout, *identityWait, deny); err != nil {
		log.Error("gateway failed", "error", err.Error())
		os.Exit(1)
	}
}

func run(log *slog.Logger, listen, report, kubeconfig, namespace, keyFile, hostsFile, ipset string,
	connectTimeout, identityWait time.Duration, deny []string) error {
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return fmt.Errorf("the key file: %w", err)
	}
	key = []byte(strings.TrimSpace(string(key)))
	if len(key) < 16 {
		return fmt.Errorf("the key in %s is shorter than 16 bytes", keyFile)
	}
	var cfg *rest.Config
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return fmt.Errorf("kubernetes configuration: %w", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// The node's own addresses are never a destination, whatever they are.
	locals, err := localAddresses()
	if err != nil {
		return err
	}
	deny = append(deny, locals...)
	resolver := newResolver(hostsFile, log)
	go resolver.watch(ctx)

	g := &Gateway{
		key:          key,
		sandboxes:    NewSandboxes(log, ipset),
		book:         NewBook(1000, time.Hour),
		metrics:      newMetrics(),
		log:          log,
		budget:       newBudget(),
		identityWait: identityWait,
	}
	if err := g.sandboxes.Watch(ctx, client, namespace); err != nil {
		return err
	}
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				g.book.Expire(now)
				g.budget.expire(now, time.Hour)
			}
		}
	}()
	sc, err := g.Config(resolver, deny, connectTimeout)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	reportLn, err := net.Listen("tcp", report)
	if err != nil {
		return err
	}
	go serveReport(ctx, reportLn, g, Credential(key, "report"))
	log.Info("gateway ready", "listen", ln.Addr().String(), "report", reportLn.Addr().String(), "namespace", namespace,
		"sandboxes", g.sandboxes.Count(), "deny", deny, "ipset", ipset)
	return g.Serve(ctx, sc, ln)
}

// serveReport answers the worker: a sandbox's records since a moment, and the gateway's health and metrics.
func serveReport(ctx context.Context, ln net.Listener, g *Gateway, credential string) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintf(w, "ok: %d sandboxes\n", g.sandboxes.Count())
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /v1/sandboxes/{id}/connections", func(w http.ResponseWriter, r *http.Request) {
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if subtle.ConstantTimeCompare([]byte(got), []byte(credential)) != 1 {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		since, _ := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
		records, dropped := g.book.Since(r.PathValue("id"), since)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"records": records, "dropped": dropped, "startedAt": started})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	_ = srv.Serve(ln)
}

var started = time.Now().UnixMilli()

func localAddresses() ([]string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			bits := 32
			if n.IP.To4() == nil {
				bits = 128
			}
			out = append(out, fmt.Sprintf("%s/%d", n.IP.String(), bits))
		}
	}
	return out, nil
}
