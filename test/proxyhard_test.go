package test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawExchange sends req over c (closed after) and reads one response.
func rawExchange(t *testing.T, c net.Conn, method, req string) (*http.Response, string) {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(clientTimeout))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("response to %q: %v", req, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// dialFrom connects to addr from the loopback address from: 127.0.0.1 and
// 127.0.0.2 are two peers of one machine.
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: clientTimeout}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRedirectPlaceholdersLive: a real master's redirect route builds
// "{scheme}://{host}:{port}{uri}" from the connection (https and the TLS
// port on the TLS listener, whatever Host says) and the normalised target,
// which never names another host.
func TestRedirectPlaceholdersLive(t *testing.T) {
	e := newTLSEnv(t)
	e.issue("a", "a.test", "127.0.0.1")
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := start(t, opts{workers: 1, extra: e.listen(tlsAddr, "", "a"), sites: `site "r" {
  hosts = ["*"]
  route "/" {
    redirect {
      status   = 308
      location = "{scheme}://{host}:{port}{uri}"
    }
  }
}
site "bare" {
  hosts = ["bare.test"]
  route "/" {
    redirect {
      location = "{uri}"
    }
  }
}`})
	_, port, _ := net.SplitHostPort(s.addr)
	_, tlsPort, _ := net.SplitHostPort(tlsAddr)
	for _, tc := range []struct {
		plain        bool
		target, want string
	}{
		{true, "//evil.example/../u/x?q=1", "http://a.test:" + port + "/u/x?q=1"},
		{false, "//evil.example/../u/x?q=1", "https://a.test:" + tlsPort + "/u/x?q=1"},
		{true, "//evil.example/../u/x", "/u/x"},
		{true, `/\evil.example`, "/%5Cevil.example"},
		{true, `/\evil.example/..`, "/"},
		{true, "/%2F%2Fevil", "/evil"},
		{true, "/..//evil", "/evil"},
		{true, "/.//evil", "/evil"},
	} {
		var c net.Conn
		if tc.plain {
			c = dialFrom(t, "127.0.0.1", s.addr)
		} else {
			tc, err := tls.Dial("tcp", tlsAddr, e.client("a.test"))
			if err != nil {
				t.Fatal(err)
			}
			c = tc
		}
		host := "a.test:9999"
		if !strings.HasPrefix(tc.want, "http") {
			host = "bare.test"
		}
		resp, _ := rawExchange(t, c, "GET", "GET "+tc.target+" HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n")
		if loc := resp.Header.Get("Location"); resp.StatusCode/100 != 3 || loc != tc.want {
			t.Errorf("GET %s (plain %v): %d Location %q, want %q", tc.target, tc.plain, resp.StatusCode, loc, tc.want)
		}
	}
}

// TestProxyHardLive drives a real master's proxy route: an upstream that
// would accept an h2c upgrade never sees one (nor a tunnel), TRACE never
// reaches it, forwarding fields are kept only from the listener's trusted
// peer, and a malformed first chunk is a 502.
func TestProxyHardLive(t *testing.T) {
	seen := make(chan http.Header, 16)
	var tunnels atomic.Int32
	up := newRawProxyUpstream(t, func(c net.Conn, req *http.Request) bool {
		seen <- req.Header.Clone()
		if u := req.Header.Get("Upgrade"); u != "" {
			// Whatever was asked for, granted: the smuggler's dream.
			tunnels.Add(1)
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+u+"\r\n\r\n")
			return false
		}
		if req.URL.Path == "/badchunk" {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
			return false
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain")
		return true
	})
	s := start(t, opts{workers: 1, listen: "  trusted = [\"127.0.0.1/32\"]\n",
		sites: proxySites(map[string]string{"/": strconv.Quote(up.addr)}, "      max_fails = 0\n")})
	next := func() http.Header {
		t.Helper()
		select {
		case h := <-seen:
			return h
		case <-time.After(clientTimeout):
			t.Fatal("the upstream saw no request")
			return nil
		}
	}

	// h2c: a plain request; the upstream sees no Upgrade and no tunnel is made.
	resp, body := rawExchange(t, dialFrom(t, "127.0.0.1", s.addr), "GET",
		"GET /admin HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"+
			"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: close\r\n\r\n")
	h := next()
	if resp.StatusCode != 200 || body != "plain" || h.Get("Upgrade") != "" || h.Get("HTTP2-Settings") != "" || tunnels.Load() != 0 {
		t.Errorf("h2c: %d %q; upstream saw Upgrade %q HTTP2-Settings %q; %d tunnels",
			resp.StatusCode, body, h.Get("Upgrade"), h.Get("HTTP2-Settings"), tunnels.Load())
	}
	// WebSocket still tunnels.
	resp, _ = rawExchange(t, dialFrom(t, "127.0.0.1", s.addr), "GET",
		"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	if h := next(); resp.StatusCode != 101 || h.Get("Upgrade") != "websocket" {
		t.Errorf("websocket: %d, upstream saw Upgrade %q", resp.StatusCode, h.Get("Upgrade"))
	}

	// TRACE: 405 with Allow, and the next request the upstream sees is
	// the GET after it.
	resp, body = rawExchange(t, dialFrom(t, "127.0.0.1", s.addr), "TRACE",
		"TRACE / HTTP/1.1\r\nHost: a\r\nCookie: session=secret\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != 405 || resp.Header.Get("Allow") == "" || strings.Contains(body, "secret") {
		t.Errorf("TRACE: %d Allow %q %q", resp.StatusCode, resp.Header.Get("Allow"), body)
	}
	rawExchange(t, dialFrom(t, "127.0.0.1", s.addr), "GET", "GET /after HTTP/1.1\r\nHost: a\r\nX-Seq: after\r\nConnection: close\r\n\r\n")
	if h := next(); h.Get("X-Seq") != "after" {
		t.Errorf("the upstream saw %v before the GET: TRACE went through", h)
	}

	// Forwarding fields: kept from the trusted peer, replaced from another.
	fwd := "GET /fwd HTTP/1.1\r\nHost: front.test\r\nConnection: close\r\nX-Forwarded-For: 10.0.0.1\r\n" +
		"X-Forwarded-Proto: https\r\nX-Forwarded-Host: public.test\r\nForwarded: for=10.0.0.1\r\nX-Real-IP: 10.0.0.1\r\n\r\n"
	for _, tc := range []struct {
		from string
		want map[string]string
	}{
		{"127.0.0.1", map[string]string{"X-Forwarded-For": "10.0.0.1, 127.0.0.1", "X-Forwarded-Proto": "https",
			"X-Forwarded-Host": "public.test", "Forwarded": "for=10.0.0.1", "X-Real-Ip": "10.0.0.1"}},
		{"127.0.0.2", map[string]string{"X-Forwarded-For": "127.0.0.2", "X-Forwarded-Proto": "http",
			"X-Forwarded-Host": "front.test", "Forwarded": "", "X-Real-Ip": ""}},
	} {
		rawExchange(t, dialFrom(t, tc.from, s.addr), "GET", fwd)
		h := next()
		for k, v := range tc.want {
			if got := strings.Join(h[k], ", "); got != v {
				t.Errorf("from %s: upstream saw %s %q, want %q", tc.from, k, got, v)
			}
		}
	}

	// A malformed first chunk, come with the head: 502, not an empty reply.
	resp, _ = rawExchange(t, dialFrom(t, "127.0.0.1", s.addr), "GET", "GET /badchunk HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	next()
	if resp.StatusCode != 502 {
		t.Errorf("malformed chunk: %d, want 502", resp.StatusCode)
	}
	// Nothing the client sent is echoed into the log.
	if s.logs.has("secret") || s.logs.has("HTTP2-Settings") || s.logs.has("AAMAAABk") {
		t.Errorf("request bytes in the log:\n%s", s.logs.String())
	}
}
