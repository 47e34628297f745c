package serve

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/protocol"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/forkd/forkd/internal/testserver"
)

// proxySite is a site whose "/" route proxies to upstreams, with the
// file's defaults for keys the test leaves zero (keepalive 0 is written
// as -1).
func proxySite(t *testing.T, px config.Proxy) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return proxySiteOn(t, px, ln, protocol.ListenOptions{})
}

// proxySiteOn is proxySite served on ln with o.
func proxySiteOn(t *testing.T, px config.Proxy, ln net.Listener, o protocol.ListenOptions) string {
	t.Helper()
	switch px.Keepalive {
	case 0:
		px.Keepalive = config.DefaultKeepalive
	case -1:
		px.Keepalive = 0
	}
	if px.RetryBodyBuffer == 0 {
		px.RetryBodyBuffer = config.DefaultRetryBodyBuffer
	}
	h := newHandler(t, []config.Site{{Name: "p", Hosts: []string{"*"}, Routes: []config.Route{
		{Prefix: "/", Proxy: &px},
		{Prefix: "/local/", Respond: &config.Respond{Status: 200, Body: "local"}},
	}}}, Options{})
	return serveWith(t, h, ln, o, nil)
}

// upstreamAddr returns the host:port of an httptest server.
func upstreamAddr(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

// rawUpstream runs a TCP server on loopback that hands each connection to fn.
func rawUpstream(t *testing.T, fn func(c net.Conn)) string {
	t.Helper()
	return testserver.Start(t, fn).Addr
}

// requestUpstream is an upstream that reads the requests on each
// connection one after another (testTimeout for the whole connection) and
// hands each to serve with the connection and its reader, from which a
// tunnel goes on reading; the connection ends when serve returns false or
// no request can be read.
func requestUpstream(t *testing.T, serve func(c net.Conn, br *bufio.Reader, req *http.Request) bool) string {
	t.Helper()
	return rawUpstream(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(testTimeout))
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil || !serve(c, br, req) {
				return
			}
		}
	})
}

// refusedAddr returns a loopback address nothing listens on.
func refusedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestProxyHeaders(t *testing.T) {
	type seen struct {
		Method, URI, Host string
		Header            http.Header
		Body              string
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(seen{r.Method, r.RequestURI, r.Host, r.Header, string(b)})
	}))
	defer up.Close()
	addr := proxySite(t, config.Proxy{Upstreams: []string{upstreamAddr(up)}})

	r := rawRequest(t, addr, "POST", "POST /x/../api/%7Euser?q=1&r=%20 HTTP/1.1\r\n"+
		"Host: Front.Example:8080\r\n"+
		"Connection: keep-alive, X-Hop\r\n"+
		"X-Hop: drop me\r\n"+
		"Keep-Alive: timeout=5\r\n"+
		"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"+
		"Proxy-Connection: keep-alive\r\n"+
		"TE: trailers\r\n"+
		"Trailer: X-T\r\n"+
		"X-Forwarded-For: 10.0.0.1\r\n"+
		"X-Forwarded-Proto: https\r\n"+
		"X-Forwarded-Host: evil\r\n"+
		"Forwarded: for=10.0.0.1\r\n"+
		"X-Real-IP: 10.0.0.1\r\n"+
		"X-Keep: kept\r\n"+
		"User-Agent: tester/1\r\n"+
		"Content-Length: 5\r\n\r\nhello")
	if r.status != 200 {
		t.Fatalf("status %d body %q", r.status, r.body)
	}
	var s seen
	if err := json.Unmarshal([]byte(r.body), &s); err != nil {
		t.Fatalf("%v: %q", err, r.body)
	}
	if s.Method != "POST" || s.URI != "/api/~user?q=1&r=%20" || s.Host != "Front.Example:8080" || s.Body != "hello" {
		t.Errorf("upstream saw %s %s Host %s body %q", s.Method, s.URI, s.Host, s.Body)
	}
	// The peer is not trusted: forkd's own forwarding fields replace
	// the client's.
	want := map[string]string{
		"X-Forwarded-For":   "127.0.0.1",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "Front.Example:8080",
		"X-Keep":            "kept",
		"User-Agent":        "tester/1",
	}
	for k, v := range want {
		if got := s.Header.Get(k); got != v {
			t.Errorf("upstream header %s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"X-Hop", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Te", "Trailer",
		"Forwarded", "X-Real-Ip"} {
		if v, ok := s.Header[k]; ok {
			t.Errorf("%s reached the upstream: %q", k, v)
		}
	}

	// A canonical path travels exactly as received, encoded slash included.
	r = get(t, addr, "GET", "/api/a%2Fb/%7e?x")
	s = seen{}
	if err := json.Unmarshal([]byte(r.body), &s); err != nil {
		t.Fatal(err)
	}
	if s.URI != "/api/a%2Fb/%7e?x" {
		t.Errorf("upstream saw %q", s.URI)
	}
	// Without a User-Agent none is invented.
	if _, ok := s.Header["User-Agent"]; ok {
		t.Errorf("upstream saw User-Agent %q", s.Header["User-Agent"])
	}
	// Routes still apply in front of the proxy.
	if r := get(t, addr, "GET", "/local/x"); r.body != "local" {
		t.Errorf("/local/x: %q", r.body)
	}
}

func TestProxyResponseHopByHop(t *testing.T) {
	up := rawUpstream(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			_, _ = io.WriteString(c, "HTTP/1.1 201 Created\r\n"+
				"Connection: X-Resp-Hop\r\n"+
				"X-Resp-Hop: 1\r\n"+
				"Keep-Alive: timeout=5\r\n"+
				"Proxy-Authenticate: Basic\r\n"+
				"Upgrade: h2c\r\n"+
				"X-Resp-Keep: 1\r\n"+
				"Set-Cookie: a=1\r\n"+
				"Set-Cookie: b=2\r\n"+
				"Transfer-Encoding: chunked\r\n\r\n"+
				"5\r\nhello\r\n0\r\n\r\n")
		}
	})
	addr := proxySite(t, config.Proxy{Upstreams: []string{up}})
	r := get(t, addr, "GET", "/")
	if r.status != 201 || r.body != "hello" {
		t.Fatalf("%d %q", r.status, r.body)
	}
	for _, k := range []string{"X-Resp-Hop", "Keep-Alive", "Proxy-Authenticate", "Upgrade"} {
		if v, ok := r.header[k]; ok {
			t.Errorf("hop-by-hop %s reached the client: %q", k, v)
		}
	}
	if r.header.Get("X-Resp-Keep") != "1" || len(r.header["Set-Cookie"]) != 2 {
		t.Errorf("end-to-end fields lost: %v", r.header)
	}
}

func TestProxyFailover(t *testing.T) {
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, "up")
	}))
	defer up.Close()
	dead := refusedAddr(t)
	addr := proxySite(t, config.Proxy{Upstreams: []string{dead, upstreamAddr(up)}, ConnectTimeout: 2 * time.Second})
	for i := 0; i < 6; i++ {
		// New connections each time, so that each one dials.
		if r := get(t, addr, "GET", fmt.Sprintf("/n%d", i)); r.status != 200 || r.body != "up" {
			t.Fatalf("request %d: %d %q", i, r.status, r.body)
		}
	}
	if hits.Load() != 6 {
		t.Errorf("upstream hits = %d", hits.Load())
	}
}

func TestProxyRoundRobin(t *testing.T) {
	var a, b atomic.Int64
	upA := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.Add(1)
		w.Header().Set("Connection", "close") // a fresh dial per request
	}))
	defer upA.Close()
	upB := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.Add(1)
		w.Header().Set("Connection", "close")
	}))
	defer upB.Close()
	addr := proxySite(t, config.Proxy{Upstreams: []string{upstreamAddr(upA), upstreamAddr(upB)}})
	for i := 0; i < 10; i++ {
		if r := get(t, addr, "GET", "/"); r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
	}
	if a.Load() != 5 || b.Load() != 5 {
		t.Errorf("round robin: %d / %d, want 5 / 5", a.Load(), b.Load())
	}
}

func TestProxyAllRefused(t *testing.T) {
	addr := proxySite(t, config.Proxy{Upstreams: []string{refusedAddr(t), refusedAddr(t)}})
	r := get(t, addr, "GET", "/")
	if r.status != 502 || r.body != "502 Bad Gateway\n" {
		t.Errorf("%d %q", r.status, r.body)
	}
}

func TestProxyResponseTimeout(t *testing.T) {
	release := make(chan struct{})
	up := rawUpstream(t, func(c net.Conn) {
		_, _ = http.ReadRequest(bufio.NewReader(c))
		<-release // never answer
	})
	defer close(release)
	addr := proxySite(t, config.Proxy{Upstreams: []string{up}, ResponseTimeout: 200 * time.Millisecond})
	r := get(t, addr, "GET", "/slow")
	if r.status != 504 || r.body != "504 Gateway Timeout\n" {
		t.Errorf("%d %q", r.status, r.body)
	}
}

func TestProxyUpstreamReset(t *testing.T) {
	reset := func(c net.Conn) {
		_ = c.(*net.TCPConn).SetLinger(0) // close sends RST
	}
	cases := map[string]func(c net.Conn){
		"after request": func(c net.Conn) {
			_, _ = http.ReadRequest(bufio.NewReader(c))
			reset(c)
		},
		"mid header": func(c net.Conn) {
			_, _ = http.ReadRequest(bufio.NewReader(c))
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Le")
			reset(c)
		},
		"garbage": func(c net.Conn) {
			_, _ = http.ReadRequest(bufio.NewReader(c))
			_, _ = io.WriteString(c, "\x00\x01 not http\r\n\r\n")
			reset(c)
		},
		"on accept": func(c net.Conn) {
			reset(c)
		},
	}
	for name, fn := range cases {
		t.Run(name, func(t *testing.T) {
			up := rawUpstream(t, fn)
			addr := proxySite(t, config.Proxy{Upstreams: []string{up}})
			for i := 0; i < 3; i++ {
				if r := get(t, addr, "GET", "/"); r.status != 502 {
					t.Errorf("status %d, want 502", r.status)
				}
			}
		})
	}
}

func TestProxyResetMidBody(t *testing.T) {
	up := rawUpstream(t, func(c net.Conn) {
		_, _ = http.ReadRequest(bufio.NewReader(c))
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
		_, _ = c.Write(make([]byte, 50000))
		_ = c.(*net.TCPConn).SetLinger(0)
	})
	addr := proxySite(t, config.Proxy{Upstreams: []string{up}})
	c := httpClient(t)
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil || n >= 1000000 {
		t.Errorf("truncated upstream body arrived as complete: %d bytes, err %v", n, err)
	}
	// The worker lives on.
	if r := get(t, addr, "GET", "/local/"); r.body != "local" {
		t.Errorf("after reset: %d %q", r.status, r.body)
	}
}

// pattern fills b with the bytes of a stream at offset off.
func pattern(b []byte, off int64) {
	for i := range b {
		x := off + int64(i)
		b[i] = byte(x ^ x>>8 ^ x>>16)
	}
}

func TestProxyLargeResponseStreams(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			size := int64(64 << 20)
			if chunked {
				size = 16 << 20
			}
			const block = 256 << 10
			var clientRead atomic.Int64
			progress := make(chan struct{}, 1)
			waitClient := func(n int64) bool {
				deadline := time.After(testTimeout)
				for clientRead.Load() < n {
					select {
					case <-progress:
					case <-deadline:
						return false
					}
				}
				return true
			}
			want := sha256.New()
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !chunked {
					w.Header().Set("Content-Length", fmt.Sprint(size))
				}
				buf := make([]byte, block)
				for off := int64(0); off < size; off += block {
					// The upstream does not send past 8 MiB until the client
					// has seen the first bytes, nor past half the body until
					// the client has a quarter of it: a proxy that buffered
					// whole bodies would never get here.
					if (off == 8<<20 && !waitClient(1)) || (off == size/2 && !waitClient(size/4)) {
						t.Error("client saw nothing: the proxy is not streaming")
						return
					}
					pattern(buf, off)
					if _, err := w.Write(buf); err != nil {
						return
					}
				}
			}))
			defer up.Close()
			buf := make([]byte, block)
			for off := int64(0); off < size; off += block {
				pattern(buf, off)
				want.Write(buf)
			}
			addr := proxySite(t, config.Proxy{Upstreams: []string{upstreamAddr(up)}})
			c := httpClient(t)
			resp, err := c.Get("http://" + addr + "/big")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if !chunked && resp.ContentLength != size {
				t.Errorf("Content-Length %d", resp.ContentLength)
			}
			got := sha256.New()
			small := make([]byte, 16<<10) // a slow, small-bite reader
			for {
				n, err := resp.Body.Read(small)
				got.Write(small[:n])
				clientRead.Add(int64(n))
				select {
				case progress <- struct{}{}:
				default:
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if clientRead.Load() != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
				t.Errorf("got %d bytes, sha %x; want %d bytes, sha %x", clientRead.Load(), got.Sum(nil), size, want.Sum(nil))
			}
		})
	}
}

func TestProxyRequestBodyStreams(t *testing.T) {
	const first = 1 << 20
	gotFirst := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		if _, err := io.CopyN(h, r.Body, first); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		close(gotFirst)
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %s", n+first, hex.EncodeToString(h.Sum(nil)))
	}))
	defer up.Close()
	addr := proxySite(t, config.Proxy{Upstreams: []string{upstreamAddr(up)}})

	pr, pw := io.Pipe()
	want := sha256.New()
	const total = 6 << 20
	go func() {
		buf := make([]byte, 64<<10)
		for off := int64(0); off < total; off += int64(len(buf)) {
			if off == first {
				// The rest waits until the upstream has the first MiB: a
				// proxy that buffered whole request bodies would stall here.
				select {
				case <-gotFirst:
				case <-time.After(testTimeout):
					pw.CloseWithError(fmt.Errorf("upstream never saw the first MiB"))
					return
				}
			}
			pattern(buf, off)
			want.Write(buf)
			if _, err := pw.Write(buf); err != nil {
				return
			}
		}
		pw.Close()
	}()
	c := httpClient(t)
	resp, err := c.Post("http://"+addr+"/upload", "application/octet-stream", pr) // chunked
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if exp := fmt.Sprintf("%d %x", total, want.Sum(nil)); resp.StatusCode != 200 || string(b) != exp {
		t.Errorf("%d %q, want %q", resp.StatusCode, b, exp)
	}

	// And with a Content-Length.
	body := make([]byte, 3<<20)
	pattern(body, 0)
	gotFirst = make(chan struct{})
	resp, err = c.Post("http://"+addr+"/upload", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	sum := sha256.Sum256(body)
	if exp := fmt.Sprintf("%d %x", len(body), sum); string(b) != exp {
		t.Errorf("%q, want %q", b, exp)
	}
}

func TestProxyUnixUpstream(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "up.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "via unix "+r.URL.Path)
	}))
	up.Listener = ln
	up.Start()
	defer up.Close()
	addr := proxySite(t, config.Proxy{Upstreams: []string{"unix:" + sock}})
	if r := get(t, addr, "GET", "/p"); r.status != 200 || r.body != "via unix /p" {
		t.Errorf("%d %q", r.status, r.body)
	}
	if r := get(t, addr, "HEAD", "/p"); r.status != 200 || r.body != "" {
		t.Errorf("HEAD: %d %q", r.status, r.body)
	}
}

func TestProxyKeepAlivePool(t *testing.T) {
	var conns atomic.Int64
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	up.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	up.Start()
	defer up.Close()
	addr := proxySite(t, config.Proxy{Upstreams: []string{upstreamAddr(up)}})
	for i := 0; i < 20; i++ {
		if r := get(t, addr, "GET", "/"); r.body != "ok" {
			t.Fatalf("%d %q", r.status, r.body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("20 sequential requests used %d upstream connections, want 1", n)
	}
}

func TestProxyNewErrors(t *testing.T) {
	for _, ups := range [][]string{nil, {"nohost"}, {"h:0"}, {"h:x"}, {":80"}, {"unix:rel.sock"}} {
		px := config.Proxy{Upstreams: ups}
		_, err := New(&config.Config{Sites: []config.Site{{Name: "s", Routes: []config.Route{{Prefix: "/", Proxy: &px}}}}}, Options{})
		if err == nil {
			t.Errorf("New accepted upstreams %q", ups)
		}
	}
}

func TestProxyResetMidChunkedBody(t *testing.T) {
	up := rawUpstream(t, func(c net.Conn) {
		_, _ = http.ReadRequest(bufio.NewReader(c))
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
		_ = c.(*net.TCPConn).SetLinger(0)
	})
	addr := proxySite(t, config.Proxy{Upstreams: []string{up}})
	c := httpClient(t)
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Errorf("truncated chunked body arrived as complete: %q", b)
	}
	if r := get(t, addr, "GET", "/local/"); r.body != "local" {
		t.Errorf("after reset: %d %q", r.status, r.body)
	}
}

// TestProxyConnectTimeout dials an upstream whose accept queue is full, so
// that its SYNs go unanswered: the connect times out, and the next upstream
// is tried.
func TestProxyConnectTimeout(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	full := fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
	// Fill the accept queue; once a dial times out, the queue is full.
	filled := false
	for i := 0; i < 16 && !filled; i++ {
		c, err := net.DialTimeout("tcp", full, 300*time.Millisecond)
		if err != nil {
			filled = true
			break
		}
		defer c.Close()
	}
	if !filled {
		t.Fatal("the kernel accepted every connect; cannot make a connect time out")
	}

	addr := proxySite(t, config.Proxy{Upstreams: []string{full}, ConnectTimeout: 200 * time.Millisecond})
	if r := get(t, addr, "GET", "/"); r.status != 502 || r.body != "502 Bad Gateway\n" {
		t.Errorf("connect timeout: %d %q, want 502", r.status, r.body)
	}

	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "second")
	}))
	defer up.Close()
	addr = proxySite(t, config.Proxy{Upstreams: []string{full, upstreamAddr(up)}, ConnectTimeout: 200 * time.Millisecond})
	if r := get(t, addr, "GET", "/"); r.status != 200 || r.body != "second" {
		t.Errorf("failover after a connect timeout: %d %q", r.status, r.body)
	}
}

func TestProxyExpectContinue(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "expect=%q body=%q", r.Header.Get("Expect"), b)
	}))
	defer up.Close()
	addr := proxySite(t, config.Proxy{Upstreams: []string{upstreamAddr(up)}})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(testTimeout))
	_, _ = io.WriteString(conn, "POST /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("interim response %q, %v", line, err)
	}
	if line, err = br.ReadString('\n'); err != nil || line != "\r\n" {
		t.Fatalf("interim response end %q, %v", line, err)
	}
	_, _ = io.WriteString(conn, "data")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != `expect="" body="data"` {
		t.Errorf("%d %q", resp.StatusCode, b)
	}
}

func TestProxyBodyTooLarge(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer up.Close()
	px := config.Proxy{Upstreams: []string{upstreamAddr(up)}}
	h := newHandler(t, []config.Site{{Name: "p", Routes: []config.Route{{Prefix: "/", Proxy: &px}}}}, Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := protocol.DefaultLimits()
	lim.BodyBytes = 1000
	srv := &protocol.Server{Handler: h, Limits: lim, Logger: hclog.NewNullLogger()}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	chunk := strings.Repeat("x", 600)
	r := rawRequest(t, ln.Addr().String(), "POST", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"258\r\n"+chunk+"\r\n258\r\n"+chunk+"\r\n0\r\n\r\n")
	if r.status != 413 {
		t.Errorf("status %d, want 413", r.status)
	}
}

// TestProxyForwardedTrusted: forwarding fields are believed only from a
// peer in the listener's trusted list. 127.0.0.1 and 127.0.0.2 are both
// loopback: the client binds one or the other to be a different peer.
func TestProxyForwardedTrusted(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(r.Header)
	}))
	defer up.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := proxySiteOn(t, config.Proxy{Upstreams: []string{upstreamAddr(up)}}, ln,
		protocol.ListenOptions{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	req := "GET /x HTTP/1.1\r\nHost: front.example\r\nConnection: close\r\n" +
		"X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\nX-Forwarded-Proto: https\r\n" +
		"X-Forwarded-Host: public.example\r\nForwarded: for=10.0.0.1;proto=https\r\nX-Real-IP: 10.0.0.1\r\n\r\n"
	for _, tc := range []struct {
		from string
		want map[string]string
	}{
		{"127.0.0.1", map[string]string{
			"X-Forwarded-For": "10.0.0.1, 10.0.0.2, 127.0.0.1", "X-Forwarded-Proto": "https",
			"X-Forwarded-Host": "public.example", "Forwarded": "for=10.0.0.1;proto=https", "X-Real-Ip": "10.0.0.1",
		}},
		{"127.0.0.2", map[string]string{
			"X-Forwarded-For": "127.0.0.2", "X-Forwarded-Proto": "http",
			"X-Forwarded-Host": "front.example", "Forwarded": "", "X-Real-Ip": "",
		}},
	} {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(tc.from)}, Timeout: testTimeout}
		conn, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		r := readRaw(t, conn, "GET", req)
		var h http.Header
		if err := json.Unmarshal([]byte(r.body), &h); err != nil {
			t.Fatalf("from %s: %d %q: %v", tc.from, r.status, r.body, err)
		}
		for k, v := range tc.want {
			if got := strings.Join(h[k], ", "); got != v {
				t.Errorf("from %s: upstream saw %s %q, want %q", tc.from, k, got, v)
			}
		}
	}
}
