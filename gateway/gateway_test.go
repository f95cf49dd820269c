package main

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
)

func TestAllowList(t *testing.T) {
	e, err := ParseEgress(`{"id":"x","allow":[{"host":"data.example.org"},{"host":"*.example.net","ports":[8443]}]}`)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		host string
		port int
		ok   bool
		why  string
	}{
		{"data.example.org", 443, true, ""},
		{"DATA.example.org.", 80, true, ""},
		{"data.example.org", 8080, false, "port 8080"},
		{"other.example.org", 443, false, "not on the sandbox's allow-list"},
		{"a.example.net", 8443, true, ""},
		{"a.b.example.net", 8443, true, ""},
		{"example.net", 8443, false, "not on the sandbox's allow-list"},
		{"evilexample.net", 8443, false, "not on"},
		{"a.example.net", 443, false, "port 443"},
		{"203.0.113.10", 443, false, "raw IP"},
		{"[2001:db8::1]", 443, false, "raw IP"},
	}
	for _, c := range cases {
		ok, why := e.Allows(c.host, c.port)
		if ok != c.ok || (c.why != "" && !strings.Contains(why, c.why)) {
			t.Errorf("%s:%d: got %v %q, want %v %q", c.host, c.port, ok, why, c.ok, c.why)
		}
	}
}

func TestCredentialIsPerSandbox(t *testing.T) {
	key := []byte("0123456789abcdef0123")
	if Credential(key, "a") == Credential(key, "b") || Credential(key, "a") != Credential(key, "a") {
		t.Fatal("credentials must differ by id and be stable")
	}
}

// peekName reads the name a tunnel's first message carries, and hands back every byte it read.
func TestPeekName(t *testing.T) {
	t.Run("TLS SNI", func(t *testing.T) {
		server, client := net.Pipe()
		go func() {
			_ = tls.Client(client, &tls.Config{ServerName: "data.example.org", InsecureSkipVerify: true}).Handshake()
		}()
		first, name, err := peekName(server)
		if err != nil || name != "data.example.org" || len(first) == 0 || first[0] != 0x16 {
			t.Fatalf("got %q %v (%d bytes)", name, err, len(first))
		}
		_ = server.Close()
	})
	t.Run("TLS without SNI", func(t *testing.T) {
		server, client := net.Pipe()
		go func() { _ = tls.Client(client, &tls.Config{InsecureSkipVerify: true}).Handshake() }()
		if _, _, err := peekName(server); err == nil || !strings.Contains(err.Error(), "SNI") {
			t.Fatalf("got %v", err)
		}
		_ = server.Close()
	})
	t.Run("HTTP Host", func(t *testing.T) {
		server, client := net.Pipe()
		req := "GET /x HTTP/1.1\r\nHost: evil.example.org\r\n\r\n"
		go func() { _, _ = client.Write([]byte(req)) }()
		first, name, err := peekName(server)
		if err != nil || name != "evil.example.org" || string(first) != req {
			t.Fatalf("got %q %v %q", name, err, first)
		}
		_ = server.Close()
	})
	t.Run("neither", func(t *testing.T) {
		server, client := net.Pipe()
		go func() { _, _ = client.Write([]byte("SSH-2.0-OpenSSH\r\n\r\n")) }()
		if _, _, err := peekName(server); err == nil {
			t.Fatal("accepted a protocol that names nothing")
		}
		_ = server.Close()
	})
}
