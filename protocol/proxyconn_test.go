package protocol

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forkd/forkd/internal/tlsconn"
	"github.com/hashicorp/go-hclog"
)

// echoRemote answers with the request's RemoteAddr.
var echoRemote = HandlerFunc(func(w *ResponseWriter, r *Request) {
	w.WriteString(r.RemoteAddr.String())
})

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// startProxied serves echoRemote on a loopback listener that requires a
// PROXY header from trusted peers.
func startProxied(t *testing.T, trusted []netip.Prefix, lw io.Writer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, addr := serveOn(t, ln, echoRemote, func(s *Server) {
		if lw != nil {
			s.Logger = hclog.New(&hclog.LoggerOptions{Output: lw, Level: hclog.Debug})
		}
		s.Limits.ReadHeaderTimeout = time.Second
	}, ListenOptions{ProxyProtocol: true, Trusted: trusted})
	return addr
}

// bodies reads n responses from c and returns their bodies.
func bodies(t *testing.T, c net.Conn, n int) []string {
	t.Helper()
	br := bufio.NewReader(c)
	var out []string
	for range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", len(out)+1, err)
		}
		b, _ := io.ReadAll(resp.Body)
		out = append(out, string(b))
	}
	return out
}

// unanswered sends raw on a new connection and returns what came back
// before the server closed or reset it.
func unanswered(t *testing.T, addr, raw string) string {
	t.Helper()
	c := dial(t, addr)
	io.WriteString(c, raw)
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v (got %q)", err, b)
	}
	return string(b)
}

const getReq = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"

// The PROXY header's source is the client's address for every request on
// the connection, whether the header comes with the request, alone, or a
// byte at a time.
func TestProxyHeaderSetsRemoteAddr(t *testing.T) { inModes(t, testProxyHeaderSetsRemoteAddr) }

func testProxyHeaderSetsRemoteAddr(t *testing.T) {
	addr := startProxied(t, loopback, nil)
	cases := []struct {
		name   string
		header []byte
		want   string
	}{
		{"v1", []byte("PROXY TCP4 192.0.2.7 127.0.0.1 40000 80\r\n"), "192.0.2.7:40000"},
		{"v1 tcp6", []byte("PROXY TCP6 2001:db8::1 ::1 40001 80\r\n"), "[2001:db8::1]:40001"},
		{"v2", v2inet("198.51.100.9", "127.0.0.1", 40002, 80, []byte{0x04, 0, 1, 'x'}), "198.51.100.9:40002"},
		{"v2 inet6", v2inet6("2001:db8::2", "::1", 40003, 80), "[2001:db8::2]:40003"},
	}
	for _, tc := range cases {
		for _, split := range []string{"together", "apart", "bytewise"} {
			c := dial(t, addr)
			switch split {
			case "together":
				c.Write(append(append([]byte{}, tc.header...), getReq...))
			case "apart":
				c.Write(tc.header)
				c.Write([]byte(getReq))
			case "bytewise":
				for i := range tc.header {
					c.Write(tc.header[i : i+1])
				}
				c.Write([]byte(getReq))
			}
			c.Write([]byte(getReq)) // a second request on the same connection
			for i, got := range bodies(t, c, 2) {
				if got != tc.want {
					t.Errorf("%s %s request %d: RemoteAddr %q, want %q", tc.name, split, i+1, got, tc.want)
				}
			}
			c.Close()
		}
	}
}

// A v2 LOCAL header (a balancer's own health check) and v1 UNKNOWN carry
// no client: the connection's own peer address stays.
func TestProxyHeaderWithoutClient(t *testing.T) { inModes(t, testProxyHeaderWithoutClient) }

func testProxyHeaderWithoutClient(t *testing.T) {
	addr := startProxied(t, loopback, nil)
	for _, h := range [][]byte{v2(0x20, 0x00, nil), []byte("PROXY UNKNOWN\r\n")} {
		c := dial(t, addr)
		c.Write(append(h, getReq...))
		if got := bodies(t, c, 1)[0]; got != c.LocalAddr().String() {
			t.Errorf("header %q: RemoteAddr %q, want the peer %q", h, got, c.LocalAddr())
		}
		c.Close()
	}
}

// A connection without a header, or with a malformed one, is closed
// without an answer, and the log says so once per second, counting the
// others.
func TestProxyHeaderMissingOrMalformed(t *testing.T) { inModes(t, testProxyHeaderMissingOrMalformed) }

func testProxyHeaderMissingOrMalformed(t *testing.T) {
	lw := &lineWaiter{want: "bad PROXY header", seen: make(chan struct{})}
	addr := startProxied(t, loopback, lw)
	bad := []string{
		getReq, // no header: a client talking HTTP directly
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n" + getReq,
		"PROXY TCP4 999.2.3.4 5.6.7.8 1 2\r\n" + getReq,
		string(v2(0x11, 0x11, make([]byte, 12))) + getReq,
		"PROXY TCP4 " + strings.Repeat("1", 200) + "\r\n" + getReq,
	}
	for _, raw := range bad {
		if got := unanswered(t, addr, raw); got != "" {
			t.Errorf("%q: answered %q, want the connection closed", raw, got)
		}
	}
	select {
	case <-lw.seen:
	case <-time.After(10 * time.Second):
		t.Fatal("no log line for a bad PROXY header")
	}
	lw.mu.Lock()
	n := strings.Count(lw.buf.String(), "bad PROXY header")
	lw.mu.Unlock()
	if n >= len(bad) {
		t.Errorf("%d log lines for %d bad headers within a second: not rate-limited", n, len(bad))
	}
}

// A peer outside trusted is closed at accept, even with a good header.
func TestProxyUntrustedRefused(t *testing.T) { inModes(t, testProxyUntrustedRefused) }

func testProxyUntrustedRefused(t *testing.T) {
	lw := &lineWaiter{want: "not in trusted", seen: make(chan struct{})}
	addr := startProxied(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, lw)
	if got := unanswered(t, addr, "PROXY TCP4 192.0.2.7 127.0.0.1 40000 80\r\n"+getReq); got != "" {
		t.Fatalf("untrusted peer answered %q", got)
	}
	select {
	case <-lw.seen:
	case <-time.After(10 * time.Second):
		t.Fatal("no log line for the refused peer")
	}
}

// A header that never completes, or is cut, closes the connection
// without a byte of answer: there is no request to answer with a 408 (the
// balancer framed none), and the balancer must not relay one to its client
// as if it were the server's. read_header_timeout bounds the wait; the log
// says why at debug level.
func TestProxyHeaderTimeoutOrCut(t *testing.T) { inModes(t, testProxyHeaderTimeoutOrCut) }

func testProxyHeaderTimeoutOrCut(t *testing.T) {
	lw := &lineWaiter{want: "PROXY header not received", seen: make(chan struct{})}
	addr := startProxied(t, loopback, lw)
	for _, tc := range []struct {
		name, header string
		cut          bool // the client half-closes after the header's beginning
	}{
		{"v1 timeout", "PROXY TCP4 192.0.2.7", false},
		{"v2 timeout", string(v2inet("192.0.2.7", "127.0.0.1", 1, 2, nil)[:20]), false},
		{"v2 TLVs timeout", string(withLength(v2inet("192.0.2.7", "127.0.0.1", 1, 2, []byte{4, 0, 1, 'x'}), 12+4+64)), false},
		{"v1 cut", "PROXY TCP4 192.0.2.7 127.0.0.1", true},
		{"v2 cut", string(v2inet("192.0.2.7", "127.0.0.1", 1, 2, nil)[:27]), true},
	} {
		c := dial(t, addr)
		io.WriteString(c, tc.header)
		if tc.cut {
			c.(*net.TCPConn).CloseWrite()
		}
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("%s: read: %v (the header's timeout did not close the connection)", tc.name, err)
		}
		if len(b) > 0 {
			t.Errorf("%s: got %q, want the connection closed without an answer", tc.name, b)
		}
		c.Close()
	}
	select {
	case <-lw.seen:
	case <-time.After(10 * time.Second):
		t.Fatal("no log line for a PROXY header that timed out or was cut")
	}
}

// The same under TLS (NewProxyListener below the TLS layer, as the worker
// serves a TLS listener with proxy_protocol): a header that times out or
// is cut gets no answer, plain or encrypted.
func TestProxyHeaderTimeoutUnderTLS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cert := httptest.NewTLSServer(http.NotFoundHandler())
	cfg := cert.TLS.Clone()
	cert.Close()
	lw := &lineWaiter{want: "PROXY header not received", seen: make(chan struct{})}
	log := hclog.New(&hclog.LoggerOptions{Output: lw, Level: hclog.Debug})
	tln := tlsconn.NewListener(NewProxyListener(ln, ListenOptions{ProxyProtocol: true, Trusted: loopback}, log), cfg)
	s := &Server{Handler: echoRemote, Limits: Limits{ReadHeaderTimeout: 300 * time.Millisecond}}
	go s.Serve(tln)
	t.Cleanup(func() { s.Close() })
	for _, cut := range []bool{false, true} {
		c := dial(t, ln.Addr().String())
		io.WriteString(c, "PROXY TCP4 192.0.2.7 127.0.0.1 4")
		if cut {
			c.(*net.TCPConn).CloseWrite()
		}
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("cut %v: read: %v (the header's timeout did not close the connection)", cut, err)
		}
		if len(b) > 0 {
			t.Errorf("cut %v: got %q, want the connection closed without an answer", cut, b)
		}
	}
	select {
	case <-lw.seen:
	case <-time.After(10 * time.Second):
		t.Fatal("no log line for a PROXY header that timed out or was cut")
	}
}

// ServeWith refuses ProxyProtocol on a layered listener: the header would
// be looked for in decrypted bytes.
func TestProxyProtocolNeedsSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Handler: echoRemote}
	err = s.ServeWith(tls.NewListener(ln, &tls.Config{}), ListenOptions{ProxyProtocol: true, Trusted: loopback})
	if err == nil || !strings.Contains(err.Error(), "NewProxyListener") {
		t.Fatalf("ServeWith on a TLS listener: %v", err)
	}
}

// TLS over NewProxyListener: the header comes before the handshake, and
// its source is the client's address.
func TestProxyListenerUnderTLS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cert := httptest.NewTLSServer(http.NotFoundHandler())
	cfg := cert.TLS.Clone()
	cert.Close()
	lw := &lineWaiter{want: "bad PROXY header", seen: make(chan struct{})}
	log := hclog.New(&hclog.LoggerOptions{Output: lw, Level: hclog.Warn})
	tln := tls.NewListener(NewProxyListener(ln, ListenOptions{ProxyProtocol: true, Trusted: loopback}, log), cfg)
	s := &Server{Handler: echoRemote}
	go s.Serve(tln)
	t.Cleanup(func() { s.Close() })

	raw := dial(t, ln.Addr().String())
	raw.Write([]byte("PROXY TCP4 192.0.2.8 127.0.0.1 41000 443\r\n"))
	c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
	io.WriteString(c, getReq+getReq)
	for i, got := range bodies(t, c, 2) {
		if got != "192.0.2.8:41000" {
			t.Errorf("request %d: RemoteAddr %q", i+1, got)
		}
	}

	// No header: closed, logged.
	raw2 := dial(t, ln.Addr().String())
	c2 := tls.Client(raw2, &tls.Config{InsecureSkipVerify: true})
	if err := c2.Handshake(); err == nil {
		t.Fatal("a TLS handshake without a PROXY header succeeded")
	}
	select {
	case <-lw.seen:
	case <-time.After(10 * time.Second):
		t.Fatal("no log line for the missing header")
	}

	// An untrusted peer: closed at accept.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s2 := &Server{Handler: echoRemote}
	go s2.Serve(tls.NewListener(NewProxyListener(ln2, ListenOptions{ProxyProtocol: true, Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, nil), cfg))
	t.Cleanup(func() { s2.Close() })
	if got := unanswered(t, ln2.Addr().String(), "PROXY TCP4 192.0.2.8 127.0.0.1 41000 443\r\n"); got != "" {
		t.Fatalf("untrusted peer got %q", got)
	}
}
