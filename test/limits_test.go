package test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rawRequest sends raw bytes on a fresh connection and returns the status
// code of the first response.
func rawRequest(t *testing.T, addr, req string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestConfiguredLimits checks that the limits block of config.hcl reaches
// the workers' protocol engine.
func TestConfiguredLimits(t *testing.T) {
	s := start(t, opts{workers: 1, extra: `limits {
  request_line        = 64
  header_bytes        = 200
  header_count        = 4
  body_bytes          = 10
  read_header_timeout = "300ms"
  max_connections     = 2
}`})
	cases := []struct {
		name, req string
		want      int
	}{
		{"ok", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 200},
		{"request_line", "GET /" + strings.Repeat("a", 80) + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
		{"header_count", "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", 431},
		{"header_bytes", "GET / HTTP/1.1\r\nHost: x\r\nA: " + strings.Repeat("b", 300) + "\r\n\r\n", 431},
		{"body_bytes", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", 413},
		{"read_header_timeout", "GET / HTTP/1.1\r\nHost: x\r\n", 408},
	}
	for _, c := range cases {
		if got := rawRequest(t, s.addr, c.req); got != c.want {
			t.Errorf("%s: status %d, want %d", c.name, got, c.want)
		}
	}

	// max_connections = 2: a third connection is not served while two are open.
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	third, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	third.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	br := bufio.NewReader(third)
	if _, err := br.Peek(1); err == nil {
		t.Fatal("a third connection was served with max_connections = 2")
	}
	held[0].Close()
	third.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("third connection after one closed: %v %v", resp, err)
	}
}

// TestClientHelloOnPlainListenerAnsweredAtOnce: a TLS client that talks to
// a plain listener gets a 400 at its ClientHello's first byte, not a 408
// after read_header_timeout (30 s here: a server that waited would fail the
// client's deadline, 10 s).
func TestClientHelloOnPlainListenerAnsweredAtOnce(t *testing.T) {
	s := start(t, opts{workers: 1, extra: "limits {\n  read_header_timeout = \"30s\"\n}\n"})
	// The ClientHello crypto/tls sends, as it sends it.
	a, b := net.Pipe()
	go func() {
		defer a.Close()
		tls.Client(a, &tls.Config{ServerName: "a.test"}).Handshake()
	}()
	hello := make([]byte, 16<<10)
	n, err := b.Read(hello)
	b.Close()
	if err != nil || n == 0 || hello[0] != 0x16 {
		t.Fatalf("no ClientHello: %v", err)
	}
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(hello[:n]); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a ClientHello: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 || !resp.Close {
		t.Fatalf("status %d (close %v), want 400 and Connection: close", resp.StatusCode, resp.Close)
	}
}

// TestFileLimitWarning: max_connections beyond RLIMIT_NOFILE is warned
// about at start, as nginx does, and the worker caps it: at the cap it
// stops accepting (the kernel queues new connections) instead of failing
// accept4 with EMFILE, and serves the queued ones as others close.
func TestFileLimitWarning(t *testing.T) {
	wrapper := filepath.Join(t.TempDir(), "forkd-lowfd")
	script := "#!/bin/sh\nulimit -n 128 || exit 9\nexec " + binary + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	s := start(t, opts{workers: 1, bin: wrapper, extra: "limits {\n  max_connections = 5000\n}"})
	s.seen(`limits.max_connections exceeds the open file limit.*max_connections=5000 nofile_limit=128`, 10*time.Second)
	s.seen(`max_connections capped by the open file limit.*max_connections=5000 capped_to=64`, 10*time.Second)

	// 80 keep-alive clients: 64 are served at once, the others when
	// some of those close.
	type client struct {
		c    net.Conn
		done chan error
	}
	var cs []client
	for range 80 {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(clientTimeout))
		cl := client{c, make(chan error, 1)}
		go func() {
			_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			if err == nil {
				var resp *http.Response
				if resp, err = http.ReadResponse(bufio.NewReader(c), nil); err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
				}
			}
			cl.done <- err
		}()
		cs = append(cs, cl)
	}
	served := 0
	for i, cl := range cs {
		if i == 64 {
			// The cap is reached: free room for the rest.
			for _, o := range cs[:20] {
				o.c.Close()
			}
		}
		if err := <-cl.done; err != nil {
			if i < 20 {
				continue // closed by the test above, maybe before its answer
			}
			t.Fatalf("client %d: %v", i+1, err)
		}
		served++
	}
	if served < 60 {
		t.Fatalf("only %d clients served", served)
	}
	if s.logs.has(`accept failed`) {
		t.Fatalf("the worker hit the descriptor limit:\n%s", s.logs)
	}
}
