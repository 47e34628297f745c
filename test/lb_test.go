package test

import (
	"bufio"
	"crypto/tls"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// haproxyRun is a haproxy process in front of forkd instances.
type haproxyRun struct {
	t     testing.TB
	addr  string // the frontend
	stats string // the admin socket
	out   *syncBuffer
	done  chan struct{}
}

// balancerAddr is the address haproxy connects to the forkd instances
// from: clients (wrk) come from 127.0.0.1, so an access log shows whose
// address it has, the client's from the PROXY header or the balancer's.
const balancerAddr = "127.0.0.3"

// proxiedListen makes a forkd listen block require the PROXY header from
// the balancer alone.
const proxiedListen = "  proxy_protocol = true\n  trusted = [\"" + balancerAddr + "/32\"]\n"

// startHAProxy runs haproxy in the foreground with one frontend on a free
// loopback port and a backend with the given servers, each checked with
// GET /ready every 200ms; one failed check takes a server out of rotation
// and one good check puts it back. haproxy connects from balancerAddr and
// sends a PROXY v2 header on every connection, checks included.
func startHAProxy(t testing.TB, servers ...string) *haproxyRun {
	t.Helper()
	var backend strings.Builder
	backend.WriteString(`  balance roundrobin
  option httpchk GET /ready
  http-check expect status 200
  default-server inter 200ms fall 1 rise 1
`)
	for i, s := range servers {
		fmt.Fprintf(&backend, "  server s%d %s check source %s send-proxy-v2 check-send-proxy\n", i+1, s, balancerAddr)
	}
	return startHAProxyBackend(t, backend.String())
}

// startHAProxyBackend runs haproxy with the given body of backend "be".
func startHAProxyBackend(t testing.TB, backend string) *haproxyRun {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatalf("haproxy not found (Debian package haproxy; .ci/run installs it): %v", err)
	}
	dir := t.TempDir()
	h := &haproxyRun{t: t, addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), stats: filepath.Join(dir, "admin.sock"),
		out: &syncBuffer{}, done: make(chan struct{})}
	cfg := fmt.Sprintf(`global
  nbthread 1
  maxconn 4096
  stats socket %s mode 600 level admin

defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout check 5s

frontend fe
  bind %s
  default_backend be

backend be
%s`, h.stats, h.addr, backend)
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = h.out, h.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		close(h.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-h.done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-h.done
		}
		if t.Failed() {
			t.Logf("haproxy output:\n%s", h.out)
		}
	})
	return h
}

// serverStatus asks haproxy's admin socket for the check status of each
// server of the backend ("UP", "DOWN", ...), by name.
func (h *haproxyRun) serverStatus() (map[string]string, error) {
	c, err := net.DialTimeout("unix", h.stats, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "show stat\n"); err != nil {
		return nil, err
	}
	// "# pxname,svname,...": the header names the columns.
	r := bufio.NewReader(c)
	head, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	cols, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(head, "# "))).Read()
	if err != nil {
		return nil, err
	}
	idx := map[string]int{}
	for i, c := range cols {
		idx[c] = i
	}
	rows, err := csv.NewReader(r).ReadAll()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, row := range rows {
		if len(row) > idx["status"] && row[idx["pxname"]] == "be" {
			out[row[idx["svname"]]] = row[idx["status"]]
		}
	}
	return out, nil
}

// waitServer waits until haproxy reports server name in state want.
func (h *haproxyRun) waitServer(name, want string, d time.Duration) {
	h.t.Helper()
	var last map[string]string
	deadline := time.Now().Add(d)
	for {
		st, err := h.serverStatus()
		if err == nil {
			last = st
			// "UP 1/2" and "DOWN 1/2" are transitions under way.
			if st[name] == want {
				return
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("haproxy did not see %s %s within %v (last: %v, error %v)", name, want, d, last, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// restart starts a master again on s's configuration (same address and
// directory) after s has exited, and waits until its workers are ready.
func restart(s *server) *server {
	s.t.Helper()
	n := &server{t: s.t, dir: s.dir, cfg: s.cfg, addr: s.addr, exited: make(chan struct{})}
	n.cmd = exec.Command(binary, "-c", s.cfg)
	n.cmd.Dir = s.dir
	n.logs = newLogWatcher()
	n.run()
	n.waitLog(`all workers ready.*generation=1`, 20*time.Second)
	return n
}

// upgrade sends USR2 to s's master, waits for the new master to take over
// and the old one to exit 0, and returns the new master's pid (stopped at
// the end of the test).
func upgrade(t *testing.T, s *server) int {
	t.Helper()
	s.signal(syscall.SIGUSR2)
	return s.handedOver(30 * time.Second)
}

// TestRollingRestartBehindHAProxy puts haproxy in front of two forkd
// instances and drives wrk through it while each instance in turn is
// stopped with TERM (drain_delay = "1s": haproxy's health check sees 503
// and takes it out of rotation before its listener closes) and started
// again, and then while each gets a USR2 binary upgrade. wrk must see no
// socket error and no non-2xx response. haproxy sends PROXY v2 headers,
// and the access logs show wrk's address from them, never haproxy's.
func TestRollingRestartBehindHAProxy(t *testing.T) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		t.Fatalf("wrk not found (Debian package wrk; .ci/run installs it): %v", err)
	}
	logs := t.TempDir()
	instance := func(i int) opts {
		access := filepath.Join(logs, fmt.Sprintf("access%d.log", i))
		return opts{workers: 2, listen: proxiedListen, sites: drainSites,
			extra: "drain_delay = \"1s\"\nlog {\n  level = \"debug\"\n  access = \"" + access + "\"\n}"}
	}
	inst := []*server{start(t, instance(1)), start(t, instance(2))}
	h := startHAProxy(t, inst[0].addr, inst[1].addr)
	h.waitServer("s1", "UP", 20*time.Second)
	h.waitServer("s2", "UP", 20*time.Second)

	w := startWrk(t, wrk, "-t2", "-c16", "-d1h", "--timeout", "10s", "http://"+h.addr+"/")
	// served waits until instance i has served requests (from its
	// heartbeats): the load goes through it.
	served := func(i int) {
		t.Helper()
		eventually(t, 20*time.Second, fmt.Sprintf("instance %d to serve requests", i+1), func() bool {
			return servedRequests(t, inst[i]) > 0
		})
		if w.exited() {
			t.Fatalf("wrk ended early:\n%s", w.out)
		}
	}
	served(0)
	served(1)

	for i, s := range inst {
		name := fmt.Sprintf("s%d", i+1)
		s.signal(syscall.SIGTERM)
		h.waitServer(name, "DOWN", 20*time.Second)
		if code := s.waitExit(40 * time.Second); code != 0 {
			t.Fatalf("instance %d exit %d", i+1, code)
		}
		inst[i] = restart(s)
		h.waitServer(name, "UP", 20*time.Second)
		served(i)
	}

	for i, s := range inst {
		upgrade(t, s)
		// The successor serves the same sockets; the health check never
		// failed, so haproxy kept the server in rotation.
		h.waitServer(fmt.Sprintf("s%d", i+1), "UP", 20*time.Second)
		eventually(t, 20*time.Second, fmt.Sprintf("upgraded instance %d to serve requests", i+1), func() bool {
			return servedRequests(t, s) > 0
		})
	}
	out := w.stop(20 * time.Second)
	t.Logf("wrk:\n%s", out)
	if strings.Contains(out, "Socket errors") || strings.Contains(out, "Non-2xx") {
		t.Fatalf("wrk saw failures across the rolling restart:\n%s", out)
	}
	if m := regexp.MustCompile(`(\d+) requests in`).FindStringSubmatch(out); m == nil || m[1] == "0" {
		t.Fatalf("unexpected wrk output:\n%s", out)
	}
	for i := 1; i <= 2; i++ {
		b, err := os.ReadFile(filepath.Join(logs, fmt.Sprintf("access%d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, l := range strings.Split(string(b), "\n") {
			if !strings.Contains(l, `"GET / HTTP/1.1"`) {
				continue // health checks, from haproxy itself
			}
			n++
			if !strings.HasPrefix(l, "127.0.0.1 ") {
				t.Fatalf("instance %d logged a request from another address than wrk's: %q", i, l)
			}
		}
		if n == 0 {
			t.Fatalf("instance %d logged no request of wrk's:\n%.2000s", i, b)
		}
	}
}

// TestProxyProtocolPlainAndTLS: on a plain and on a TLS listener with
// proxy_protocol, the PROXY header's source is the client's address in
// X-Forwarded-For sent upstream and in the access log; a connection
// without the header gets no answer.
func TestProxyProtocolPlainAndTLS(t *testing.T) {
	e := newTLSEnv(t)
	e.issue("a", "a.test", "127.0.0.1")
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("X-Forwarded-For"))
	}))
	defer upstream.Close()
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	access := filepath.Join(t.TempDir(), "access.log")
	trusted := "  proxy_protocol = true\n  trusted = [\"127.0.0.1/32\"]\n"
	s := start(t, opts{workers: 1, listen: trusted,
		extra: e.listen(tlsAddr, trusted, "a") + "log {\n  level = \"debug\"\n  access = \"" + access + "\"\n}\n",
		sites: `site "test" {
  route "/" {
    proxy {
      upstreams = ["` + strings.TrimPrefix(upstream.URL, "http://") + `"]
    }
  }
}`})

	ask := func(c net.Conn) string {
		t.Helper()
		c.SetDeadline(time.Now().Add(clientTimeout))
		io.WriteString(c, "GET /xff HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	dial := func(addr, header string) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		io.WriteString(c, header)
		return c
	}

	if got := ask(dial(s.addr, "PROXY TCP4 203.0.113.6 127.0.0.1 5556 80\r\n")); got != "203.0.113.6" {
		t.Errorf("plain: X-Forwarded-For %q", got)
	}
	tc := tls.Client(dial(tlsAddr, "PROXY TCP4 203.0.113.5 127.0.0.1 5555 443\r\n"), e.client("a.test"))
	if got := ask(tc); got != "203.0.113.5" {
		t.Errorf("TLS: X-Forwarded-For %q", got)
	}

	// Without the header: closed unanswered (EOF, or a reset as the
	// request's bytes are still unread).
	c := dial(s.addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	c.SetDeadline(time.Now().Add(clientTimeout))
	if b, err := io.ReadAll(c); len(b) > 0 || err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("no header: got %q, %v", b, err)
	}
	s.waitLog(`bad PROXY header`, 10*time.Second)

	eventually(t, 10*time.Second, "2 access log lines", func() bool {
		b, _ := os.ReadFile(access)
		return strings.Count(string(b), "\n") >= 2
	})
	b, _ := os.ReadFile(access)
	for _, want := range []string{"203.0.113.5 ", "203.0.113.6 "} {
		if !strings.Contains(string(b), "\n"+want) && !strings.HasPrefix(string(b), want) {
			t.Errorf("access log lacks a line from %s:\n%s", want, b)
		}
	}
}

// TestProxyHeaderTimeoutGetsNoAnswer: on a plain and on a TLS listener
// with proxy_protocol, a PROXY header that times out (read_header_timeout),
// is cut, or whose v2 TLVs overrun its length closes the connection
// without a byte: no 408, neither in clear text nor after a handshake.
func TestProxyHeaderTimeoutGetsNoAnswer(t *testing.T) {
	e := newTLSEnv(t)
	e.issue("a", "a.test", "127.0.0.1")
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	trusted := "  proxy_protocol = true\n  trusted = [\"127.0.0.1/32\"]\n"
	s := start(t, opts{workers: 1, listen: trusted,
		extra: e.listen(tlsAddr, trusted, "a") + "limits {\n  read_header_timeout = \"500ms\"\n}\n"})

	// A v2 header whose only TLV claims 0xffff bytes, followed by a
	// request that it must not swallow.
	v2 := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0f" + "\xcb\x00\x71\x06\x7f\x00\x00\x01\x15\xb4\x00\x50" + "\x04\xff\xff")
	for _, addr := range []string{s.addr, tlsAddr} {
		for _, tc := range []struct {
			name, send string
			cut        bool
		}{
			{"timeout", "PROXY TCP4 203.0.113.6 127.0.0.1 5", false},
			{"cut", "PROXY TCP4 203.0.113.6 127.0.0.1 5", true},
			{"v2 TLV overrun", string(v2) + "GET / HTTP/1.1\r\nHost: a\r\n\r\n", false},
		} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(clientTimeout))
			io.WriteString(c, tc.send)
			if tc.cut {
				c.(*net.TCPConn).CloseWrite()
			}
			b, err := io.ReadAll(c)
			c.Close()
			if len(b) > 0 || err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("%s, %s: got %q, %v; want the connection closed without an answer", addr, tc.name, b, err)
			}
		}
	}
	s.waitLog(`PROXY header not received in full`, 10*time.Second)
}
