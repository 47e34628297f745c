package protocol

import (
	"bufio"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testNoRaw makes startServer's servers use the plain keep-alive loop
// instead of serveRaw; testLoop runs them on event loops, with handlers
// inline (loopInline) or moving off the loop at once (loopMove). TestMain
// runs every test in each of these ways.
var (
	testNoRaw bool
	testLoop  int
)

const (
	loopInline = 1
	loopMove   = 2
)

func TestMain(m *testing.M) {
	if v := os.Getenv("FORKD_TEST_LOOP"); v != "" {
		// One pass in one mode: 1 inline, 2 move, 3 no raw loop.
		testLoop, _ = strconv.Atoi(v)
		if testLoop == 3 {
			testLoop, testNoRaw = 0, true
		}
		os.Exit(m.Run())
	}
	code := m.Run()
	// The later passes run the tests only.
	flag.Set("test.bench", "")
	flag.Set("test.fuzz", "")
	for _, mode := range []int{loopInline, loopMove} {
		if code == 0 {
			testLoop = mode
			code = m.Run()
		}
	}
	if code == 0 {
		testLoop = 0
		testNoRaw = true
		code = m.Run()
	}
	os.Exit(code)
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
	s := &Server{Handler: h, noRaw: testNoRaw}
	if mod != nil {
		mod(s)
	}
	if testLoop != 0 {
		s.Handler = loopHandler{h: s.Handler, move: testLoop == loopMove}
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
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
