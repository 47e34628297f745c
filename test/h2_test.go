package test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// h2Env is a master with an h2c listener (s.addr) and a TLS listener
// (tlsAddr) offering h2, serving every kind of route.
type h2Env struct {
	s        *server
	e        *tlsEnv
	tlsAddr  string
	upstream *httptest.Server
	big      []byte
}

func startH2(t *testing.T, extra string) *h2Env {
	t.Helper()
	e := newTLSEnv(t)
	e.issue("a", "a.test", "127.0.0.1")
	env := &h2Env{e: e, tlsAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	env.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/up/sse":
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 3 {
				fmt.Fprintf(w, "data: %d\n\n", i)
				w.(http.Flusher).Flush()
				// The next event waits for the client to have seen this
				// one: only a flushed event can arrive.
				select {
				case <-r.Context().Done():
					return
				case <-time.After(200 * time.Millisecond):
				}
			}
		case "/up/echo":
			w.Header().Set("Trailer", "X-Sum")
			b, _ := io.ReadAll(r.Body)
			w.Write(b)
			w.Header().Set("X-Sum", fmt.Sprint(len(b)))
		default:
			fmt.Fprintf(w, "%s %s proto=%s", r.Method, r.URL.Path, r.Header.Get("X-Forwarded-Proto"))
		}
	}))
	t.Cleanup(env.upstream.Close)
	env.big = []byte(strings.Repeat("0123456789abcdef", 1<<16)) // 1 MiB: many windows
	if err := os.Mkdir(e.path("files"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.path("files/big.bin"), env.big, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.path("files/small.txt"), []byte("small file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env.s = start(t, opts{workers: 1,
		listen: "  protocols = [\"http/1.1\", \"h2c\"]\n",
		extra: e.listen(env.tlsAddr, "  protocols = [\"h2\", \"http/1.1\"]\n", "a") + extra + fmt.Sprintf(`
log {
  level  = "debug"
  access = %q
}
`, e.path("access.log")),
		sites: `site "test" {
  route "/" {
    respond {
      body = "hello\n"
    }
  }
  route "/up/" {
    proxy {
      upstreams = ["` + strings.TrimPrefix(env.upstream.URL, "http://") + `"]
    }
  }
  route "/files/" {
    static {
      root = "` + e.dir + `"
    }
  }
  route "/old/" {
    redirect {
      location = "/new"
    }
  }
  route "/health" {
    health {}
  }
}`})
	return env
}

// h2cClient speaks HTTP/2 with prior knowledge.
func h2cClient() *http.Client {
	return &http.Client{Timeout: 20 * time.Second, CheckRedirect: noRedirect, Transport: &http.Transport{Protocols: h2cOnly()}}
}

func (env *h2Env) tlsClient() *http.Client {
	cfg := env.e.client("a.test")
	cfg.NextProtos = []string{"h2", "http/1.1"}
	return &http.Client{Timeout: 20 * time.Second, CheckRedirect: noRedirect, Transport: &http.Transport{TLSClientConfig: cfg, Protocols: h2Only()}}
}

// h2cOnly and h2Only are client protocols: HTTP/2 with prior knowledge,
// and HTTP/2 over TLS.
func h2cOnly() *http.Protocols {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return p
}

func h2Only() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP2(true)
	return p
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func TestH2Routes(t *testing.T) {
	env := startH2(t, "")
	for _, c := range []struct {
		name   string
		client *http.Client
		base   string
		proto  string
	}{
		{"h2c", h2cClient(), "http://" + env.s.addr, "http"},
		{"tls", env.tlsClient(), "https://" + env.tlsAddr, "https"},
	} {
		t.Run(c.name, func(t *testing.T) {
			do := func(method, path string, body io.Reader, hdr ...string) (*http.Response, string) {
				t.Helper()
				req, err := http.NewRequest(method, c.base+path, body)
				if err != nil {
					t.Fatal(err)
				}
				req.Host = "a.test"
				for i := 0; i+1 < len(hdr); i += 2 {
					req.Header.Set(hdr[i], hdr[i+1])
				}
				resp, err := c.client.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", method, path, err)
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatalf("%s %s: body: %v", method, path, err)
				}
				if resp.ProtoMajor != 2 {
					t.Errorf("%s %s: %s", method, path, resp.Proto)
				}
				return resp, string(b)
			}
			if resp, b := do("GET", "/", nil); resp.StatusCode != 200 || b != "hello\n" {
				t.Errorf("respond: %d %q", resp.StatusCode, b)
			}
			if resp, _ := do("GET", "/old/x", nil); resp.StatusCode != 301 && resp.StatusCode != 302 && resp.StatusCode != 308 {
				t.Errorf("redirect: %d", resp.StatusCode)
			}
			if resp, b := do("GET", "/health", nil); resp.StatusCode != 200 {
				t.Errorf("health: %d %q", resp.StatusCode, b)
			}
			// Static: a large file under flow control, a range, a 304.
			resp, b := do("GET", "/files/big.bin", nil)
			if resp.StatusCode != 200 || b != string(env.big) {
				t.Errorf("static: %d, %d bytes", resp.StatusCode, len(b))
			}
			if resp, b := do("GET", "/files/big.bin", nil, "Range", "bytes=16-31"); resp.StatusCode != 206 || b != "0123456789abcdef" {
				t.Errorf("range: %d %q", resp.StatusCode, b)
			}
			if lm := resp.Header.Get("Last-Modified"); lm != "" {
				if resp, _ := do("GET", "/files/big.bin", nil, "If-Modified-Since", lm); resp.StatusCode != 304 {
					t.Errorf("conditional: %d", resp.StatusCode)
				}
			} else {
				t.Error("static: no Last-Modified")
			}
			if resp, b := do("HEAD", "/files/small.txt", nil); resp.StatusCode != 200 || b != "" || resp.ContentLength != 11 {
				t.Errorf("HEAD: %d %q %d", resp.StatusCode, b, resp.ContentLength)
			}
			// Proxy: the scheme, a streamed request body with the
			// response's trailer, server-sent events one by one.
			if resp, b := do("GET", "/up/x", nil); resp.StatusCode != 200 || b != "GET /up/x proto="+c.proto {
				t.Errorf("proxy: %d %q", resp.StatusCode, b)
			}
			pr, pw := io.Pipe()
			go func() {
				for range 64 {
					pw.Write([]byte(strings.Repeat("x", 1024)))
				}
				pw.Close()
			}()
			resp, b = do("POST", "/up/echo", pr)
			if resp.StatusCode != 200 || len(b) != 64<<10 || resp.Trailer.Get("X-Sum") != "65536" {
				t.Errorf("proxy POST: %d, %d bytes, trailer %q", resp.StatusCode, len(b), resp.Trailer)
			}
			req, _ := http.NewRequest("GET", c.base+"/up/sse", nil)
			req.Host = "a.test"
			sse, err := c.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(sse.Body)
			for i := range 3 {
				line, err := br.ReadString('\n')
				if err != nil || line != fmt.Sprintf("data: %d\n", i) {
					t.Fatalf("event %d: %q %v", i, line, err)
				}
				br.ReadString('\n')
			}
			sse.Body.Close()
		})
	}
	// The access log says HTTP/2.0.
	eventually(t, 10*time.Second, "access log lines with HTTP/2.0", func() bool {
		b, _ := os.ReadFile(env.e.path("access.log"))
		return strings.Contains(string(b), "HTTP/2.0")
	})
}

// TestH2Curl checks curl's HTTP/2 over TLS (ALPN) and with prior knowledge.
func TestH2Curl(t *testing.T) {
	env := startH2(t, "")
	ca := filepath.Join(env.e.dir, "ca.pem")
	if err := os.WriteFile(ca, env.e.ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--http2-prior-knowledge", "http://" + env.s.addr + "/"},
		{"--http2", "--cacert", ca, "--resolve", "a.test:" + strings.Split(env.tlsAddr, ":")[1] + ":127.0.0.1", "https://a.test:" + strings.Split(env.tlsAddr, ":")[1] + "/"},
	} {
		out, err := exec.Command("curl", append([]string{"-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_version} %{http_code}"}, args...)...).CombinedOutput()
		if err != nil || string(out) != "2 200" {
			t.Errorf("curl %v: %q %v", args, out, err)
		}
	}
	// HTTP/1.1 on the same listeners as before.
	if code, body, err := get(env.s.addr, "/"); err != nil || code != 200 || body != "hello\n" {
		t.Errorf("HTTP/1.1 on the h2c listener: %d %q %v", code, body, err)
	}
}

// h2loadLoop runs h2load against url, one run after another (each
// -c 8 -m 4 for three seconds), until stop. An h2load client does not
// reconnect after a GOAWAY: a reload ends the run's clients (each says
// "Process Request Failure"), and the next run loads the new worker.
type h2loadLoop struct {
	t    *testing.T
	quit chan struct{}
	done chan []string

	mu   sync.Mutex
	cur  *exec.Cmd
	out  *syncBuilder // the current run's
	runs int          // runs started
}

// syncBuilder is a strings.Builder that h2load writes and the test reads.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuilder) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuilder) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func startH2loadLoop(t *testing.T, url string) *h2loadLoop {
	t.Helper()
	bin, err := exec.LookPath("h2load")
	if err != nil {
		t.Fatal("h2load not installed (Debian package nghttp2-client; .ci/run installs it)")
	}
	l := &h2loadLoop{t: t, quit: make(chan struct{}), done: make(chan []string, 1)}
	go func() {
		var outs []string
		defer func() { l.done <- outs }()
		for {
			select {
			case <-l.quit:
				return
			default:
			}
			cmd := exec.Command(bin, "-c", "8", "-m", "4", "-D", "3", url)
			out := &syncBuilder{}
			cmd.Stdout, cmd.Stderr = out, out
			l.mu.Lock()
			err := cmd.Start()
			if err == nil {
				l.cur, l.out = cmd, out
				l.runs++
			}
			l.mu.Unlock()
			if err != nil {
				t.Error(err)
				return
			}
			err = cmd.Wait()
			l.mu.Lock()
			l.out = nil
			l.mu.Unlock()
			if err != nil {
				t.Errorf("h2load: %v\n%s", err, out.String())
			}
			outs = append(outs, out.String())
		}
	}()
	t.Cleanup(l.kill)
	return l
}

// loading reports how many runs have started, and whether the current one
// has its clients connected and sending.
func (l *h2loadLoop) loading() (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.runs, l.out != nil && strings.Contains(l.out.String(), "Main benchmark duration is started")
}

// waitFresh waits for a run started after run number after to be loading,
// and returns its number.
func (l *h2loadLoop) waitFresh(after int) int {
	var n int
	eventually(l.t, 20*time.Second, "a new h2load run", func() bool {
		var ok bool
		n, ok = l.loading()
		return ok && n > after
	})
	return n
}

func (l *h2loadLoop) kill() {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.quit:
	default:
		close(l.quit)
	}
	if l.cur != nil && l.cur.Process != nil {
		l.cur.Process.Kill()
	}
}

// stop lets the current run end and returns every run's output.
func (l *h2loadLoop) stop() []string {
	l.mu.Lock()
	select {
	case <-l.quit:
	default:
		close(l.quit)
	}
	l.mu.Unlock()
	select {
	case outs := <-l.done:
		return outs
	case <-time.After(60 * time.Second):
		l.t.Fatal("h2load did not end")
		return nil
	}
}

// TestH2ReloadUnderH2load: HTTP/2 clients (h2c and TLS) lose no request
// over 20 HUPs and 2 USR2: each retiring worker sends GOAWAY, finishes the
// streams it named, then closes; a stream in flight completes.
func TestH2ReloadUnderH2load(t *testing.T) {
	env := startH2(t, "")
	s := env.s
	loads := map[string]*h2loadLoop{
		"h2c": startH2loadLoop(t, "http://"+s.addr+"/"),
		"TLS": startH2loadLoop(t, "https://"+env.tlsAddr+"/"),
	}
	// Each reload comes while both loops have a run loading the worker
	// it retires: a run started after the previous reload was done.
	last := map[string]int{}
	fresh := func() {
		for name, l := range loads {
			last[name] = l.waitFresh(last[name])
		}
	}
	// A long stream (three events, 200 ms apart) across the first HUP.
	c := h2cClient()
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/up/sse", nil)
	req.Host = "a.test"
	sse, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "h2load's requests to reach the workers", func() bool {
		return servedRequests(t, s) > 100
	})
	for gen := 2; gen <= 21; gen++ {
		fresh()
		s.signal(syscall.SIGHUP)
		s.waitLog(fmt.Sprintf(`all workers ready.*generation=%d`, gen), 20*time.Second)
		// Each reload's old worker finishes its drain (GOAWAY, streams,
		// close) before the next.
		s.waitLog(fmt.Sprintf(`worker stopped.*worker_generation=%d`, gen-1), 20*time.Second)
		if gen == 2 {
			b, err := io.ReadAll(sse.Body)
			sse.Body.Close()
			if err != nil || string(b) != "data: 0\n\ndata: 1\n\ndata: 2\n\n" {
				t.Errorf("stream across a HUP: %q %v", b, err)
			}
		}
	}
	pidfile := filepath.Join(s.dir, "forkd.pid")
	fresh()
	s.signal(syscall.SIGUSR2)
	pid := s.handedOver(30 * time.Second)
	fresh()
	syscall.Kill(pid, syscall.SIGUSR2)
	eventually(t, 30*time.Second, "a second binary upgrade", func() bool {
		b, _ := os.ReadFile(pidfile)
		p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if p != pid && p != 0 && alive(p) && !alive(pid) {
			stopAtEnd(t, p)
			return true
		}
		return false
	})
	re := regexp.MustCompile(`requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	for name, l := range loads {
		var total, failed, goaways int
		outs := l.stop()
		if len(outs) > 0 {
			t.Logf("%s: the last h2load run:\n%s", name, outs[len(outs)-1])
		}
		for _, out := range outs {
			m := re.FindStringSubmatch(out)
			if m == nil || m[6] != "0" {
				t.Fatalf("%s h2load:\n%s", name, out)
			}
			n, _ := strconv.Atoi(m[1])
			f, _ := strconv.Atoi(m[4])
			total += n
			failed += f
			if strings.Contains(out, "Process Request Failure") {
				goaways++ // the run's clients were told GOAWAY
			}
			if f > 0 {
				t.Errorf("%s: h2load saw failures across a reload:\n%s", name, out)
			}
		}
		t.Logf("%s: %d requests, %d failed, %d h2load runs ended by a reload's GOAWAY", name, total, failed, goaways)
		// Each of the 22 reloads came during a run; a run can end
		// before a slow reload's drain begins, but most must meet one
		// for the test to mean anything.
		if goaways < 18 {
			t.Errorf("%s: only %d h2load runs met a reload", name, goaways)
		}
	}
}

// TestH2Embedded: embedded applications, net/http (examples/nethttp) and
// native (examples/hello), serve HTTP/2 unchanged, their connection
// context included.
func TestH2Embedded(t *testing.T) {
	for _, c := range []struct{ bin, path, want string }{
		{"hello", "/", "Hello, World!\n"},
		{"nethttp", "/", "Hello from net/http under forkd\n"},
		{"nethttp", "/hello/gopher", `"hello":"gopher"`},
		{"nethttp", "/hello/proto", `"proto":"HTTP/2.0"`}, // r.Proto is the client's
		{"nethttp", "/stats", "app: "},                    // the value from WithBaseContext
	} {
		t.Run(c.bin+c.path, func(t *testing.T) {
			s := start(t, opts{workers: 1, bin: filepath.Join(binDir, c.bin), noSites: true,
				listen: "  protocols = [\"http/1.1\", \"h2c\"]\n"})
			resp, err := h2cClient().Get("http://" + s.addr + c.path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.ProtoMajor != 2 || !strings.Contains(string(b), c.want) {
				t.Errorf("%d %s %q", resp.StatusCode, resp.Proto, b)
			}
		})
	}
}

// TestH2Metrics: the metrics tell HTTP/2 streams and connections apart
// from the totals, which count every protocol.
func TestH2Metrics(t *testing.T) {
	maddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := start(t, opts{workers: 1, listen: "  protocols = [\"http/1.1\", \"h2c\"]\n",
		extra: fmt.Sprintf(`metrics { address = "%s" }`, maddr)})
	c := h2cClient()
	defer c.CloseIdleConnections()
	for range 5 {
		resp, err := c.Get("http://" + s.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Fatalf("h2c GET: %d %s", resp.StatusCode, resp.Proto)
		}
	}
	for range 3 {
		if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
			t.Fatalf("HTTP/1.1 GET: %d %v", code, err)
		}
	}
	metric := func(body, name string) int {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\d+)$`).FindStringSubmatch(body)
		if m == nil {
			return -1
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	var body string
	// The h2c client keeps its connection open: one HTTP/2 connection.
	eventually(t, 10*time.Second, "metrics to count the streams", func() bool {
		_, b, err := get(maddr, "/metrics")
		body = b
		return err == nil && metric(b, `forkd_http2_requests_total{class="2xx"}`) == 5 &&
			metric(b, `forkd_requests_total{class="2xx"}`) == 8 &&
			metric(b, "forkd_http2_open_connections") == 1
	})
	if n := metric(body, `forkd_http2_requests_total{class="4xx"}`); n != 0 {
		t.Errorf("forkd_http2_requests_total 4xx = %d, want 0:\n%s", n, body)
	}
}

// TestH2Limits: the limits block applies per stream.
func TestH2Limits(t *testing.T) {
	env := startH2(t, `limits {
  header_count = 20
  body_bytes   = 1000
  idle_timeout = "2s"
}
`)
	c := h2cClient()
	req, _ := http.NewRequest("GET", "http://"+env.s.addr+"/", nil)
	for i := range 30 {
		req.Header.Set(fmt.Sprintf("X-H%d", i), "v")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("30 fields: %d", resp.StatusCode)
	}
	for _, n := range []int64{1000, 1001} {
		req, _ := http.NewRequest("POST", "http://"+env.s.addr+"/up/echo", strings.NewReader(strings.Repeat("x", int(n))))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[int64]int{1000: 200, 1001: 413}[n]; resp.StatusCode != want {
			t.Errorf("body of %d bytes: %d, want %d", n, resp.StatusCode, want)
		}
	}
	// A connection without streams closes after idle_timeout (GOAWAY).
	idle := dialAttack(t, env.s.addr)
	idle.drain()
	eventually(t, 15*time.Second, "the idle connection to be closed", func() bool {
		return idle.goaway.Load() || idle.closed.Load()
	})
}
