package serve

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/protocol"
)

// loopClient is a keep-alive client connection.
type loopClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialLoopClient(t *testing.T, addr string) *loopClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	return &loopClient{t: t, c: c, br: bufio.NewReader(c)}
}

func (lc *loopClient) send(paths ...string) {
	lc.t.Helper()
	var b []byte
	for _, p := range paths {
		b = fmt.Appendf(b, "GET %s HTTP/1.1\r\nHost: p\r\n\r\n", p)
	}
	if _, err := lc.c.Write(b); err != nil {
		lc.t.Fatal(err)
	}
}

func (lc *loopClient) read() (int, string, error) {
	resp, err := http.ReadResponse(lc.br, nil)
	if err != nil {
		return 0, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b), err
}

// get sends path and reads its response, which must come whole.
func (lc *loopClient) get(path string) (int, string) {
	lc.t.Helper()
	lc.send(path)
	st, body, err := lc.read()
	if err != nil {
		lc.t.Fatalf("%s: %v", path, err)
	}
	return st, body
}

// TestProxyOnLoop: proxied requests without a body, on a keep-alive client
// connection that went back to its loop after its first request, are
// served by the loop's events (testHookLoopRespond counts them), and keep
// the goroutine path's behaviour in every way one can fail: pipelined
// requests answered in order, response_timeout's 504, a reused connection
// found dead retried on a new one, an upstream that closes mid-body (the
// client sees the response cut), stray bytes never reused, a client gone
// while its request is suspended, a Shutdown that waits for it.
func TestProxyOnLoop(t *testing.T) {
	var onLoop atomic.Int64
	hook := func() { onLoop.Add(1) }
	testHookLoopRespond.Store(&hook)
	t.Cleanup(func() { testHookLoopRespond.Store(nil) })

	type env struct {
		addr   string
		srv    interface{ Shutdown(context.Context) error }
		open   func() int64
		held   chan struct{} // an upstream got /hold
		hold   chan struct{} // closed: /hold is answered
		client *loopClient
		// upClosed gets what the upstream's read after its answer to
		// /panic-sent or /panic-ready returned: the connection's end
		// once the proxy closed it (EOF or a reset), a timeout if it
		// was left open.
		upClosed chan error
		backends func() []*backend
	}
	// panicOn is a hook that panics on the loop for the request to path.
	panicOn := func(path string) *func(*protocol.Request) {
		f := func(r *protocol.Request) {
			if string(r.Path) == path {
				panic("test panic on " + path)
			}
		}
		return &f
	}
	// leftOpen fails the test if the upstream connection of the last
	// /panic-* request was not closed by the proxy.
	leftOpen := func(t *testing.T, e *env) {
		t.Helper()
		if err := <-e.upClosed; err == nil || os.IsTimeout(err) {
			t.Fatalf("the upstream connection was left open (%v)", err)
		}
	}
	cases := []struct {
		name string
		run  func(t *testing.T, e *env)
	}{
		{"keep-alive", func(t *testing.T, e *env) {
			for _, p := range []string{"/b", "/c", "/d"} {
				if st, body := e.client.get(p); st != 200 || body != p {
					t.Fatalf("%s: %d %q", p, st, body)
				}
			}
			if n := onLoop.Load(); n != 3 {
				t.Errorf("%d responses sent by the loop, want 3", n)
			}
		}},
		{"small bodies", func(t *testing.T, e *env) {
			// The third is more than the connection's read buffer takes
			// at once: not buffered whole, it goes the goroutine's way.
			for i, body := range []string{"hello", strings.Repeat("b", 2000), strings.Repeat("c", loopBodyMax)} {
				fmt.Fprintf(e.client.c, "POST /post HTTP/1.1\r\nHost: p\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
				st, got, err := e.client.read()
				if want := fmt.Sprintf("/post %d %x", len(body), sha256.Sum256([]byte(body))); err != nil || st != 200 || got != want {
					t.Fatalf("POST %d: %d %q %v, want %q", i, st, got, err, want)
				}
			}
			if n := onLoop.Load(); n != 2 {
				t.Errorf("%d responses sent by the loop, want 2", n)
			}
		}},
		{"chunked", func(t *testing.T, e *env) {
			// A chunked response read whole with its head is sent by the
			// loop, its trailer fields passed on; one with framing that
			// Read refuses goes to a goroutine, which answers 502 as the
			// goroutine path does.
			var blocking atomic.Int64
			hook := func() { blocking.Add(1) }
			testHookLoopBlocking.Store(&hook)
			defer testHookLoopBlocking.Store(nil)
			e.client.send("/chunked")
			resp, err := http.ReadResponse(e.client.br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != 200 || string(b) != "hello, world" || resp.Trailer.Get("X-Sum") != "12" {
				t.Fatalf("/chunked: %d %q %v, trailer %v", resp.StatusCode, b, err, resp.Trailer)
			}
			if n, m := onLoop.Load(), blocking.Load(); n != 1 || m != 0 {
				t.Errorf("%d responses sent after the loop's exchange, %d of them by a goroutine; want 1, 0", n, m)
			}
			if st, _ := e.client.get("/bad-chunked"); st != 502 {
				t.Fatalf("/bad-chunked: %d, want 502", st)
			}
			if m := blocking.Load(); m != 1 {
				t.Errorf("%d exchanges went on on a goroutine, want 1 (/bad-chunked)", m)
			}
			if st, body := e.client.get("/after"); st != 200 || body != "/after" {
				t.Fatalf("/after: %d %q", st, body)
			}
		}},
		{"long head", func(t *testing.T, e *env) {
			// A head and body longer together than the upstream
			// connection's buffer: the body must not be read over the
			// head's fields, which the response is made from.
			for _, p := range []string{"/long-head", "/long-head-chunked"} {
				e.client.send(p)
				resp, err := http.ReadResponse(e.client.br, nil)
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(resp.Body)
				if err != nil || resp.StatusCode != 200 || string(b) != strings.Repeat("b", 8<<10) ||
					resp.Header.Get("X-Pad") != strings.Repeat("p", 10<<10) || resp.Header.Get("X-Label") != p {
					t.Fatalf("%s: %d, %d bytes %v, X-Label %q, X-Pad intact %v", p, resp.StatusCode, len(b), err,
						resp.Header.Get("X-Label"), resp.Header.Get("X-Pad") == strings.Repeat("p", 10<<10))
				}
			}
		}},
		{"pipelined", func(t *testing.T, e *env) {
			e.client.send("/1", "/2", "/3")
			for _, p := range []string{"/1", "/2", "/3"} {
				st, body, err := e.client.read()
				if err != nil || st != 200 || body != p {
					t.Fatalf("%s: %d %q %v", p, st, body, err)
				}
			}
			if n := onLoop.Load(); n != 3 {
				t.Errorf("%d responses sent by the loop, want 3", n)
			}
		}},
		{"response_timeout", func(t *testing.T, e *env) {
			if st, body := e.client.get("/slow"); st != 504 || body != "504 Gateway Timeout\n" {
				t.Fatalf("/slow: %d %q", st, body)
			}
			if st, body := e.client.get("/after"); st != 200 || body != "/after" {
				t.Fatalf("/after: %d %q", st, body)
			}
		}},
		{"stale reused connection", func(t *testing.T, e *env) {
			if st, body := e.client.get("/drop-once"); st != 200 || body != "/drop-once" {
				t.Fatalf("/drop-once: %d %q", st, body)
			}
		}},
		{"streamed body", func(t *testing.T, e *env) {
			// What came with the head reaches the client before the rest
			// is sent: it is not held back until the body is complete.
			e.client.send("/stream")
			resp, err := http.ReadResponse(e.client.br, nil)
			if err != nil {
				t.Fatal(err)
			}
			var first [3]byte
			if _, err := io.ReadFull(resp.Body, first[:]); err != nil || string(first[:]) != "abc" {
				t.Fatalf("first part %q %v", first, err)
			}
			close(e.hold)
			if rest, err := io.ReadAll(resp.Body); err != nil || string(rest) != "def" {
				t.Fatalf("rest %q %v", rest, err)
			}
			if st, body := e.client.get("/after"); st != 200 || body != "/after" {
				t.Fatalf("/after: %d %q", st, body)
			}
		}},
		{"upstream closes mid-body", func(t *testing.T, e *env) {
			e.client.send("/cut")
			if _, _, err := e.client.read(); err == nil {
				t.Fatal("a cut response reached the client whole")
			}
		}},
		{"stray bytes", func(t *testing.T, e *env) {
			if st, body := e.client.get("/stray"); st != 200 || body != "/stray" {
				t.Fatalf("/stray: %d %q", st, body)
			}
			for _, p := range []string{"/x", "/y"} {
				if st, body := e.client.get(p); st != 200 || body != p {
					t.Fatalf("%s after stray bytes: %d %q", p, st, body)
				}
			}
		}},
		{"client gone", func(t *testing.T, e *env) {
			e.client.send("/hold")
			<-e.held
			e.client.c.Close()
			close(e.hold)
			c2 := dialLoopClient(t, e.addr)
			if st, body := c2.get("/next"); st != 200 || body != "/next" {
				t.Fatalf("/next: %d %q", st, body)
			}
			c2.c.Close()
			for deadline := time.Now().Add(testTimeout); e.open() != 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%d connections still open", e.open())
				}
			}
		}},
		{"panic after the request is sent", func(t *testing.T, e *env) {
			// The handler panics after the loop sent the request: the
			// client gets its 500, and the upstream connection, which no
			// Resume will end, is closed and no longer counted.
			testHookLoopSent.Store(panicOn("/panic-sent"))
			defer testHookLoopSent.Store(nil)
			if st, _ := e.client.get("/panic-sent"); st != 500 {
				t.Fatalf("/panic-sent: %d, want 500", st)
			}
			// The count was given back before the 500 was written.
			for _, b := range e.backends() {
				if n := b.active.Load(); n != 0 {
					t.Errorf("%s: %d exchanges counted active after the panic", b.addr, n)
				}
			}
			leftOpen(t, e)
			c2 := dialLoopClient(t, e.addr)
			if st, body := c2.get("/after"); st != 200 || body != "/after" {
				t.Fatalf("/after: %d %q", st, body)
			}
		}},
		{"panic reading the response", func(t *testing.T, e *env) {
			// A panic in the loop's event for the upstream socket, outside
			// any handler, does not end the worker: the attempt fails
			// (the goroutine path retries it on a new connection) and its
			// connection is closed.
			testHookLoopReady.Store(panicOn("/panic-ready"))
			defer testHookLoopReady.Store(nil)
			st, body := e.client.get("/panic-ready")
			if st != 200 && st != 502 {
				t.Fatalf("/panic-ready: %d %q, want the retry's 200 or a 502", st, body)
			}
			leftOpen(t, e)
			if st, body := e.client.get("/after"); st != 200 || body != "/after" {
				t.Fatalf("/after: %d %q", st, body)
			}
		}},
		{"drain", func(t *testing.T, e *env) {
			e.client.send("/hold")
			<-e.held
			shut := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				defer cancel()
				shut <- e.srv.Shutdown(ctx)
			}()
			close(e.hold)
			st, body, err := e.client.read()
			if err != nil || st != 200 || body != "/hold" {
				t.Fatalf("/hold across the Shutdown: %d %q %v", st, body, err)
			}
			if err := <-shut; err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := &env{held: make(chan struct{}, 1), hold: make(chan struct{}), upClosed: make(chan error, 1)}
			var dropped, panicked atomic.Bool
			quit := make(chan struct{})
			up := hashingUpstream(t, func(c net.Conn, req *http.Request, sum [32]byte) bool {
				p := req.URL.Path
				switch p {
				case "/post":
					p = fmt.Sprintf("/post %d %x", req.ContentLength, sum)
				case "/slow":
					<-quit // never answered
					return false
				case "/hold":
					e.held <- struct{}{}
					select {
					case <-e.hold:
					case <-time.After(testTimeout):
						return false
					}
				case "/drop-once":
					if !dropped.Swap(true) {
						return false // read, never answered: closed
					}
				case "/stream":
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc")
					select {
					case <-e.hold:
					case <-quit:
						return false
					}
					_, err := io.WriteString(c, "def")
					return err == nil
				case "/panic-sent", "/panic-ready":
					if panicked.Swap(true) {
						break // the retry: answered as any other
					}
					_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(p), p)
					_ = c.SetReadDeadline(time.Now().Add(testTimeout))
					_, err := c.Read(make([]byte, 1))
					e.upClosed <- err
					return false
				case "/long-head", "/long-head-chunked":
					body := strings.Repeat("b", 8<<10)
					framing := fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body)
					if p == "/long-head-chunked" {
						framing = fmt.Sprintf("Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body)
					}
					_, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nX-Pad: %s\r\nX-Label: %s\r\n%s", strings.Repeat("p", 10<<10), p, framing)
					return err == nil
				case "/chunked":
					_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"+
						"5\r\nhello\r\n7\r\n, world\r\n0\r\nX-Sum: 12\r\n\r\n")
					return err == nil
				case "/bad-chunked":
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX")
					return false
				case "/cut":
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
					return false
				case "/stray":
					_, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%sHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray", len(p), p)
					return err == nil
				}
				_, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(p), p)
				return err == nil
			})
			t.Cleanup(func() { close(quit) }) // before the upstream's cleanup waits for it
			h := newHandler(t, []config.Site{{Name: "p", Hosts: []string{"*"}, Routes: []config.Route{
				{Prefix: "/", Proxy: &config.Proxy{Upstreams: []string{up}, Keepalive: 8,
					RetryBodyBuffer: config.DefaultRetryBodyBuffer, ResponseTimeout: time.Second}},
			}}}, Options{})
			srv, addr := loopServer(t, h)
			e.addr, e.srv = addr, srv
			e.open = func() int64 { return srv.Stats().OpenConns }
			e.backends = func() []*backend { return h.(*handler).proxies[0].backends }
			e.client = dialLoopClient(t, addr)
			// The first request dials, on a goroutine; the connection
			// then goes back to its loop, which watches the upstream
			// connection too.
			if st, body := e.client.get("/a"); st != 200 || body != "/a" {
				t.Fatalf("/a: %d %q", st, body)
			}
			onLoop.Store(0)
			tc.run(t, e)
		})
	}
}

// hashingUpstream is an upstream that hands serve each request with the
// SHA-256 of its body.
func hashingUpstream(t *testing.T, serve func(c net.Conn, req *http.Request, sum [32]byte) bool) string {
	t.Helper()
	return requestUpstream(t, func(c net.Conn, _ *bufio.Reader, req *http.Request) bool {
		h := sha256.New()
		_, _ = io.Copy(h, req.Body)
		return serve(c, req, [32]byte(h.Sum(nil)))
	})
}

// TestProxyOnLoopRoutes: only routes whose middleware has nothing to do
// after the handler returns serve on the loop (proxy.onLoop): error_pages
// (which looks at the status afterwards) and compress (the site's or the
// route's) keep the goroutine path; headers and request IDs, which act
// before, do not.
func TestProxyOnLoopRoutes(t *testing.T) {
	cz := compressBlock()
	for _, tc := range []struct {
		name string
		site config.Site
		want bool
	}{
		{"plain", config.Site{}, true},
		{"headers and request_id", config.Site{Headers: &config.Headers{Set: map[string]string{"X-A": "1"}}, Access: config.Access{RequestID: "X-Request-Id"}}, true},
		{"error_pages", config.Site{ErrorPages: map[string]string{"502": "/dev/null"}}, false},
		{"compress", config.Site{Compress: cz}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site := tc.site
			site.Name, site.Hosts = "p", []string{"*"}
			site.Routes = []config.Route{{Prefix: "/", Proxy: &config.Proxy{Upstreams: []string{"127.0.0.1:1"},
				Keepalive: 8, RetryBodyBuffer: config.DefaultRetryBodyBuffer}}}
			h := newHandler(t, []config.Site{site}, Options{}).(*handler)
			if got := h.proxies[0].onLoop; got != tc.want {
				t.Errorf("onLoop %v, want %v", got, tc.want)
			}
		})
	}
}
