package test

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// drainSites serves "/" and a health route at "/ready".
const drainSites = `site "lb" {
  route "/" {
    respond {
      body = "hello\n"
    }
  }
  route "/ready" {
    health {}
  }
}`

// TestDrainDelay: on TERM with drain_delay the health route answers 503
// while "/" is still served over new connections, a worker that crashes
// meanwhile is replaced by one that answers 503 too, HUP is ignored,
// `forkd status` says draining; then the listener closes and the master
// exits 0.
func TestDrainDelay(t *testing.T) {
	s := start(t, opts{workers: 1, extra: `drain_delay = "6s"`, sites: drainSites})
	if code, body, err := get(s.addr, "/ready"); err != nil || code != 200 || body != "ok\n" {
		t.Fatalf("GET /ready before TERM: %d %q %v", code, body, err)
	}
	s.signal(syscall.SIGTERM)
	s.waitLog(`draining: health routes answer 503; listeners close after drain_delay`, 10*time.Second)
	eventually(t, 5*time.Second, "health answering 503", func() bool {
		code, _, err := get(s.addr, "/ready")
		return err == nil && code == 503
	})
	if code, body, err := get(s.addr, "/"); err != nil || code != 200 || body != "hello\n" {
		t.Fatalf("GET / while draining: %d %q %v", code, body, err)
	}

	// A reload while draining is ignored, as during any stop.
	s.signal(syscall.SIGHUP)
	s.waitLog(`ignoring signal: the master is stopping.*signal=hangup`, 10*time.Second)

	out, code := runCLI(t, "status", "-json", "-c", s.cfg)
	var resp struct {
		Status struct {
			State string `json:"state"`
		}
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || code != 0 || resp.Status.State != "draining" {
		t.Fatalf("status -json while draining: exit %d, %v:\n%s", code, err, out)
	}

	// A worker started while the instance drains answers 503 from its
	// first request.
	old := s.workers()
	if len(old) != 1 {
		t.Fatalf("workers %v", old)
	}
	if err := syscall.Kill(old[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	m := s.waitLog(`worker ready.*worker_pid=(\d+)`, 10*time.Second)
	if m[1] == strconv.Itoa(old[0]) {
		t.Fatalf("the killed worker %s reported ready", m[1])
	}
	if code, _, err := get(s.addr, "/ready"); err != nil || code != 503 {
		t.Fatalf("GET /ready from the replacement: %d %v", code, err)
	}
	if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
		t.Fatalf("GET / from the replacement: %d %v", code, err)
	}

	s.waitLog(`drain_delay over; stopping gracefully`, 15*time.Second)
	eventually(t, 10*time.Second, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if code := s.waitExit(20 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// TestDrainSparesFreshTLSConnection: a worker's graceful stop closes an
// idle keep-alive connection after its grace (1 s), but a TLS connection
// whose handshake is done and that has sent no request yet is not idle: it
// keeps read_header_timeout for its first request, which is answered in
// full (with Connection: close).
func TestDrainSparesFreshTLSConnection(t *testing.T) {
	e := newTLSEnv(t)
	e.issue("a", "a.test", "127.0.0.1")
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := start(t, opts{workers: 1, extra: e.listen(tlsAddr, "", "a") + "limits {\n  read_header_timeout = \"30s\"\n}\n"})
	dial := func() *tls.Conn {
		t.Helper()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: clientTimeout}, "tcp", tlsAddr, e.client("a.test"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(clientTimeout))
		return c
	}
	used := dial() // carries a request, then idles
	usedR := bufio.NewReader(used)
	io.WriteString(used, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
	if resp, err := http.ReadResponse(usedR, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("first request: %v %v", resp, err)
	} else if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	fresh := dial() // handshake done, no request yet

	s.signal(syscall.SIGHUP) // the worker holding both stops gracefully
	s.waitLog(`graceful stop`, 10*time.Second)
	if _, err := usedR.ReadByte(); err != io.EOF {
		t.Fatalf("idle keep-alive connection during the graceful stop: %v, want EOF after the grace", err)
	}
	// The grace is over; the fresh connection is still open.
	fresh.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := fresh.Read(make([]byte, 1)); err == nil || !isTimeout(err) {
		t.Fatalf("fresh TLS connection during the graceful stop: read %d, %v; want it open", n, err)
	}
	fresh.SetDeadline(time.Now().Add(clientTimeout))
	io.WriteString(fresh, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(fresh), nil)
	if err != nil {
		t.Fatalf("fresh TLS connection's request during the graceful stop: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || string(body) != "hello\n" || !resp.Close {
		t.Fatalf("fresh TLS connection's request during the graceful stop: %d %q %v (close %v)", resp.StatusCode, body, err, resp.Close)
	}
}

// isTimeout reports whether err is a net.Error timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
