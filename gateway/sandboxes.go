package main

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

const (
	// EgressLabel marks a sandbox pod that may use the gateway (set with its annotation, at creation or at a claim).
	EgressLabel = "durable-sandbox.dev/egress"
	// EgressAnnotation holds the pod's Egress as JSON.
	EgressAnnotation = "durable-sandbox.dev/egress"
)

// Sandbox is a pod the gateway serves: its address, name and egress.
type Sandbox struct {
	Pod    string
	IP     string
	Egress *Egress
}

// Sandboxes knows the pods of the sandbox namespace that carry the egress label, by their address, from a watch of
// the apiserver (an informer: listed at start, so a restarted gateway knows every sandbox at once). With an ipset
// named, it keeps that set to exactly their addresses: the host's firewall lets only them reach the gateway.
type Sandboxes struct {
	mu     sync.RWMutex
	byIP   map[string]*Sandbox
	synced chan struct{}
	ipset  string
	log    *slog.Logger
}

func NewSandboxes(log *slog.Logger, ipset string) *Sandboxes {
	return &Sandboxes{byIP: map[string]*Sandbox{}, synced: make(chan struct{}), ipset: ipset, log: log}
}

// Watch starts the pod informer; it returns once the first list is in.
func (s *Sandboxes) Watch(ctx context.Context, client kubernetes.Interface, namespace string) error {
	factory := informers.NewSharedInformerFactoryWithOptions(client, 10*time.Minute,
		informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = EgressLabel }),
	)
	inf := factory.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { s.upsert(o) },
		UpdateFunc: func(_, o any) { s.upsert(o) },
		DeleteFunc: func(o any) {
			if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			if p, ok := o.(*corev1.Pod); ok {
				s.forget(p.Status.PodIP, p.Name)
			}
		},
	})
	if err != nil {
		return err
	}
	if s.ipset != "" {
		if out, err := exec.Command("ipset", "flush", s.ipset).CombinedOutput(); err != nil {
			return fmt.Errorf("ipset flush %s: %v: %s", s.ipset, err, out)
		}
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return fmt.Errorf("the pod watch did not sync")
	}
	close(s.synced)
	return nil
}

func (s *Sandboxes) upsert(o any) {
	p, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	ip := p.Status.PodIP
	ended := p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	if ip == "" {
		return
	}
	if ended {
		s.forget(ip, p.Name)
		return
	}
	e, err := ParseEgress(p.Annotations[EgressAnnotation])
	if err != nil {
		s.log.Warn("sandbox pod with a bad egress annotation: nothing allowed", "pod", p.Name, "error", err)
		s.forget(ip, p.Name)
		return
	}
	s.mu.Lock()
	old := s.byIP[ip]
	s.byIP[ip] = &Sandbox{Pod: p.Name, IP: ip, Egress: e}
	s.mu.Unlock()
	if old == nil {
		s.log.Info("sandbox may use the gateway", "pod", p.Name, "ip", ip, "id", e.ID, "allow", len(e.Allow))
		s.setIP("add", ip)
	}
}

func (s *Sandboxes) forget(ip, pod string) {
	if ip == "" {
		return
	}
	s.mu.Lock()
	old := s.byIP[ip]
	if old != nil && old.Pod == pod {
		delete(s.byIP, ip)
	} else {
		old = nil
	}
	s.mu.Unlock()
	if old != nil {
		s.log.Info("sandbox gone", "pod", pod, "ip", ip)
		s.setIP("del", ip)
	}
}

func (s *Sandboxes) setIP(op, ip string) {
	if s.ipset == "" {
		return
	}
	if out, err := exec.Command("ipset", op, s.ipset, ip, "-exist").CombinedOutput(); err != nil {
		s.log.Error("ipset", "op", op, "ip", ip, "error", err, "output", string(out))
	}
}

// ByIP finds the sandbox at an address. One the watch has not told of yet (a pod whose claim is a few milliseconds
// old) is waited for, up to wait.
func (s *Sandboxes) ByIP(ip string, wait time.Duration) *Sandbox {
	<-s.synced
	deadline := time.Now().Add(wait)
	for {
		s.mu.RLock()
		sb := s.byIP[ip]
		s.mu.RUnlock()
		if sb != nil || time.Now().After(deadline) {
			return sb
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Count is the number of sandboxes the gateway serves now.
func (s *Sandboxes) Count() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.byIP)
}
