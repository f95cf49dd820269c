package main

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Rule is one entry of a sandbox's allow-list: an exact host, or "*.suffix" (any name under suffix, not suffix
// itself), and the ports it may be reached on.
type Rule struct {
	Host  string `json:"host"`
	Ports []int  `json:"ports"`
}

// Egress is what a sandbox pod carries in its egress annotation (written by the worker; the sandbox cannot change
// it): its identity, what it may reach, and its caps.
type Egress struct {
	// ID names the sandbox's egress: its credential is HMAC(key, ID), and its records are kept under it.
	ID    string `json:"id"`
	Allow []Rule `json:"allow"`
	// MaxBytes caps the bytes through the gateway both ways, over all its connections; MaxConnections the
	// connections open at once.
	MaxBytes       int64 `json:"maxBytes"`
	MaxConnections int   `json:"maxConnections"`
}

// ParseEgress reads an egress annotation; an annotation that does not parse allows nothing.
func ParseEgress(text string) (*Egress, error) {
	var e Egress
	if err := json.Unmarshal([]byte(text), &e); err != nil {
		return nil, fmt.Errorf("egress annotation: %w", err)
	}
	if e.ID == "" {
		return nil, fmt.Errorf("egress annotation: no id")
	}
	for i, r := range e.Allow {
		e.Allow[i].Host = strings.ToLower(strings.TrimSuffix(r.Host, "."))
		if len(r.Ports) == 0 {
			e.Allow[i].Ports = []int{443, 80}
		}
	}
	return &e, nil
}

// HostMatches says whether host (lowercase, no port) is named by pattern: equal to it, or, for "*.suffix", a name
// with at least one more label in front of suffix.
func HostMatches(host, pattern string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if strings.HasPrefix(pattern, "*.") {
		suffix := pattern[1:] // ".suffix"
		return strings.HasSuffix(host, suffix) && len(host) > len(suffix)
	}
	return host == pattern
}

// Allows decides one destination for a sandbox: allowed, or the reason it is not.
func (e *Egress) Allows(host string, port int) (bool, string) {
	if net.ParseIP(strings.Trim(host, "[]")) != nil {
		return false, "a raw IP address: only named domains are reachable (allow a name, e.g. api.example.org)"
	}
	named := false
	for _, r := range e.Allow {
		if !HostMatches(host, r.Host) {
			continue
		}
		named = true
		for _, p := range r.Ports {
			if p == port {
				return true, "allowed by " + r.Host + ":" + strconv.Itoa(port)
			}
		}
	}
	if named {
		return false, fmt.Sprintf("port %d is not allowed for %s", port, host)
	}
	return false, fmt.Sprintf("%s is not on the sandbox's allow-list", host)
}
