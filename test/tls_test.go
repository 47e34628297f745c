package test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/forkd/forkd/internal/testcert"
)

// tlsEnv is a test CA and the certificate files of a TLS test.
type tlsEnv struct {
	t   *testing.T
	ca  *testcert.CA
	dir string
}

func newTLSEnv(t *testing.T) *tlsEnv {
	t.Helper()
	ca, err := testcert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	return &tlsEnv{t: t, ca: ca, dir: t.TempDir()}
}

// issue writes a certificate for names as name.pem and name.key and
// returns its serial number.
func (e *tlsEnv) issue(name string, names ...string) *big.Int {
	e.t.Helper()
	leaf, err := e.ca.Issue(names, time.Time{}, time.Time{})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := leaf.Write(e.path(name+".pem"), e.path(name+".key")); err != nil {
		e.t.Fatal(err)
	}
	return leaf.Serial
}

func (e *tlsEnv) path(name string) string { return filepath.Join(e.dir, name) }

// listen is a listen block for addr with the named certificates.
func (e *tlsEnv) listen(addr, extra string, names ...string) string {
	b := fmt.Sprintf("listen {\n  address = %q\n%s", addr, extra)
	for _, n := range names {
		b += fmt.Sprintf("  tls {\n    certificate = %q\n    key = %q\n  }\n", e.path(n+".pem"), e.path(n+".key"))
	}
	return b + "}\n"
}

// client is a TLS client config trusting the test CA.
func (e *tlsEnv) client(serverName string) *tls.Config {
	return &tls.Config{RootCAs: e.ca.Pool(), ServerName: serverName}
}

// fetch does one HTTPS request on a new connection and returns the body
// and the connection's state.
func fetch(addr string, cfg *tls.Config, path string) (string, tls.ConnectionState, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return "", tls.ConnectionState{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, cfg.ServerName); err != nil {
		return "", tls.ConnectionState{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", tls.ConnectionState{}, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return "", tls.ConnectionState{}, err
	}
	if resp.StatusCode != 200 {
		return "", tls.ConnectionState{}, fmt.Errorf("status %d", resp.StatusCode)
	}
	// Reading to EOF also read any TLS 1.3 session ticket.
	return string(b), c.ConnectionState(), nil
}

func serial(st tls.ConnectionState) *big.Int {
	if len(st.PeerCertificates) == 0 {
		return nil
	}
	return st.PeerCertificates[0].SerialNumber
}

func TestTLSServe(t *testing.T) {
	e := newTLSEnv(t)
	aSerial := e.issue("a", "a.test", "127.0.0.1")
	bSerial := e.issue("b", "b.test")
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	tls13Addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("X-Forwarded-Proto"))
	}))
	defer upstream.Close()
	bigFile := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	// A static root serves /files/x from root/files/x.
	if err := os.Mkdir(e.path("files"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.path("files/big.bin"), []byte(bigFile), 0o644); err != nil {
		t.Fatal(err)
	}
	s := start(t, opts{workers: 2,
		extra: e.listen(tlsAddr, "", "a", "b") + e.listen(tls13Addr, "  min_version = \"1.3\"\n  protocols = [\"http/1.1\"]\n", "a"),
		sites: `site "test" {
  route "/" {
    respond {
      body = "hello\n"
    }
  }
  route "/up/" {
    proxy {
      upstreams = ["` + strings.TrimPrefix(upstream.URL, "http://") + `"]
    }
  }
  route "/files/" {
    static {
      root = "` + e.dir + `"
    }
  }
  route "/old/" {
    redirect {
      location = "https://{host}:` + tlsAddr[strings.LastIndexByte(tlsAddr, ':')+1:] + `/new{uri}"
    }
  }
}`})

	// A Go client trusting the test CA, through net/http: the listener
	// names no protocols, so it offers h2 first (ALPN), and the client
	// speaks HTTP/2. (fetch, below, offers no ALPN: HTTP/1.1.)
	tr := &http.Transport{TLSClientConfig: e.client("a.test"), ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := hc.Get("https://" + tlsAddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello\n" || resp.Proto != "HTTP/2.0" ||
		resp.TLS == nil || resp.TLS.NegotiatedProtocol != "h2" {
		t.Errorf("GET: %d %q %s %+v", resp.StatusCode, body, resp.Proto, resp.TLS)
	}

	// protocols = ["http/1.1"] opts a TLS listener out of HTTP/2: the
	// same client speaks HTTP/1.1 there.
	if resp, err := hc.Get("https://" + tls13Addr + "/"); err != nil {
		t.Error(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Proto != "HTTP/1.1" || resp.TLS.NegotiatedProtocol != "http/1.1" {
			t.Errorf("GET on the http/1.1-only listener: %d %s %q", resp.StatusCode, resp.Proto, resp.TLS.NegotiatedProtocol)
		}
	}

	// A static file of 1 MiB, and a proxied request that says https.
	for path, want := range map[string]string{"/files/big.bin": bigFile, "/up/x": "https"} {
		resp, err := hc.Get("https://" + tlsAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(body) != want {
			t.Errorf("GET %s: %d, %d bytes, %v", path, resp.StatusCode, len(body), err)
		}
	}
	if resp, err := http.Get("http://" + s.addr + "/up/x"); err != nil {
		t.Error(err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "http" {
			t.Errorf("X-Forwarded-Proto over plain HTTP: %q", body)
		}
	}

	// SNI picks the certificate; no SNI (an IP) gets the first.
	for _, tc := range []struct {
		name string
		want *big.Int
	}{{"a.test", aSerial}, {"b.test", bSerial}, {"127.0.0.1", aSerial}} {
		_, st, err := fetch(tlsAddr, e.client(tc.name), "/")
		if err != nil {
			t.Fatalf("SNI %s: %v", tc.name, err)
		}
		if serial(st).Cmp(tc.want) != 0 {
			t.Errorf("SNI %s: got certificate %v, want %v", tc.name, serial(st), tc.want)
		}
	}

	// Plain HTTP on the TLS port: a clear 400, then close, not a hang.
	c, err := net.DialTimeout("tcp", tlsAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	raw, err := io.ReadAll(c)
	c.Close()
	if err != nil || !strings.HasPrefix(string(raw), "HTTP/1.1 400 Bad Request\r\n") || !strings.Contains(string(raw), "HTTPS server") {
		t.Errorf("plain HTTP to the TLS port: %q, %v", raw, err)
	}

	// min_version = "1.3" refuses a client that stops at 1.2; 1.2 works elsewhere.
	old := e.client("a.test")
	old.MaxVersion = tls.VersionTLS12
	if _, _, err := fetch(tls13Addr, old, "/"); err == nil {
		t.Error("a TLS 1.2 client was served by a min_version 1.3 listener")
	}
	if _, st, err := fetch(tlsAddr, old, "/"); err != nil || st.Version != tls.VersionTLS12 {
		t.Errorf("TLS 1.2 on the default listener: %v %x", err, st.Version)
	}
	if _, st, err := fetch(tls13Addr, e.client("a.test"), "/"); err != nil || st.Version != tls.VersionTLS13 {
		t.Errorf("TLS 1.3: %v %x", err, st.Version)
	}

	// The redirect route on the plain listener sends users to HTTPS.
	nc := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = nc.Get("http://" + s.addr + "/old/x?y=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := "https://127.0.0.1:" + tlsAddr[strings.LastIndexByte(tlsAddr, ':')+1:] + "/new/old/x?y=1"; resp.StatusCode != 301 || resp.Header.Get("Location") != want {
		t.Errorf("redirect: %d %q, want 301 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	// Following it lands on the TLS listener (/new/... is the respond route).
	fc := &http.Client{Timeout: 5 * time.Second, Transport: tr}
	if resp, err := fc.Get("http://" + s.addr + "/old/x"); err != nil || resp.StatusCode != 200 || resp.TLS == nil {
		t.Errorf("followed redirect: %v", err)
	} else {
		resp.Body.Close()
	}
	if s.logs.has(`PRIVATE KEY`) {
		t.Error("the log shows key material")
	}
}

// TestTLSResumption: a client reconnecting 20 times to 4 workers resumes
// its session every time after the first, whichever worker it reaches.
func TestTLSResumption(t *testing.T) {
	e := newTLSEnv(t)
	e.issue("a", "a.test")
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	access := e.path("access.log")
	start(t, opts{workers: 4, extra: e.listen(tlsAddr, "", "a") + fmt.Sprintf("log {\n  level = \"debug\"\n  access = %q\n}\n", access)})
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		cfg := e.client("a.test")
		cfg.MaxVersion = v
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(8)
		for i := 0; i < 20; i++ {
			_, st, err := fetch(tlsAddr, cfg, "/")
			if err != nil {
				t.Fatalf("version %x, connection %d: %v", v, i, err)
			}
			if i > 0 && !st.DidResume {
				t.Errorf("version %x, connection %d: not resumed", v, i)
			}
		}
	}
	// The connections reached more than one worker: the session tickets
	// one worker issued were accepted by others.
	pids := map[string]int{}
	eventually(t, 10*time.Second, "40 access log lines", func() bool {
		b, _ := os.ReadFile(access)
		clear(pids)
		n := 0
		for _, m := range regexp.MustCompile(`pid=(\d+)`).FindAllStringSubmatch(string(b), -1) {
			pids[m[1]]++
			n++
		}
		return n >= 40
	})
	if len(pids) < 2 {
		t.Errorf("all 40 connections reached one worker: %v", pids)
	}
	t.Logf("connections per worker: %v", pids)
}

// tlsLoad requests over new TLS connections until stopped and counts
// the failures; last holds the serial of the newest certificate seen.
type tlsLoad struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	last       *big.Int
	firstErr   error
	stop       chan struct{}
	done       sync.WaitGroup
}

func startTLSLoad(addr string, cfg *tls.Config, n int) *tlsLoad {
	l := &tlsLoad{stop: make(chan struct{})}
	for range n {
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				_, st, err := fetch(addr, cfg, "/")
				l.mu.Lock()
				if err != nil {
					l.failed.Add(1)
					if l.firstErr == nil {
						l.firstErr = err
					}
				} else {
					l.ok.Add(1)
					l.last = serial(st)
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *tlsLoad) serial() *big.Int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

func (l *tlsLoad) end() {
	close(l.stop)
	l.done.Wait()
}

// TestTLSReloadCertificate: HUP after a renewal serves the new certificate
// with no failed request; a broken certificate refuses the reload and the
// renewed one keeps serving.
func TestTLSReloadCertificate(t *testing.T) {
	e := newTLSEnv(t)
	first := e.issue("site", "a.test")
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := start(t, opts{workers: 2, extra: e.listen(tlsAddr, "", "site")})
	load := startTLSLoad(tlsAddr, e.client("a.test"), 4)
	defer load.end()
	eventually(t, 10*time.Second, "the first certificate served", func() bool {
		sn := load.serial()
		return sn != nil && sn.Cmp(first) == 0
	})

	renewed := e.issue("site", "a.test")
	s.signal(syscall.SIGHUP)
	s.waitLog(`reload complete`, 20*time.Second)
	eventually(t, 20*time.Second, "the renewed certificate served", func() bool {
		sn := load.serial()
		return sn != nil && sn.Cmp(renewed) == 0
	})

	// forkd status shows no key material.
	keyPEM, err := os.ReadFile(e.path("site.key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"status", "-c", s.cfg}, {"status", "-json", "-c", s.cfg}} {
		out, code := runCLI(t, args...)
		if code != 0 || strings.Contains(out, "PRIVATE") || strings.Contains(out, string(keyPEM[40:80])) {
			t.Errorf("%v: exit %d:\n%s", args, code, out)
		}
	}

	// A key that does not match: the reload is refused, nothing changes.
	other, err := e.ca.Issue([]string{"a.test"}, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.path("site.key"), other.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	s.signal(syscall.SIGHUP)
	s.waitLog(`reload refused.*`+regexp.QuoteMeta(s.cfg)+`:\d+:.*Invalid key`, 20*time.Second)
	before := load.ok.Load()
	eventually(t, 10*time.Second, "requests after the refused reload", func() bool { return load.ok.Load() > before+20 })
	if sn := load.serial(); sn.Cmp(renewed) != 0 {
		t.Errorf("after a refused reload: certificate %v, want %v", sn, renewed)
	}
	load.end()
	load.stop = make(chan struct{}) // for the deferred end
	if n := load.failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed across the reloads; first: %v", n, n+load.ok.Load(), load.firstErr)
	}
	t.Logf("%d requests over new TLS connections across two reloads, none failed", load.ok.Load())
	if s.logs.has(`PRIVATE KEY`) {
		t.Error("the log shows key material")
	}
}

// TestTLSConfigCheck: forkd -t names the file and line of a missing
// certificate and of a key that does not match, and warns about an
// expired certificate.
func TestTLSConfigCheck(t *testing.T) {
	e := newTLSEnv(t)
	e.issue("good", "a.test")
	e.issue("other", "a.test")
	expired, err := e.ca.Issue([]string{"a.test"}, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := expired.Write(e.path("old.pem"), e.path("old.key")); err != nil {
		t.Fatal(err)
	}
	block := func(cert, key string) string {
		return fmt.Sprintf("workers = 1\nlisten {\n  address = \"127.0.0.1:0\"\n  tls {\n    certificate = %q\n    key = %q\n  }\n}\n", e.path(cert), e.path(key))
	}
	for _, tc := range []struct {
		name, src string
		code      int
		line      string // the line named
		want      string
	}{
		{"missing certificate", block("none.pem", "good.key"), 1, "certificate =", "Cannot read certificate"},
		{"missing key", block("good.pem", "none.key"), 1, "key =", "Cannot read key"},
		{"mismatched key", block("good.pem", "other.key"), 1, "key =", "Invalid key"},
		{"expired", block("old.pem", "old.key"), 0, "certificate =", "warning: .*Expired certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.hcl")
			if err := os.WriteFile(path, []byte(tc.src), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(binary, "-t", "-c", path).CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			where := lineOf(t, path, tc.line)
			if code != tc.code || !regexp.MustCompile(regexp.QuoteMeta(where)+`\d+: `).Match(out) ||
				!regexp.MustCompile(tc.want).Match(out) {
				t.Errorf("exit %d, output:\n%s\nwant exit %d, %s... %s", code, out, tc.code, where, tc.want)
			}
			if strings.Contains(string(out), "PRIVATE") {
				t.Errorf("output shows key material:\n%s", out)
			}
		})
	}
}

// TestTLSPrivilegeDrop: workers running as nobody serve TLS with a key
// only root can read, because the master reads it.
func TestTLSPrivilegeDrop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (CI runs as root)")
	}
	if err := os.Chmod(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	e := newTLSEnv(t)
	e.issue("a", "a.test")
	if err := os.Chown(e.path("a.key"), 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(e.path("a.key"), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := start(t, opts{workers: 2, extra: "user = \"nobody\"\n" + e.listen(tlsAddr, "", "a")})
	for _, pid := range s.workers() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		if m := regexp.MustCompile(`(?m)^Uid:\s+(\d+)`).FindStringSubmatch(string(b)); m == nil || m[1] == "0" {
			t.Fatalf("worker %d runs as uid %v", pid, m)
		}
	}
	for i := 0; i < 4; i++ {
		if body, _, err := fetch(tlsAddr, e.client("a.test"), "/"); err != nil || body != "hello\n" {
			t.Fatalf("HTTPS as nobody: %q %v", body, err)
		}
	}
}
