package protocol

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A serving mode is one of the ways a Server serves sockets; the tests of
// serving run once in each, as subtests named by the mode (inModes), and
// startServer builds its Server for the mode its test runs in.
type serveMode struct {
	name  string
	loop  int  // 0, loopInline or loopMove
	noRaw bool // the plain keep-alive loop instead of serveTurns
	// procs, when set, is the GOMAXPROCS the server starts with: 1 lays
	// out one loop that waits in the runtime's poller (loopLayout), with
	// Serve accepting for it.
	procs int
}

const (
	loopInline = 1 // event loops, handlers inline
	loopMove   = 2 // event loops, handlers that leave them at once
)

var serveModes = []serveMode{
	{name: "raw"},
	{name: "loop-inline", loop: loopInline},
	{name: "loop-move", loop: loopMove},
	{name: "noraw", noRaw: true},
	// A worker whose requests run on goroutines gives its loop P back
	// (ProcsOnGoroutines): with a CPU share of one, GOMAXPROCS=1.
	{name: "gomaxprocs1", loop: loopMove, procs: 1},
}

// inModes runs f once per serving mode, as a subtest named by the mode:
// go test -run 'TestX/loop-move' picks one.
func inModes(t *testing.T, f func(t *testing.T)) {
	for _, m := range serveModes {
		t.Run(m.name, f)
	}
}

// modeOf returns the serving mode t runs in: the one inModes named it by
// (at any level of subtests),
// else (benchmarks, tests of one mode) the first.
func modeOf(t testing.TB) serveMode {
	parts := strings.Split(t.Name(), "/")
	for _, p := range parts[1:] {
		for _, m := range serveModes {
			if m.name == p {
				return m
			}
		}
	}
	return serveModes[0]
}

// loopHandler runs a test handler on the event loops.
type loopHandler struct {
	h    Handler
	move bool
}

func (l loopHandler) LoopSafe() bool { return true }

func (l loopHandler) Serve(w *ResponseWriter, r *Request) {
	if l.move {
		w.WillBlock()
	}
	l.h.Serve(w, r)
}

// startServer serves h on a loopback listener until the test ends.
func startServer(t testing.TB, h Handler, mod func(*Server)) (*Server, string) {
	t.Helper()
	return startServerOn(t, h, mod, nil)
}

// startServerOn is startServer with prep called on the listener first.
func startServerOn[T testing.TB](t T, h Handler, mod func(*Server), prep func(T, net.Listener)) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if prep != nil {
		prep(t, ln)
	}
	return serveOn(t, ln, h, mod, ListenOptions{})
}

// serveOn serves h on ln with o, in t's serving mode, until t ends.
func serveOn(t testing.TB, ln net.Listener, h Handler, mod func(*Server), o ListenOptions) (*Server, string) {
	t.Helper()
	mode := modeOf(t)
	if mode.procs != 0 {
		prev := runtime.GOMAXPROCS(mode.procs)
		t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	}
	s := &Server{Handler: h, noRaw: mode.noRaw}
	if mod != nil {
		mod(s)
	}
	if mode.loop != 0 {
		s.Handler = loopHandler{h: s.Handler, move: mode.loop == loopMove}
	}
	errc := make(chan error, 1)
	go func() { errc <- s.ServeWith(ln, o) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-errc; err != ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String()
}

// dial opens a client connection with a safety deadline.
func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange sends raw on a new connection and reads until the server closes.
func exchange(t testing.TB, addr, raw string) string {
	t.Helper()
	c := dial(t, addr)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v (got %q)", err, b)
	}
	return string(b)
}

// readResponses parses every response in raw (for requests with methods).
func readResponses(t testing.TB, raw string, methods ...string) []*http.Response {
	t.Helper()
	br := bufio.NewReader(strings.NewReader(raw))
	var out []*http.Response
	for _, m := range methods {
		resp, err := http.ReadResponse(br, &http.Request{Method: m})
		if err != nil {
			t.Fatalf("response %d: %v in %q", len(out), err, raw)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("response body %d: %v in %q", len(out), err, raw)
		}
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		resp.ContentLength = int64(len(body))
		out = append(out, resp)
	}
	if rest, _ := io.ReadAll(br); len(rest) > 0 {
		t.Fatalf("trailing bytes after %d responses: %q", len(methods), rest)
	}
	return out
}

func bodyOf(r *http.Response) string {
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

// echo writes back what it saw, in a form tests can compare.
var echo = HandlerFunc(func(w *ResponseWriter, r *Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteString(string(r.Method) + " " + string(r.Target) + " host=" + string(r.Host) + " body=" + string(body))
	for i := 0; i < r.Trailer.Len(); i++ {
		f := r.Trailer.At(i)
		w.WriteString(" trailer:" + string(f.Name) + "=" + string(f.Value))
	}
})

var hello = HandlerFunc(func(w *ResponseWriter, r *Request) {
	w.Header().Set("Content-Type", "text/plain")
	w.WriteString("Hello, World!")
})

var timeZero time.Time

func bufioReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }

// waitDelivered waits until the peer's kernel has acknowledged everything
// written on the TCP connection c (its send queue is empty), so that the
// bytes are in the peer's socket.
func waitDelivered(t testing.TB, c net.Conn) {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		var queued int
		rc.Control(func(fd uintptr) { queued, err = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) })
		if err != nil {
			t.Fatalf("SIOCOUTQ: %v", err)
		}
		if queued == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still unacknowledged after 10 s", queued)
		}
		runtime.Gosched()
	}
}
