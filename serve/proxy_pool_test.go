package serve

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/hashicorp/go-hclog"
)

// countingUpstream is a raw loopback upstream that counts its connections
// and requests; serve answers each request, and returns false to close.
type countingUpstream struct {
	addr     string
	conns    atomic.Int64
	requests atomic.Int64
}

func newCountingUpstream(t *testing.T, serve func(c net.Conn, req *http.Request, n int64) bool) *countingUpstream {
	t.Helper()
	u := &countingUpstream{}
	u.addr = rawUpstream(t, func(c net.Conn) {
		u.conns.Add(1)
		_ = c.SetDeadline(time.Now().Add(testTimeout))
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			if !serve(c, req, u.requests.Add(1)) {
				return
			}
		}
	})
	return u
}

// TestProxyHostileResponses: a response two parsers could frame
// differently is a 502, and its upstream connection is discarded.
func TestProxyHostileResponses(t *testing.T) {
	for name, resp := range map[string]string{
		"cl and te":     "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"two lengths":   "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
		"bad length":    "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
		"obfuscated te": "HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
		"te list":       "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
		"garbage":       "HELLO\r\n\r\n",
		"unasked 101":   "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
		// A body that fails before any byte went out is a 502 too, not
		// a connection cut with nothing said.
		"bad chunk size": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
		"bad chunk end":  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\n5\r\nhelloXX0\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			bad := atomic.Bool{}
			bad.Store(true)
			up := newCountingUpstream(t, func(c net.Conn, req *http.Request, n int64) bool {
				if bad.Load() {
					_, _ = io.WriteString(c, resp)
				} else {
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
				return true
			})
			addr := proxySite(t, config.Proxy{Upstreams: []string{up.addr}, MaxFails: 0})
			if r := get(t, addr, "GET", "/"); r.status != 502 || r.header.Get("X-Up") != "" {
				t.Fatalf("status %d %q %v, want 502 without the upstream's fields", r.status, r.body, r.header)
			}
			bad.Store(false)
			if r := get(t, addr, "GET", "/"); r.status != 200 || r.body != "ok" {
				t.Fatalf("next: %d %q", r.status, r.body)
			}
			if n := up.conns.Load(); n != 2 {
				t.Errorf("%d upstream connections, want 2: the hostile one must be discarded", n)
			}
		})
	}
}

// TestProxyStalePooledConn: the upstream closes (with a reset) every
// connection after one response, without saying so; the next request finds
// the pooled connection dead and is sent again on a new one, for GET and for
// a POST whose body was buffered.
func TestProxyStalePooledConn(t *testing.T) {
	up := newCountingUpstream(t, func(c net.Conn, req *http.Request, n int64) bool {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		_ = c.(*net.TCPConn).SetLinger(0)
		return false
	})
	addr := proxySite(t, config.Proxy{Upstreams: []string{up.addr}})
	c := httpClient(t)
	for i, method := range []string{"GET", "POST", "GET", "PUT"} {
		req, _ := http.NewRequest(method, "http://"+addr+"/", strings.NewReader("body"))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("request %d (%s): %d %q", i, method, resp.StatusCode, b)
		}
	}
	if n := up.requests.Load(); n != 4 {
		t.Errorf("upstream answered %d requests, want 4", n)
	}
}

// TestProxyNoRetryAfterResponseBytes: once the head has gone to the client
// the request is never sent again, even when idempotent.
func TestProxyNoRetryAfterResponseBytes(t *testing.T) {
	up := newCountingUpstream(t, func(c net.Conn, req *http.Request, n int64) bool {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
		_ = c.(*net.TCPConn).SetLinger(0)
		return false
	})
	other := newCountingUpstream(t, func(c net.Conn, req *http.Request, n int64) bool {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	addr := proxySite(t, config.Proxy{Upstreams: []string{up.addr, other.addr}, MaxFails: 0})
	resp, err := httpClient(t).Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || !strings.HasPrefix(string(b), "partial") {
		t.Errorf("truncated response: %q, %v; want the partial body and an error", b, err)
	}
	if up.requests.Load() != 1 || other.requests.Load() != 0 {
		t.Errorf("requests: %d and %d, want 1 and 0", up.requests.Load(), other.requests.Load())
	}
}

// TestProxyRetryBodyBuffer: a POST whose body fits retry_body_buffer is
// read whole first and can be sent again after a stale pooled connection;
// one over it streams, and is sent only on a connection found open.
func TestProxyRetryBodyBuffer(t *testing.T) {
	closed := make(chan struct{}, 8)
	up := newCountingUpstream(t, func(c net.Conn, req *http.Request, n int64) bool {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		_ = c.(*net.TCPConn).SetLinger(0)
		_ = c.Close() // a reset, sent before the test goes on
		closed <- struct{}{}
		return false
	})
	addr := proxySite(t, config.Proxy{Upstreams: []string{up.addr}, RetryBodyBuffer: 8})
	c := httpClient(t)
	post := func(body string) int {
		resp, err := c.Post("http://"+addr+"/", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := post("small"); st != 200 {
		t.Fatalf("first: %d", st)
	}
	// The pooled connection is dead; a buffered body is sent again.
	if st := post("small"); st != 200 {
		t.Fatalf("buffered body after a stale connection: %d, want 200", st)
	}
	// A body over the buffer streams, and cannot be sent twice: a pooled
	// connection is checked before it is used for one. (The check cannot
	// see a reset still on its way: wait until the upstream has sent it.)
	<-closed
	<-closed
	if st := post("much more than eight bytes"); st != 200 {
		t.Fatalf("streamed body after a stale connection: %d, want 200", st)
	}
	if n := up.requests.Load(); n != 3 {
		t.Errorf("upstream answered %d requests, want 3", n)
	}
}

// TestProxyBalance: round robin per request with weights, and least_conn
// sending past an upstream that is busy.
func TestProxyBalance(t *testing.T) {
	var mu sync.Mutex
	hits := map[string]int{}
	mk := func(name string) string {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			hits[name]++
			mu.Unlock()
			_, _ = io.WriteString(w, name)
		}))
		t.Cleanup(up.Close)
		return upstreamAddr(up)
	}
	a, b, c := mk("a"), mk("b"), mk("c")
	addr := proxySite(t, config.Proxy{Upstreams: []string{a, b, c}, Weights: []int{2, 1, 1}})
	// Smooth weighted round robin (nginx's order): a b c a, a b c a.
	var order []string
	for range 8 {
		order = append(order, get(t, addr, "GET", "/").body)
	}
	if got := strings.Join(order, ""); got != "abcaabca" {
		t.Errorf("order %q, want abcaabca", got)
	}

	// least_conn: while a request holds the first upstream, the others
	// take the rest.
	held := newHeld(t)
	free := mk("free")
	addr = proxySite(t, config.Proxy{Upstreams: []string{held.addr, free}, Balance: config.BalanceLeastConn})
	done := make(chan rawResponse)
	go func() { done <- get(t, addr, "GET", "/") }()
	// The first request may go to either; make sure one is in the held one.
	for {
		select {
		case <-held.started:
		case r := <-done:
			if r.body != "free" {
				t.Fatalf("%d %q", r.status, r.body)
			}
			go func() { done <- get(t, addr, "GET", "/") }()
			continue
		}
		break
	}
	for range 4 {
		if r := get(t, addr, "GET", "/"); r.body != "free" {
			t.Errorf("least_conn sent a request to the busy upstream: %q", r.body)
		}
	}
	close(held.release)
	if r := <-done; r.body != "held" {
		t.Errorf("held request: %d %q", r.status, r.body)
	}
}

// held is an upstream whose answers wait for release.
type held struct {
	addr    string
	started chan struct{}
	release chan struct{}
}

func newHeld(t *testing.T) *held {
	h := &held{started: make(chan struct{}, 16), release: make(chan struct{})}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.started <- struct{}{}
		select {
		case <-h.release:
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, "held")
	}))
	t.Cleanup(up.Close)
	h.addr = upstreamAddr(up)
	return h
}

// TestProxyPassiveHealth: an upstream that failed max_fails times is skipped
// for fail_timeout; with every upstream down the answer is 502 at once.
func TestProxyPassiveHealth(t *testing.T) {
	broken := newCountingUpstream(t, func(c net.Conn, req *http.Request, n int64) bool {
		_ = c.(*net.TCPConn).SetLinger(0)
		return false // reset before answering
	})
	good := newCountingUpstream(t, func(c net.Conn, req *http.Request, n int64) bool {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	addr := proxySite(t, config.Proxy{Upstreams: []string{broken.addr, good.addr}, MaxFails: 2, FailTimeout: time.Hour})
	for i := range 10 {
		if r := get(t, addr, "GET", "/"); r.status != 200 || r.body != "ok" {
			t.Fatalf("request %d: %d %q", i, r.status, r.body)
		}
	}
	if n := broken.requests.Load(); n != 2 {
		t.Errorf("the broken upstream got %d requests, want max_fails = 2", n)
	}

	// Every upstream down: 502 without trying any.
	refused := refusedAddr(t)
	addr = proxySite(t, config.Proxy{Upstreams: []string{refused, broken.addr}, MaxFails: 1, FailTimeout: time.Hour})
	if r := get(t, addr, "GET", "/"); r.status != 502 {
		t.Fatalf("%d %q", r.status, r.body)
	}
	before := broken.conns.Load()
	for range 5 {
		if r := get(t, addr, "GET", "/"); r.status != 502 {
			t.Fatalf("%d %q", r.status, r.body)
		}
	}
	if n := broken.conns.Load(); n != before {
		t.Errorf("%d connections to an upstream that is down", n-before)
	}
}

// logLines is an hclog sink that keeps the lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestProxyQuietLogs: errors of one upstream are logged at most once per
// second, with the count of those left out.
func TestProxyQuietLogs(t *testing.T) {
	sink := &logLines{}
	logger := hclog.New(&hclog.LoggerOptions{Output: sink, Level: hclog.Warn})
	refused := refusedAddr(t)
	px := config.Proxy{Upstreams: []string{refused}, MaxFails: 0, Keepalive: 1}
	h := newHandler(t, []config.Site{{Name: "p", Routes: []config.Route{{Prefix: "/", Proxy: &px}}}}, Options{Logger: logger})
	addr := startServer(t, h, nil)
	start := time.Now()
	const n = 50
	for range n {
		if r := get(t, addr, "GET", "/"); r.status != 502 {
			t.Fatalf("%d", r.status)
		}
	}
	elapsed := time.Since(start)
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for _, msg := range []string{"upstream connect failed", "no upstream available"} {
		var lines []string
		for _, l := range sink.lines {
			if strings.Contains(l, msg) {
				lines = append(lines, l)
			}
		}
		if max := 1 + int(elapsed/time.Second); len(lines) == 0 || len(lines) > max {
			t.Errorf("%d lines %q for %d failures in %v, want 1 to %d:\n%s", len(lines), msg, n, elapsed, max, strings.Join(lines, "\n"))
		}
		if len(lines) > 1 && !regexp.MustCompile(`suppressed=\d+`).MatchString(lines[1]) {
			t.Errorf("second line has no suppressed count: %q", lines[1])
		}
	}
}

// TestProxyKeepaliveLimit: keepalive = 0 keeps no idle connection.
func TestProxyKeepaliveLimit(t *testing.T) {
	up := newCountingUpstream(t, func(c net.Conn, req *http.Request, n int64) bool {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	addr := proxySite(t, config.Proxy{Upstreams: []string{up.addr}, Keepalive: -1})
	for range 3 {
		if r := get(t, addr, "GET", "/"); r.body != "ok" {
			t.Fatal(r.status)
		}
	}
	if n := up.conns.Load(); n != 3 {
		t.Errorf("%d connections for 3 requests with keepalive = 0", n)
	}
}

// TestProxyHostAndVia: a fixed Host, and Via when asked for.
func TestProxyHostAndVia(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"host": r.Host, "via": r.Header["Via"], "xfh": r.Header.Get("X-Forwarded-Host")})
	}))
	defer up.Close()
	addr := proxySite(t, config.Proxy{Upstreams: []string{upstreamAddr(up)}, Host: "backend.internal", Via: true})
	r := get(t, addr, "GET", "/", "Via: 1.0 edge")
	var s struct {
		Host, Xfh string
		Via       []string
	}
	if err := json.Unmarshal([]byte(r.body), &s); err != nil {
		t.Fatalf("%v %q", err, r.body)
	}
	if s.Host != "backend.internal" || s.Xfh != "example.com" || strings.Join(s.Via, ", ") != "1.0 edge, 1.1 forkd" {
		t.Errorf("upstream saw %+v", s)
	}
}

// TestProxyServerSentEvents: each event reaches the client as the upstream
// sends it; the upstream sends the second only once the client has the
// first.
func TestProxyServerSentEvents(t *testing.T) {
	got1 := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-got1:
		case <-time.After(testTimeout):
			return
		}
		_, _ = io.WriteString(w, "data: two\n\n")
	}))
	defer up.Close()
	addr := proxySite(t, config.Proxy{Upstreams: []string{upstreamAddr(up)}})
	resp, err := httpClient(t).Get("http://" + addr + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for _, want := range []string{"data: one\n", "\n"} {
		if line, err := br.ReadString('\n'); err != nil || line != want {
			t.Fatalf("first event: %q %v", line, err)
		}
	}
	close(got1)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "data: two\n\n" {
		t.Fatalf("second event: %q %v", rest, err)
	}
}

// TestProxyWebSocket: an Upgrade is passed on, and after the 101 the
// connection is a tunnel both ways: an echo upstream returns a frame.
func TestProxyWebSocket(t *testing.T) {
	const guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
	accept := func(key string) string {
		h := sha1.Sum([]byte(key + guid))
		return base64.StdEncoding.EncodeToString(h[:])
	}
	upAddr := rawUpstream(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(testTimeout))
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if !strings.EqualFold(req.Header.Get("Upgrade"), "websocket") || !strings.Contains(strings.ToLower(req.Header.Get("Connection")), "upgrade") {
			_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			accept(req.Header.Get("Sec-WebSocket-Key")))
		// Echo frames until a close frame.
		for {
			op, payload, err := readFrame(br)
			if err != nil {
				return
			}
			_, _ = c.Write(frame(op, payload, false))
			if op == 8 {
				return
			}
		}
	})
	addr := proxySite(t, config.Proxy{Upstreams: []string{upAddr}})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(testTimeout))
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	// The first frame travels with the handshake: bytes the server read
	// ahead must reach the upstream too.
	_, _ = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: "+key+"\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != accept(key) ||
		!strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		t.Fatalf("handshake: %d %v", resp.StatusCode, resp.Header)
	}
	for _, msg := range []string{"hello", strings.Repeat("x", 70000)} {
		_, _ = conn.Write(frame(1, []byte(msg), true))
		op, payload, err := readFrame(br)
		if err != nil || op != 1 || string(payload) != msg {
			t.Fatalf("echo: op %d, %d bytes, %v", op, len(payload), err)
		}
	}
	_, _ = conn.Write(frame(8, nil, true))
	if op, _, err := readFrame(br); err != nil || op != 8 {
		t.Fatalf("close: %d %v", op, err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after close: %v, want EOF", err)
	}
}

// frame encodes one final WebSocket frame (RFC 6455 §5.2), masked as a
// client's must be when mask is set.
func frame(op byte, payload []byte, mask bool) []byte {
	b := []byte{0x80 | op}
	m := byte(0)
	if mask {
		m = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, m|byte(n))
	case n < 1<<16:
		b = append(b, m|126, byte(n>>8), byte(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if !mask {
		return append(b, payload...)
	}
	key := [4]byte{1, 2, 3, 4}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

// readFrame decodes one frame, unmasking it.
func readFrame(br *bufio.Reader) (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	var key [4]byte
	if h[1]&0x80 != 0 {
		if _, err := io.ReadFull(br, key[:]); err != nil {
			return 0, nil, err
		}
	}
	if n > 1<<20 {
		return 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(br, p); err != nil {
		return 0, nil, err
	}
	if h[1]&0x80 != 0 {
		for i := range p {
			p[i] ^= key[i%4]
		}
	}
	return h[0] & 0x0f, bytes.Clone(p), nil
}

// TestProxyResponseHeadLimits: limits.header_bytes and header_count bound
// upstream response heads as they bound requests; over them is a 502.
func TestProxyResponseHeadLimits(t *testing.T) {
	up := newCountingUpstream(t, func(c net.Conn, req *http.Request, n int64) bool {
		var b strings.Builder
		b.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n")
		fields := 3
		if req.URL.Path == "/many" {
			fields = 8
		}
		size := 10
		if req.URL.Path == "/long" {
			size = 3000
		}
		for i := range fields {
			fmt.Fprintf(&b, "X-%d: %s\r\n", i, strings.Repeat("v", size))
		}
		b.WriteString("\r\nok")
		_, _ = io.WriteString(c, b.String())
		return true
	})
	lim := config.Limits{HeaderBytes: 2048, HeaderCount: 6}
	px := config.Proxy{Upstreams: []string{up.addr}, Keepalive: 4}
	h, err := New(&config.Config{Limits: lim, Sites: []config.Site{{Name: "p", Routes: []config.Route{{Prefix: "/", Proxy: &px}}}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.(io.Closer).Close() })
	addr := startServer(t, h, nil)
	for path, want := range map[string]int{"/few": 200, "/many": 502, "/long": 502} {
		if r := get(t, addr, "GET", path); r.status != want {
			t.Errorf("%s: %d, want %d", path, r.status, want)
		}
	}
}

// TestProxyIdleClosedStreamedPost: the upstream closes a pooled connection
// while it is idle; the next POST, with a body too large to be read whole
// and sent again, goes out on a fresh connection and succeeds.
func TestProxyIdleClosedStreamedPost(t *testing.T) {
	closed := make(chan struct{}, 4)
	up := newCountingUpstream(t, func(c net.Conn, req *http.Request, n int64) bool {
		_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%d", len(strconv.Itoa(int(req.ContentLength))), req.ContentLength)
		if n == 1 {
			_ = c.Close() // a FIN while the connection idles in the pool
			closed <- struct{}{}
			return false
		}
		return true
	})
	addr := proxySite(t, config.Proxy{Upstreams: []string{up.addr}, RetryBodyBuffer: 8})
	c := httpClient(t)
	post := func(body string) (int, string) {
		resp, err := c.Post("http://"+addr+"/", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	if st, _ := post("x"); st != 200 {
		t.Fatalf("first: %d", st)
	}
	<-closed
	big := strings.Repeat("b", 1<<20)
	if st, b := post(big); st != 200 || b != strconv.Itoa(len(big)) {
		t.Fatalf("streamed body after the upstream closed the pooled connection: %d %q, want 200", st, b)
	}
	if n := up.conns.Load(); n != 2 {
		t.Errorf("upstream connections: %d, want 2", n)
	}
}

// TestProxyKeepaliveTimeout: a pooled upstream connection idle for
// keepalive_timeout is closed, and the upstream sees its end.
func TestProxyKeepaliveTimeout(t *testing.T) {
	ended := make(chan error, 1)
	up := rawUpstream(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(testTimeout))
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		_, err = br.ReadByte()
		ended <- err
	})
	addr := proxySite(t, config.Proxy{Upstreams: []string{up}, KeepaliveTimeout: 50 * time.Millisecond})
	if r := get(t, addr, "GET", "/"); r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	select {
	case err := <-ended:
		if err != io.EOF {
			t.Fatalf("upstream read %v, want EOF", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("the idle upstream connection was not closed")
	}
}

// TestProxyTrailers: the trailer fields of a chunked upstream response
// reach an HTTP/1.1 client, less the hop-by-hop ones, those named in
// Connection and those a trailer may not carry; an HTTP/1.0 client gets the
// body without them.
func TestProxyTrailers(t *testing.T) {
	up := newCountingUpstream(t, func(c net.Conn, req *http.Request, n int64) bool {
		body := "hello"
		if req.URL.Path == "/big" {
			body = strings.Repeat("x", 100<<10) // streamed, not buffered whole
		}
		_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n"+
			"%x\r\n%s\r\n0\r\nX-Sum: 42\r\nX-Hop: 1\r\nKeep-Alive: timeout=1\r\nContent-Length: 9\r\nX-Other: b\r\n\r\n", len(body), body)
		return true
	})
	addr := proxySite(t, config.Proxy{Upstreams: []string{up.addr}})
	c := httpClient(t)
	for _, path := range []string{"/small", "/big"} {
		resp, err := c.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || (path == "/small") != (string(b) == "hello") {
			t.Fatalf("%s: %d %d bytes, %v", path, resp.StatusCode, len(b), err)
		}
		want := http.Header{"X-Sum": {"42"}, "X-Other": {"b"}}
		if fmt.Sprint(resp.Trailer) != fmt.Sprint(want) {
			t.Errorf("%s: trailer %v, want %v", path, resp.Trailer, want)
		}
	}
	r := rawRequest(t, addr, "GET", "GET /small HTTP/1.0\r\n\r\n")
	if r.status != 200 || r.body != "hello" {
		t.Errorf("HTTP/1.0: %d %q", r.status, r.body)
	}
}

// upgradeUpstream answers an upgrade request with 101 and hands the
// connection to fn; it reports on ended how fn's last read ended.
func upgradeUpstream(t *testing.T, fn func(c net.Conn, br *bufio.Reader) error) (addr string, ended chan error) {
	ended = make(chan error, 1)
	addr = rawUpstream(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(testTimeout))
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		ended <- fn(c, br)
	})
	return addr, ended
}

// dialUpgrade opens a tunnel through the proxy at addr.
func dialUpgrade(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(testTimeout))
	_, _ = io.WriteString(conn, "GET /t HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	return conn, br
}

// waitEnd waits for a read that ends the tunnel, on the client's side (an
// EOF or a reset) and on the upstream's (through ended).
func waitEnd(t *testing.T, br *bufio.Reader, ended chan error) {
	t.Helper()
	if _, err := io.Copy(io.Discard, br); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client side: %v, want the end of the tunnel", err)
	}
	select {
	case err := <-ended:
		if err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("upstream side: %v, want the end of the tunnel", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("the upstream side of the tunnel was not closed")
	}
}

// TestProxyTunnelIdle: a tunnel stays open past response_timeout while
// bytes go one way (here upstream to client; the other way is idle all
// along), and is closed on both sides once neither way has moved for
// response_timeout.
func TestProxyTunnelIdle(t *testing.T) {
	const timeout = time.Second
	stop := make(chan struct{})
	addr, ended := upgradeUpstream(t, func(c net.Conn, br *bufio.Reader) error {
		// As fast as the client reads, until told to stop.
		dots := bytes.Repeat([]byte{'.'}, 512)
	loop:
		for {
			select {
			case <-stop:
				break loop
			default:
			}
			if _, err := c.Write(dots); err != nil {
				return err
			}
		}
		// Then echo one line, and wait for more.
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if _, err := io.WriteString(c, line); err != nil {
			return err
		}
		_, err = br.ReadByte()
		return err
	})
	px := proxySite(t, config.Proxy{Upstreams: []string{addr}, ResponseTimeout: timeout})
	conn, br := dialUpgrade(t, px)
	until := time.Now().Add(3 * timeout)
	for time.Now().Before(until) {
		if _, err := br.ReadByte(); err != nil {
			t.Fatalf("tunnel with traffic ended: %v", err)
		}
	}
	close(stop)
	// The client-to-upstream way, idle all this time, still works.
	_, _ = io.WriteString(conn, "ping\n")
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("echo after %v of one-way traffic: %v", 3*timeout, err)
		}
		if strings.TrimLeft(line, ".") == "ping\n" {
			break
		}
	}
	// Now idle both ways: closed on both sides.
	waitEnd(t, br, ended)
}

// TestProxyTunnelClose: closing the proxy (as the worker does once its
// server has shut down, which does not wait for hijacked connections)
// ends the tunnels on both sides.
func TestProxyTunnelClose(t *testing.T) {
	addr, ended := upgradeUpstream(t, func(c net.Conn, br *bufio.Reader) error {
		_, err := br.ReadByte()
		return err
	})
	h := newHandler(t, []config.Site{{Name: "p", Hosts: []string{"*"}, Routes: []config.Route{
		{Prefix: "/", Proxy: &config.Proxy{Upstreams: []string{addr}, Keepalive: 4, RetryBodyBuffer: 1024}},
	}}}, Options{})
	_, br := dialUpgrade(t, startServer(t, h, nil))
	if err := h.(io.Closer).Close(); err != nil {
		t.Fatal(err)
	}
	waitEnd(t, br, ended)
}
