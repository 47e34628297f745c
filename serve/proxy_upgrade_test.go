package serve

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forkd/forkd/config"
)

// upgradeSeen is what an upstream that accepts any upgrade saw of one
// request.
type upgradeSeen struct {
	upgrade, connection, settings string
}

// acceptingUpstream switches to whatever protocol a request asks for (an
// upstream that would speak h2c, say) and reports each request on seen; a
// request without Upgrade gets 200 "plain". tunnels counts the 101s.
func acceptingUpstream(t *testing.T, seen chan<- upgradeSeen, tunnels *atomic.Int32) string {
	return requestUpstream(t, func(c net.Conn, br *bufio.Reader, req *http.Request) bool {
		_, _ = io.Copy(io.Discard, req.Body)
		seen <- upgradeSeen{req.Header.Get("Upgrade"), req.Header.Get("Connection"), req.Header.Get("HTTP2-Settings")}
		if up := req.Header.Get("Upgrade"); up != "" {
			tunnels.Add(1)
			_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+up+"\r\n\r\n")
			_, _ = io.Copy(c, br) // echo: the tunnel
			return false
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain")
		return true
	})
}

// TestProxyUpgradeTokens: only the upgrades listed (websocket by default)
// are tunnelled; any other, h2c above all, goes on as a plain request
// without Upgrade, its Connection options or HTTP2-Settings, and the
// upstream never gets the chance to switch.
func TestProxyUpgradeTokens(t *testing.T) {
	seen := make(chan upgradeSeen, 16)
	var tunnels atomic.Int32
	up := acceptingUpstream(t, seen, &tunnels)
	def := proxySite(t, config.Proxy{Upstreams: []string{up}, Keepalive: -1})
	listed := proxySite(t, config.Proxy{Upstreams: []string{up}, Keepalive: -1, Upgrades: []string{"websocket", "h2c", "foo"}})
	for _, tc := range []struct {
		name, addr, upgrade, conn string
		tunnel                    bool
	}{
		{"h2c", def, "h2c", "Upgrade, HTTP2-Settings", false},
		{"H2C/1", def, "H2C/1", "upgrade", false},
		{"h2c listed in code", listed, "h2c", "Upgrade, HTTP2-Settings", false},
		{"websocket, h2c", def, "websocket, h2c", "Upgrade", false},
		{"foo unlisted", def, "foo", "Upgrade", false},
		{"foo listed", listed, "foo", "Upgrade", true},
		{"websocket", def, "websocket", "keep-alive, Upgrade", true},
		{"WebSocket/13", def, "WebSocket/13", "Upgrade", true},
	} {
		before := tunnels.Load()
		conn, err := net.DialTimeout("tcp", tc.addr, testTimeout)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(testTimeout))
		_, _ = io.WriteString(conn, "GET /app HTTP/1.1\r\nHost: a\r\nConnection: "+tc.conn+"\r\nUpgrade: "+tc.upgrade+
			"\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		s := <-seen
		if tc.tunnel {
			if resp.StatusCode != 101 || s.upgrade != tc.upgrade || !strings.EqualFold(s.connection, "upgrade") {
				t.Errorf("%s: %d, upstream saw %+v; want a tunnel", tc.name, resp.StatusCode, s)
			}
			_, _ = io.WriteString(conn, "ping")
			if b := make([]byte, 4); resp.StatusCode == 101 {
				if _, err := io.ReadFull(br, b); err != nil || string(b) != "ping" {
					t.Errorf("%s: tunnel echoed %q, %v", tc.name, b, err)
				}
			}
		} else {
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(b) != "plain" || s != (upgradeSeen{}) || tunnels.Load() != before {
				t.Errorf("%s: %d %q, upstream saw %+v; want a plain request", tc.name, resp.StatusCode, b, s)
			}
		}
		conn.Close()
	}
}

// TestProxyUpgradeSwitchedElsewhere: an upstream that answers a websocket
// request by switching to another protocol (h2c) gets no tunnel: 502.
func TestProxyUpgradeSwitchedElsewhere(t *testing.T) {
	up := rawUpstream(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(testTimeout))
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
	})
	addr := proxySite(t, config.Proxy{Upstreams: []string{up}, MaxFails: 0})
	r := get(t, addr, "GET", "/", "Connection: Upgrade", "Upgrade: websocket")
	if r.status != 502 {
		t.Errorf("status %d, want 502", r.status)
	}
}

// TestProxyTrace: TRACE is answered 405 with Allow, and never reaches the
// upstream (which would echo the request, cookies included).
func TestProxyTrace(t *testing.T) {
	var hits atomic.Int32
	up := rawUpstream(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(testTimeout))
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			hits.Add(1)
			var b strings.Builder
			_ = req.Write(&b)
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: message/http\r\nContent-Length: "+
				strconv.Itoa(b.Len())+"\r\n\r\n"+b.String())
		}
	})
	addr := proxySite(t, config.Proxy{Upstreams: []string{up}})
	r := get(t, addr, "TRACE", "/", "Cookie: session=secret")
	if r.status != 405 || r.header.Get("Allow") == "" || strings.Contains(r.header.Get("Allow"), "TRACE") ||
		strings.Contains(r.body, "secret") {
		t.Errorf("TRACE: %d Allow %q body %q", r.status, r.header.Get("Allow"), r.body)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the upstream saw %d TRACE requests", n)
	}
	if r := get(t, addr, "GET", "/"); r.status != 200 {
		t.Errorf("GET after TRACE: %d", r.status)
	}
}
