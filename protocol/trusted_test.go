package protocol

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestTrustedPeer: Request.TrustedPeer is whether the peer that connected
// is in the listener's Trusted list, with or without the PROXY protocol
// (then the balancer, not the client its header names). 127.0.0.1 and
// 127.0.0.2 are both loopback: binding one or the other makes two peers.
func TestTrustedPeer(t *testing.T) {
	h := HandlerFunc(func(w *ResponseWriter, r *Request) {
		fmt.Fprintf(w, "%v %s", r.TrustedPeer, r.RemoteAddr.(*net.TCPAddr).IP.String())
	})
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	ask := func(t *testing.T, addr, from, prefix string) string {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, prefix+"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		b, _ := io.ReadAll(c)
		_, body, _ := strings.Cut(string(b), "\r\n\r\n")
		return body
	}
	inModes(t, func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, addr := serveOn(t, ln, h, nil, ListenOptions{Trusted: trusted})
		if got := ask(t, addr, "127.0.0.1", ""); got != "true 127.0.0.1" {
			t.Errorf("from 127.0.0.1: %q", got)
		}
		if got := ask(t, addr, "127.0.0.2", ""); got != "false 127.0.0.2" {
			t.Errorf("from 127.0.0.2: %q", got)
		}
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, addr = serveOn(t, ln, h, nil, ListenOptions{ProxyProtocol: true, Trusted: trusted})
		// The balancer may send the PROXY header; its client's own
		// forwarding headers are not believed, unless the client is in
		// trusted itself.
		if got := ask(t, addr, "127.0.0.1", "PROXY TCP4 192.0.2.9 192.0.2.1 5555 80\r\n"); got != "false 192.0.2.9" {
			t.Errorf("a client through a trusted balancer: %q", got)
		}
		if got := ask(t, addr, "127.0.0.1", "PROXY TCP4 127.0.0.1 192.0.2.1 5555 80\r\n"); got != "true 127.0.0.1" {
			t.Errorf("a trusted client through a trusted balancer: %q", got)
		}
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, addr = serveOn(t, ln, h, nil, ListenOptions{})
		if got := ask(t, addr, "127.0.0.1", ""); got != "false 127.0.0.1" {
			t.Errorf("no trusted list: %q", got)
		}
	})
}

// TestResponseReset: until the head is committed a handler may take back
// what it set and answer differently; after, Reset changes nothing.
func TestResponseReset(t *testing.T) {
	h := HandlerFunc(func(w *ResponseWriter, r *Request) {
		w.Header().Set("X-Upstream", "1")
		w.SetContentLength(100)
		w.WriteHeader(200)
		w.Write([]byte("partial"))
		if !w.Reset() {
			t.Error("Reset before the head went out: false")
		}
		w.Header().Set("X-Mine", "1")
		w.WriteHeader(502)
		w.Write([]byte("bad gateway"))
		w.Flush()
		if w.Reset() {
			t.Error("Reset after Flush: true")
		}
	})
	inModes(t, func(t *testing.T) {
		_, addr := startServer(t, h, nil)
		got := exchange(t, addr, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		if !strings.HasPrefix(got, "HTTP/1.1 502 ") || strings.Contains(got, "X-Upstream") || strings.Contains(got, "partial") ||
			!strings.Contains(got, "X-Mine: 1") || !strings.Contains(got, "bad gateway") || strings.Contains(got, "Content-Length: 100") {
			t.Errorf("response %q", got)
		}
	})
}
