package test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forkd/forkd/internal/testserver"
)

// rawProxyUpstream is a loopback upstream that hands each request, parsed
// by net/http's reader, to fn with the raw connection, and counts its
// connections. fn returns false to end the connection. Each connection
// lives at most 2*clientTimeout, or life when set.
type rawProxyUpstream struct {
	addr string
	ts   *testserver.Server
}

func newRawProxyUpstream(t *testing.T, fn func(c net.Conn, req *http.Request) bool) *rawProxyUpstream {
	return newRawProxyUpstreamLife(t, 2*clientTimeout, fn)
}

func newRawProxyUpstreamLife(t *testing.T, life time.Duration, fn func(c net.Conn, req *http.Request) bool) *rawProxyUpstream {
	t.Helper()
	ts := testserver.Start(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(life))
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if !fn(c, req) {
				return
			}
			io.Copy(io.Discard, req.Body)
		}
	})
	return &rawProxyUpstream{addr: ts.Addr, ts: ts}
}

// proxySites is a site whose routes proxy, each prefix to its upstreams,
// with the extra keys in every proxy block.
func proxySites(routes map[string]string, extra string) string {
	var b strings.Builder
	b.WriteString("site \"p\" {\n  hosts = [\"*\"]\n")
	for prefix, ups := range routes {
		fmt.Fprintf(&b, "  route %q {\n    proxy {\n      upstreams = [%s]\n%s    }\n  }\n", prefix, ups, extra)
	}
	b.WriteString("  route \"/ok\" {\n    respond {\n      body = \"ok\"\n    }\n  }\n}\n")
	return b.String()
}

// TestProxyFaultPaths drives a real master whose proxy routes lead to
// upstreams that misbehave in every way the proxy must survive.
func TestProxyFaultPaths(t *testing.T) {
	ok := func(c net.Conn, req *http.Request) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	}
	good := newRawProxyUpstream(t, ok)
	dies := newRawProxyUpstream(t, func(c net.Conn, req *http.Request) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
		return false
	})
	slow := newHeldUpstream(t)
	resets := newRawProxyUpstream(t, func(c net.Conn, req *http.Request) bool {
		// Answer, then reset the connection without a word: the next
		// request finds its pooled connection dead.
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		c.(*net.TCPConn).SetLinger(0)
		return false
	})
	hostile := newRawProxyUpstream(t, func(c net.Conn, req *http.Request) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled")
		return true
	})
	lnRefused, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := lnRefused.Addr().String()
	lnRefused.Close()
	q := func(s string) string { return strconv.Quote(s) }

	s := start(t, opts{workers: 1, sites: proxySites(map[string]string{
		"/good/":     q(good.addr),
		"/dies/":     q(dies.addr),
		"/slow/":     q(slow.addr),
		"/resets/":   q(resets.addr),
		"/hostile/":  q(hostile.addr),
		"/refused/":  q(refused),
		"/down/":     q(refused) + ", " + q(refused),
		"/failover/": q(refused) + ", " + q(good.addr),
	}, "      max_fails = 0\n      response_timeout = \"2s\"\n")})
	worker := s.workers()
	client := &http.Client{Timeout: clientTimeout}

	expect := func(path string, status int, body string) {
		t.Helper()
		st, b, err := get(s.addr, path)
		if err != nil || st != status || (body != "" && b != body) {
			t.Errorf("%s: %d %q %v, want %d %q", path, st, b, err, status, body)
		}
	}
	expect("/good/", 200, "ok")
	expect("/refused/", 502, "")
	expect("/down/", 502, "")
	expect("/failover/", 200, "ok")
	for range 3 {
		expect("/hostile/", 502, "")
	}
	if n := hostile.ts.Conns(); n != 3 {
		t.Errorf("the hostile upstream's connections were reused: %d for 3 requests", n)
	}
	// Dies mid-response: the client sees the body cut short, never a
	// complete response.
	resp, err := client.Get("http://" + s.addr + "/dies/")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Errorf("a response cut by the upstream arrived whole: %q", b)
	}
	// Slow: 504 after response_timeout.
	expect("/slow/", 504, "")
	slow.answer()
	// Pooled connections reset while idle: every request still succeeds,
	// over a client connection that is kept alive.
	for i := range 5 {
		resp, err := client.Get("http://" + s.addr + "/resets/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("reset pooled connection, request %d: %d %q", i, resp.StatusCode, b)
		}
	}
	// The worker lived through all of it.
	expect("/ok", 200, "ok")
	if w := s.workers(); len(w) != 1 || len(worker) != 1 || w[0] != worker[0] {
		t.Errorf("workers %v, were %v: one crashed", w, worker)
	}
}

// vmHWM returns a process's peak resident set size in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM for %d", pid)
	return 0
}

// pattern fills p with bytes that depend on their offset.
type patternReader struct{ n, off int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n-r.off)]
	for i := range p {
		p[i] = byte((r.off + int64(i)) % 251)
	}
	r.off += int64(len(p))
	return len(p), nil
}

// TestProxyStreamsGigabytes sends 1 GiB up and 1 GiB down through the
// proxy; the worker's peak RSS stays under 64 MiB: bodies stream through
// fixed buffers.
func TestProxyStreamsGigabytes(t *testing.T) {
	const size = 1 << 30
	block := make([]byte, 256<<10)
	// A loaded CI machine may take minutes over 2 GiB with the race
	// detector on the test's side: the upstream's connection may live
	// that long (the proxy's response_timeout is the default 60s of no
	// progress).
	up := newRawProxyUpstreamLife(t, 10*time.Minute, func(c net.Conn, req *http.Request) bool {
		if req.Method == "POST" {
			n, err := io.CopyBuffer(io.Discard, req.Body, make([]byte, 256<<10))
			if err != nil {
				return false
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%d", len(strconv.FormatInt(n, 10)), n)
			return true
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
		for left := size; left > 0; left -= len(block) {
			if _, err := c.Write(block[:min(left, len(block))]); err != nil {
				return false
			}
		}
		return true
	})
	s := start(t, opts{workers: 1, extra: "limits {\n  body_bytes = 2147483648\n}\n",
		sites: proxySites(map[string]string{"/": strconv.Quote(up.addr)}, "")})
	w := s.workers()
	if len(w) != 1 {
		t.Fatalf("workers %v", w)
	}
	client := &http.Client{Timeout: 10 * clientTimeout}

	resp, err := client.Get("http://" + s.addr + "/down")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256<<10)
	n, err := io.CopyBuffer(io.Discard, resp.Body, buf)
	resp.Body.Close()
	if err != nil || n != size {
		t.Fatalf("download: %d bytes, %v", n, err)
	}

	req, _ := http.NewRequest("POST", "http://"+s.addr+"/up", &patternReader{n: size})
	req.ContentLength = size
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != strconv.Itoa(size) {
		t.Fatalf("upload: %d %q", resp.StatusCode, b)
	}
	if hwm := vmHWM(t, w[0]); hwm >= 64<<20 {
		t.Errorf("worker peak RSS %d MiB, want under 64 MiB", hwm>>20)
	} else {
		t.Logf("worker peak RSS %.1f MiB", float64(hwm)/(1<<20))
	}
}

// TestProxyTunnelDrain: a graceful stop ends the upgraded tunnels of the
// workers (the server does not wait for hijacked connections; the proxy
// closes them when the worker closes its handler): both ends of the tunnel
// see it close, and the master exits long before graceful_timeout.
func TestProxyTunnelDrain(t *testing.T) {
	ended := make(chan error, 1)
	up := testserver.Start(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(2 * clientTimeout))
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_, err := br.ReadByte()
		ended <- err
	})
	s := start(t, opts{workers: 1, extra: "graceful_timeout = \"60s\"\n",
		sites: proxySites(map[string]string{"/": strconv.Quote(up.Addr)}, "")})
	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(clientTimeout))
	io.WriteString(conn, "GET /t HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	s.signal(syscall.SIGTERM)
	if _, err := br.ReadByte(); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client end of the tunnel: %v, want its close", err)
	}
	select {
	case err := <-ended:
		if err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("upstream end of the tunnel: %v, want its close", err)
		}
	case <-time.After(clientTimeout):
		t.Fatal("the upstream end of the tunnel stayed open")
	}
	// Within half of graceful_timeout: the tunnel did not hold it.
	if code := s.waitExit(clientTimeout); code != 0 {
		t.Errorf("master exit code %d", code)
	}
}
