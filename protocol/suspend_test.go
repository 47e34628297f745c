package protocol

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// suspendHandler answers each request with what its "upstream" sends: a
// socketpair made per request, whose far end goes to the test (peers).
// Served inline on a loop it suspends the request and reads its end when
// the loop reports it readable (a SocketWatcher of the connection's loop),
// as the reverse proxy does; elsewhere, or once the loop ends, it waits
// for it on a goroutine. No answer within timeout is a 504.
type suspendHandler struct {
	peers   chan *os.File
	timeout time.Duration
	// suspended counts the requests that were suspended.
	suspended chan struct{}
}

var errNoAnswer = errors.New("no answer")

func (h *suspendHandler) Serve(w *ResponseWriter, r *Request) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		w.WriteHeader(500)
		return
	}
	a, b := os.NewFile(uintptr(fds[0]), "near"), os.NewFile(uintptr(fds[1]), "far")
	h.peers <- b
	var sw SocketWatcher
	key := -1
	done := func() {
		if key >= 0 {
			sw.Unwatch(key, -1)
			key = -1
		}
		a.Close()
	}
	reply := func(p []byte, err error) {
		done()
		if err != nil {
			w.WriteHeader(http.StatusGatewayTimeout)
			return
		}
		w.Write(p)
	}
	blocking := func() {
		w.WillBlock()
		a.SetReadDeadline(time.Now().Add(h.timeout))
		buf := make([]byte, 64)
		n, err := a.Read(buf)
		reply(buf[:n], err)
	}
	var s *Suspended
	s = w.Suspend(h.timeout, func(ended bool) {
		if ended {
			s.Resume(blocking)
			return
		}
		s.Resume(func() { reply(nil, errNoAnswer) })
	})
	if s == nil {
		blocking()
		return
	}
	if h.suspended != nil {
		h.suspended <- struct{}{}
	}
	sw = w.SocketWatcher()
	rc, _ := a.SyscallConn()
	rc.Control(func(fd uintptr) {
		key, err = sw.Watch(int(fd), func(gone bool) {
			if gone {
				s.Resume(blocking)
				return
			}
			var buf [64]byte
			var n int
			var rerr error
			rc.Control(func(fd uintptr) { n, rerr = unix.Read(int(fd), buf[:]) })
			if rerr == unix.EAGAIN {
				return // a spurious event
			}
			p := append([]byte(nil), buf[:max(n, 0)]...)
			s.Resume(func() { reply(p, rerr) })
		})
	})
	if err != nil {
		s.Resume(blocking)
	}
}

func (h *suspendHandler) LoopSafe() bool { return true }

func (h *suspendHandler) peer(t *testing.T) *os.File {
	t.Helper()
	select {
	case b := <-h.peers:
		t.Cleanup(func() { b.Close() })
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("the handler never ran")
		return nil
	}
}

// TestSuspend serves requests that the handler suspends on the loop and
// resumes on a loop event (in the modes that serve inline on loops; the
// others wait on a goroutine and must answer the same): in order behind
// pipelined requests, with a 504 past the timeout, to a client that went
// away, under Shutdown, which waits for the suspended request, and under
// Close, which does not.
func TestSuspend(t *testing.T) { inModes(t, testSuspend) }

func testSuspend(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, h *suspendHandler, s *Server, addr string)
	}{
		{"pipelined", func(t *testing.T, h *suspendHandler, s *Server, addr string) {
			c := dial(t, addr)
			io.WriteString(c, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			for _, body := range []string{"one", "two", "three"} {
				h.peer(t).WriteString(body)
			}
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if modeOf(t).loop == loopInline && len(h.suspended) != 3 {
				t.Errorf("%d requests suspended, want 3", len(h.suspended))
			}
			rs := readResponses(t, string(got), "GET", "GET", "GET")
			for i, want := range []string{"one", "two", "three"} {
				if rs[i].StatusCode != 200 || bodyOf(rs[i]) != want {
					t.Errorf("response %d: %d %q, want 200 %q", i, rs[i].StatusCode, bodyOf(rs[i]), want)
				}
			}
		}},
		{"timeout", func(t *testing.T, h *suspendHandler, s *Server, addr string) {
			c := dial(t, addr)
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			h.peer(t) // never answers
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusGatewayTimeout {
				t.Errorf("status %d, want 504", resp.StatusCode)
			}
			// The connection goes on.
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			h.peer(t).WriteString("again")
			resp, err = http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || bodyOf(resp) != "again" {
				t.Fatalf("after the timeout: %v %q", err, bodyOf(resp))
			}
		}},
		{"client gone", func(t *testing.T, h *suspendHandler, s *Server, addr string) {
			c := dial(t, addr)
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			b := h.peer(t)
			c.Close()
			b.WriteString("nobody")
			waitFor(t, "the connection closed", func() bool { return s.Stats().OpenConns == 0 })
			// The server serves on.
			c2 := dial(t, addr)
			io.WriteString(c2, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			h.peer(t).WriteString("next")
			got, _ := io.ReadAll(c2)
			if !strings.HasSuffix(string(got), "\r\n\r\nnext") {
				t.Errorf("got %q", got)
			}
		}},
		{"drain", func(t *testing.T, h *suspendHandler, s *Server, addr string) {
			c := dial(t, addr)
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			b := h.peer(t)
			if modeOf(t).loop == loopInline {
				<-h.suspended
			}
			shut := make(chan error, 1)
			go func() { shut <- s.Shutdown(context.Background()) }()
			b.WriteString("drained")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || bodyOf(resp) != "drained" {
				t.Errorf("got %d %q", resp.StatusCode, bodyOf(resp))
			}
			c.Close()
			select {
			case err := <-shut:
				if err != nil {
					t.Errorf("Shutdown: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Shutdown never returned")
			}
		}},
		{"close", func(t *testing.T, h *suspendHandler, s *Server, addr string) {
			c := dial(t, addr)
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			h.peer(t) // never answers
			if modeOf(t).loop == loopInline {
				<-h.suspended
			}
			s.Close()
			// The connection is cut (Close does not wait for handlers);
			// the suspended request's rest goes on on a goroutine and
			// ends with its 504, written to no one.
			if b, err := io.ReadAll(c); err == nil && len(b) > 0 && !strings.Contains(string(b), " 504 ") {
				t.Errorf("after Close: %q", b)
			}
			waitFor(t, "the connection released", func() bool { return s.Stats().OpenConns == 0 })
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := &suspendHandler{peers: make(chan *os.File, 4), timeout: 300 * time.Millisecond,
				suspended: make(chan struct{}, 4)}
			s, addr := startServer(t, h, nil)
			tc.run(t, h, s, addr)
		})
	}
}

// waitFor waits for cond, polling, up to ten seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestReturnToLoop: a handler that leaves its loop (WillBlock) and asks
// for it (ReturnToLoop) gets its connection back on the loop as soon as
// the request is done: the next request runs inline there (in the modes
// with loops that serve inline), whether it comes after the response, in
// the same write as the one before (pipelined: served on the goroutine,
// after which it stays on its goroutine), or right away in a burst of
// requests; and nothing sent while the connection was held is lost.
func TestReturnToLoop(t *testing.T) { inModes(t, testReturnToLoop) }

func testReturnToLoop(t *testing.T) {
	onLoop := make(chan bool, 64)
	h := HandlerFunc(func(w *ResponseWriter, r *Request) {
		lt, ok := w.c.t.(*loopTransport)
		onLoop <- ok && lt.l != nil
		if string(r.Path) == "/leave" {
			w.ReturnToLoop()
			w.WillBlock()
		}
		w.Write(r.Path)
	})
	_, addr := startServer(t, h, nil)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	get := func(paths ...string) {
		t.Helper()
		var b strings.Builder
		for _, p := range paths {
			b.WriteString("GET " + p + " HTTP/1.1\r\nHost: x\r\n\r\n")
		}
		io.WriteString(c, b.String())
		for _, p := range paths {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := bodyOf(resp); got != p {
				t.Fatalf("got %q, want %q", got, p)
			}
		}
	}
	inline := modeOf(t).loop == loopInline
	next := func(path string, want bool) {
		t.Helper()
		select {
		case got := <-onLoop:
			if inline && got != want {
				t.Errorf("%s served on the loop: %v, want %v", path, got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s never served", path)
		}
	}
	get("/leave")
	next("/leave", true)
	get("/stay")
	next("/stay", true) // back on the loop at once
	for range 20 {
		get("/leave")
		next("/leave", true)
	}
	get("/leave", "/after")
	next("/leave", true)
	next("/after", false) // pipelined: served where /leave ended
	// That connection is on a net.Conn now (not held), where it stays
	// until it idles for parkDelay; its requests are answered all the
	// same.
	for range 3 {
		get("/leave")
		<-onLoop
	}
}
