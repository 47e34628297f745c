package protocol

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// get sends one GET for path on a new connection and returns the status
// and body.
func get(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	c := dial(t, addr)
	defer c.Close()
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s body: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// On an event loop, a handler that calls WillBlock takes its connection
// off the loop: the loop's other connections are served while it waits.
func TestLoopWillBlockDoesNotStall(t *testing.T) { inModes(t, testLoopWillBlockDoesNotStall) }

func testLoopWillBlockDoesNotStall(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	h := loopHandler{h: HandlerFunc(func(w *ResponseWriter, r *Request) {
		if string(r.Path) == "/block" {
			w.WillBlock()
			entered <- struct{}{}
			<-release
		}
		w.WriteString("ok " + string(r.Path))
	})}
	s, addr := startServer(t, h, nil)
	blocked := dial(t, addr)
	io.WriteString(blocked, "GET /block HTTP/1.1\r\nHost: a\r\n\r\n")
	<-entered
	// Every new connection may land on the blocked handler's loop.
	for i := range 8 {
		if st, body := get(t, addr, "/fast"); st != 200 || body != "ok /fast" {
			t.Fatalf("request %d while a handler blocks: %d %q", i, st, body)
		}
	}
	close(release)
	br := bufio.NewReader(blocked)
	for _, path := range []string{"/block", "/again"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "ok "+path {
			t.Fatalf("%s: %q", path, b)
		}
		// The connection that left the loop keeps serving.
		io.WriteString(blocked, "GET /again HTTP/1.1\r\nHost: a\r\n\r\n")
	}
	blocked.Close()
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A response the client does not read fills the socket; the connection
// then leaves the loop instead of holding it up, and the response arrives
// whole once the client reads.
func TestLoopBigResponseDoesNotStall(t *testing.T) { inModes(t, testLoopBigResponseDoesNotStall) }

func testLoopBigResponseDoesNotStall(t *testing.T) {
	const size = 16 << 20
	chunk := strings.Repeat("x", 64<<10)
	h := loopHandler{h: HandlerFunc(func(w *ResponseWriter, r *Request) {
		if string(r.Path) == "/big" {
			w.SetContentLength(size)
			for n := 0; n < size; n += len(chunk) {
				if _, err := w.WriteString(chunk); err != nil {
					return
				}
			}
			return
		}
		w.WriteString("ok")
	})}
	_, addr := startServer(t, h, nil)
	big := dial(t, addr)
	io.WriteString(big, "GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
	for i := range 8 {
		if st, body := get(t, addr, "/small"); st != 200 || body != "ok" {
			t.Fatalf("request %d during a big response: %d %q", i, st, body)
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(big), nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != size {
		t.Fatalf("big body: %d bytes, %v", n, err)
	}
}

// Idle connections on a loop honour IdleTimeout (the loop's sweep hands
// them to a goroutine, where the deadline closes them).
func TestLoopIdleTimeoutCloses(t *testing.T) { inModes(t, testLoopIdleTimeoutCloses) }

func testLoopIdleTimeoutCloses(t *testing.T) {
	_, addr := startServer(t, loopHandler{h: hello}, func(s *Server) { s.Limits.IdleTimeout = 50 * time.Millisecond })
	c := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	// The server closes the idle connection: EOF, well before dial's 10 s.
	start := time.Now()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: %v, want EOF", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("closed after %v", d)
	}
}

// Connections accepted for the loops report the same addresses a net.Conn
// would.
func TestLoopAddresses(t *testing.T) { inModes(t, testLoopAddresses) }

func testLoopAddresses(t *testing.T) {
	h := loopHandler{h: HandlerFunc(func(w *ResponseWriter, r *Request) {
		w.WriteString(r.RemoteAddr.String() + " " + r.LocalAddr.String())
	})}
	_, addr := startServer(t, h, nil)
	c := dial(t, addr)
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if want := c.LocalAddr().String() + " " + c.RemoteAddr().String(); string(b) != want {
		t.Fatalf("addresses %q, want %q", b, want)
	}
}

// Unix-domain listeners work on the loops too.
func TestLoopUnixSocket(t *testing.T) { inModes(t, testLoopUnixSocket) }

func testLoopUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Handler: loopHandler{h: hello}, noRaw: modeOf(t).noRaw}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
	defer func() {
		s.Close()
		if err := <-errc; err != ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i := range 3 {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
}

// Sockets accepted for the loops get the options Go's Accept sets: without
// TCP_NODELAY a large response's last segment waits for a delayed ACK.
func TestLoopSocketOptions(t *testing.T) { inModes(t, testLoopSocketOptions) }

func testLoopSocketOptions(t *testing.T) {
	h := loopHandler{h: HandlerFunc(func(w *ResponseWriter, r *Request) {
		t, ok := w.c.t.(*loopTransport)
		if !ok {
			w.WriteString("not raw")
			return
		}
		fd := t.fd
		nodelay, _ := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY)
		keepalive, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		fmt.Fprintf(w, "nodelay=%d keepalive=%d", nodelay, keepalive)
	})}
	_, addr := startServer(t, h, nil)
	st, body := get(t, addr, "/")
	if st != 200 {
		t.Fatal(st)
	}
	if body == "not raw" {
		if !modeOf(t).noRaw && modeOf(t).loop != loopMove {
			t.Fatal("a LoopSafe handler's connection was not accepted for a loop")
		}
		return
	}
	if body != "nodelay=1 keepalive=1" {
		t.Fatal(body)
	}
}

// A client that asks to close gets its whole response and a clean EOF,
// whether the loop closes at once or lingers because more bytes followed.
func TestLoopConnectionClose(t *testing.T) { inModes(t, testLoopConnectionClose) }

func testLoopConnectionClose(t *testing.T) {
	_, addr := startServer(t, loopHandler{h: echo}, nil)
	for _, tc := range []struct{ name, raw string }{
		{"alone", "GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"},
		{"more follows", "GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"HTTP/1.0", "GET /a HTTP/1.0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := exchange(t, addr, tc.raw)
			rs := readResponses(t, out, "GET")
			if body := bodyOf(rs[0]); !strings.HasPrefix(body, "GET /a") {
				t.Fatalf("body %q", body)
			}
		})
	}
}

// The last response on a connection goes out with the FIN, in one segment
// (MSG_MORE, then close(2) or the linger's half-close at once: linger on a
// loop, closeNow off it): the client's socket gets the SYN-ACK, at most a
// bare acknowledgement of its request, and the answer ending the
// connection. A FIN of its own would be a fourth segment, and the
// client's acknowledgement of it a fifth. (A connection served through a
// net.Conn whose socket forkd cannot reach, noraw, sends its FIN apart.)
func TestLastResponseCarriesFIN(t *testing.T) {
	inModes(t, func(t *testing.T) {
		if !modeOf(t).noRaw {
			testLastResponseCarriesFIN(t)
		}
	})
}

func testLastResponseCarriesFIN(t *testing.T) {
	closer := HandlerFunc(func(w *ResponseWriter, r *Request) {
		w.Header().Set("Connection", "close")
		hello.Serve(w, r)
	})
	for _, tc := range []struct {
		name, req string
		h         Handler
	}{
		{"the client closes", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", hello},
		{"HTTP/1.0", "GET / HTTP/1.0\r\n\r\n", hello},
		{"the server closes (linger)", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", closer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := startServer(t, loopHandler{h: tc.h}, nil)
			for range 10 {
				c := dial(t, addr)
				io.WriteString(c, tc.req)
				b, err := io.ReadAll(c) // to the FIN
				if err != nil || !bytes.HasPrefix(b, []byte("HTTP/1.1 200 ")) || !bytes.HasSuffix(b, []byte("Hello, World!")) {
					t.Fatalf("answer %q, %v", b, err)
				}
				rc, err := c.(*net.TCPConn).SyscallConn()
				if err != nil {
					t.Fatal(err)
				}
				var info *unix.TCPInfo
				rc.Control(func(fd uintptr) { info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
				if err != nil {
					t.Fatal(err)
				}
				if info.Segs_in > 3 {
					t.Fatalf("the client's socket got %d segments, want 3 at most (the answer and the FIN in one)", info.Segs_in)
				}
				c.Close()
			}
		})
	}
}

// lineWaiter is a log output that reports when a line containing want has
// been written.
type lineWaiter struct {
	mu   sync.Mutex
	want string
	seen chan struct{}
	buf  strings.Builder
}

func (lw *lineWaiter) Write(p []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	lw.buf.Write(p)
	if strings.Contains(lw.buf.String(), lw.want) {
		select {
		case <-lw.seen:
		default:
			close(lw.seen)
		}
	}
	return len(p), nil
}

// A LoopSafe handler that blocks without WillBlock holds up its loop; the
// watchdog says so in the log.
func TestLoopStallWarning(t *testing.T) { inModes(t, testLoopStallWarning) }

func testLoopStallWarning(t *testing.T) {
	if modeOf(t).noRaw || modeOf(t).loop == loopMove {
		t.Skip("no event loops, or handlers leave them first, in this pass")
	}
	lw := &lineWaiter{want: "event loop stalled", seen: make(chan struct{})}
	release := make(chan struct{})
	h := Nonblocking(HandlerFunc(func(w *ResponseWriter, r *Request) {
		<-release // wrong on a loop: it should call w.WillBlock first
		w.WriteString("late")
	}))
	_, addr := startServer(t, h, func(s *Server) {
		s.Logger = hclog.New(&hclog.LoggerOptions{Output: lw, Level: hclog.Warn})
	})
	c := dial(t, addr)
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	select {
	case <-lw.seen:
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("no stall warning within 10 s")
	}
	close(release)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != "late" {
		t.Fatalf("%q", b)
	}
}

// A connection lingering after an error response is closed once the linger
// time is up, even if the client never closes its side.
func TestLoopLingerEnds(t *testing.T) { inModes(t, testLoopLingerEnds) }

func testLoopLingerEnds(t *testing.T) {
	released := make(chan struct{}, 1)
	s, addr := startServer(t, loopHandler{h: hello}, func(s *Server) {
		s.released = func() {
			select {
			case released <- struct{}{}:
			default:
			}
		}
	})
	c := dial(t, addr)
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\n\r\n") // no Host: 400, then close
	out, err := io.ReadAll(c)                   // the server half-closes at once
	if err != nil || !strings.HasPrefix(string(out), "HTTP/1.1 400 ") {
		t.Fatalf("%q %v", out, err)
	}
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("the lingering connection is still open after 5 s")
	}
	if n := s.Stats().OpenConns; n != 0 {
		t.Fatalf("%d connections open", n)
	}
}

// TestLoopAcceptorsTakeTurns serves one listening socket from several
// Servers, as the worker processes share one, and connects clients one
// after another: each connection must wake one loop (EPOLLEXCLUSIVE), not
// all of them, and the servers must take connections in turn.
func TestLoopAcceptorsTakeTurns(t *testing.T) {
	const servers, conns = 4, 200
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var srvs []*Server
	for range servers {
		dl, err := net.FileListener(f) // a descriptor of its own, one socket
		if err != nil {
			t.Fatal(err)
		}
		s := &Server{Handler: Nonblocking(hello)} // GOMAXPROCS-1 loops, or one
		srvs = append(srvs, s)
		errc := make(chan error, 1)
		go func() { errc <- s.Serve(dl) }()
		t.Cleanup(func() {
			s.Close()
			if err := <-errc; err != ErrServerClosed {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	// The servers stand for processes, which each have Ps of their own:
	// here, a loop woken for a connection must not wait for a P while
	// another loop, which has one, takes the connection.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2 * servers))
	addr := ln.Addr().String()
	for i := range conns {
		if st, body := get(t, addr, "/"); st != 200 || body != "Hello, World!" {
			t.Fatalf("request %d: %d %q", i, st, body)
		}
	}
	var misses uint64
	shares := make([]uint64, servers)
	for i, s := range srvs {
		misses += s.acceptMisses.Load()
		shares[i] = s.Stats().Requests
	}
	t.Logf("shares %v, wake-ups without a connection %d", shares, misses)
	// One at a time, a connection wakes exactly one loop. A loop that is
	// busy (this client's last connection: it answers, closes and only
	// then waits again) when the next connection arrives has the listener
	// queued as ready as well, and may race the woken one for it: that
	// costs a few wake-ups for nothing. A herd would cost servers-1 per
	// connection.
	if misses > conns/5 {
		t.Errorf("%d wake-ups without a connection for %d connections: the loops are woken as a herd", misses, conns)
	}
	// Turns of rotateEvery connections; the kernel passes over a loop that
	// is busy when a connection arrives, so turns are not exact, but
	// without them the first loop registered would take nearly all.
	for i, n := range shares {
		if n < rotateEvery {
			t.Errorf("server %d served %d of %d connections (shares %v): the loops do not take turns", i, n, conns, shares)
		}
	}
}

// A worker that shuts down while it sleeps in its acceptor may be the one
// the kernel wakes (EPOLLEXCLUSIVE wakes one waiter per connection): it
// must take that connection, or nobody else is woken for it and the client
// waits for the next connection to arrive. Rounds of a client making
// requests one after another while one of two servers shuts down: every
// request is answered.
func TestShutdownStrandsNoConnection(t *testing.T) {
	for round := range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		var srvs [2]*Server
		errcs := [2]chan error{make(chan error, 1), make(chan error, 1)}
		for i := range srvs {
			dl, err := net.FileListener(f)
			if err != nil {
				t.Fatal(err)
			}
			srvs[i] = &Server{Handler: Nonblocking(hello)}
			go func() { errcs[i] <- srvs[i].Serve(dl) }()
		}
		f.Close()
		addr := ln.Addr().String()
		stop := make(chan struct{})
		failed := make(chan error, 1)
		served := make(chan struct{}, 1000)
		go func() {
			for {
				select {
				case <-stop:
					failed <- nil
					return
				default:
				}
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err == nil {
					c.SetDeadline(time.Now().Add(5 * time.Second))
					io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
					var resp *http.Response
					if resp, err = http.ReadResponse(bufio.NewReader(c), nil); err == nil {
						resp.Body.Close()
					}
					c.Close()
				}
				if err != nil {
					failed <- err
					return
				}
				served <- struct{}{}
			}
		}()
		for range 20 {
			<-served
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := srvs[0].Shutdown(ctx); err != nil {
			t.Fatalf("round %d: Shutdown: %v", round, err)
		}
		cancel()
		for range 20 {
			select {
			case <-served:
			case err := <-failed:
				t.Fatalf("round %d: a request after one server shut down: %v", round, err)
			}
		}
		close(stop)
		if err := <-failed; err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		srvs[1].Close()
		<-errcs[0]
		<-errcs[1]
		ln.Close()
	}
}

// TestIdleLoopConnectionsHoldNoBuffers holds many keep-alive connections
// that have been answered once and now wait on the event loops: each must
// cost the server only its fixed state, not its read and write buffers
// (8 KiB). The clients are raw sockets, so that the heap is the server's.
func TestIdleLoopConnectionsHoldNoBuffers(t *testing.T) {
	idleCost(t, Nonblocking(hello), 4<<10)
}

// TestIdleBlockingConnectionsGoBackToLoops is TestIdleLoopConnectionsHoldNoBuffers
// for a handler that is not LoopSafe (an embedded net/http app): its
// connections leave the loop to be served, and go back to waiting on one,
// without a goroutine or buffers, once idle for parkDelay.
func TestIdleBlockingConnectionsGoBackToLoops(t *testing.T) {
	idleCost(t, FromHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "Hello, World!")
	})), 4<<10)
}

// idleCost holds 1000 keep-alive connections to h, each answered once,
// and fails if each costs the server more than bound bytes of heap and
// goroutine stacks once they are all idle.
func idleCost(t *testing.T, h Handler, bound int64) {
	const conns = 1000
	_, addr := startServer(t, h, nil)
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	sa := &unix.SockaddrInet4{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To4())
	req := []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	buf := make([]byte, 4<<10)
	// wait waits until fd is ready for ev, with a deadline.
	wait := func(fd int, ev int16) {
		for {
			p := []unix.PollFd{{Fd: int32(fd), Events: ev}}
			n, err := unix.Poll(p, 30000)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n == 0 {
				t.Fatalf("poll: %v (no event for 30 s: %v)", err, n == 0)
			}
			return
		}
	}
	// ask opens a raw client socket (nonblocking, so that the runtime's
	// signals cannot cut a blocking call short), makes one request and
	// reads the whole response.
	ask := func() int {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS && err != unix.EINTR {
			t.Fatal(err)
		}
		wait(fd, unix.POLLOUT)
		if e, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || e != 0 {
			t.Fatalf("connect: %v %v", err, unix.Errno(e))
		}
		for {
			_, err := unix.Write(fd, req) // a new socket takes it whole
			if err == nil {
				break
			}
			if err != unix.EINTR {
				t.Fatal(err)
			}
		}
		for got := 0; !bytes.HasSuffix(buf[:got], []byte("Hello, World!")); {
			wait(fd, unix.POLLIN)
			n, err := unix.Read(fd, buf[got:])
			switch {
			case n > 0:
				got += n
			case err != unix.EINTR && err != unix.EAGAIN:
				t.Fatalf("read: %d %v", n, err)
			}
		}
		return fd
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC() // and what sync.Pools dropped in the first
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc + ms.StackInuse
	}
	for range 10 {
		unix.Close(ask()) // warm up: pooled conns, loops' tables
	}
	// Goroutines serving connections end once they are idle (a blocking
	// handler's go back to a loop after parkDelay): wait for that.
	settle := func(n int) {
		deadline := time.Now().Add(30 * time.Second)
		for runtime.NumGoroutine() > n {
			if time.Now().After(deadline) {
				t.Fatalf("%d goroutines, want at most %d: idle connections keep theirs", runtime.NumGoroutine(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	base := runtime.NumGoroutine()
	before := heap()
	fds := make([]int, 0, conns)
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for range conns {
		fds = append(fds, ask())
	}
	settle(base + 10)
	after := heap()
	per := (int64(after) - int64(before)) / conns
	t.Logf("%d bytes of heap and stacks per idle connection", per)
	// The fixed state is about 1.5 KiB; the buffers alone would be 8, a
	// goroutine's stack 8 more.
	if per > bound {
		t.Errorf("%d bytes of heap per idle connection: idle connections hold their buffers", per)
	}
}

// TestEndedLoopWakesNoClient: while a loop ends (Shutdown), a Close or a
// freed connection slot may still wake it (wakeLoops, under s.mu). The
// eventfd written to must still be the loop's then: had the loop closed
// it, its number could already belong to another client's socket, which
// would receive the wake-up's eight bytes.
func TestEndedLoopWakesNoClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Handler: Nonblocking(hello)}
	leaked := make(chan string, 1)
	var once sync.Once
	hook := func(hs *Server) {
		if hs != s {
			return
		}
		once.Do(func() {
			leaked <- socketsAfter(func() {
				s.mu.Lock()
				s.wakeLoops() // what a Close or a freed slot does now
				s.mu.Unlock()
			})
		})
	}
	testHookLoopEnding.Store(&hook)
	t.Cleanup(func() { testHookLoopEnding.Store(nil) })
	serveAndShutdown(t, s, ln, leaked, "the ended loop's wake-up")
}

// A request refused at its head (413) while its client, which asked to
// close, is still sending the body gets its answer: the server lingers,
// reading what the client still sends, rather than resetting the
// connection before the client has read the answer (closesQuietly is only
// for a request read whole and answered without an error).
func TestRefusedUploadGetsItsAnswer(t *testing.T) { inModes(t, testRefusedUploadGetsItsAnswer) }

func testRefusedUploadGetsItsAnswer(t *testing.T) {
	for _, h := range []Handler{hello, loopHandler{h: hello}} {
		_, addr := startServer(t, h, func(s *Server) { s.Limits.BodyBytes = 1024 })
		for range 5 {
			c := dial(t, addr)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			// The head and a first part of the body in one write; the
			// rest arrives while the server answers and closes.
			const size = 48 << 10
			req := "POST / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: " + fmt.Sprint(size) + "\r\n\r\n"
			if _, err := io.WriteString(c, req+strings.Repeat("x", 8<<10)); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				c.Write(bytes.Repeat([]byte("y"), size-8<<10))
			}()
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer to a refused upload: %v", err)
			}
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d, want 413", resp.StatusCode)
			}
			<-done
			c.Close()
		}
	}
}

// TestListenerFailureEndsServe: a listening socket that stops listening
// (shut down by another process sharing it) makes the loops' accept4 fail
// for good: Serve returns the error instead of retrying forever, and the
// server's other listeners and connections go on.
func TestListenerFailureEndsServe(t *testing.T) {
	s, addr := startServer(t, Nonblocking(hello), nil)
	keep := dial(t, addr)
	br := bufio.NewReader(keep)
	ask := func() {
		t.Helper()
		io.WriteString(keep, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		if resp, err := http.ReadResponse(br, nil); err != nil || bodyOf(resp) != "Hello, World!" {
			t.Fatalf("%v %v", resp, err)
		}
	}
	ask()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	if st, _ := get(t, ln.Addr().String(), "/"); st != 200 {
		t.Fatalf("status %d", st)
	}
	if err := unix.Shutdown(int(f.Fd()), unix.SHUT_RDWR); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if err == nil || err == ErrServerClosed {
			t.Fatalf("Serve returned %v", err)
		}
		t.Logf("Serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still runs on a listener that does not listen")
	}
	ask() // the other connection is still served
	if st, _ := get(t, addr, "/"); st != 200 {
		t.Fatalf("status %d on the other listener", st)
	}
}

// TestPolledLoop: with GOMAXPROCS=1 there is no P to spare for a loop
// that sleeps in the kernel, so the one loop waits in the runtime's poller
// instead, and accepts, serves, lets handlers that wait leave and shuts
// down the same way.
func TestPolledLoop(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	s, addr := startServer(t, Nonblocking(HandlerFunc(func(w *ResponseWriter, r *Request) {
		if string(r.Path) == "/wait" {
			w.WillBlock()
			time.Sleep(10 * time.Millisecond)
		}
		w.WriteString("Hello, World!")
	})), nil)
	for i := range 20 {
		if st, body := get(t, addr, "/"); st != 200 || body != "Hello, World!" {
			t.Fatalf("request %d: %d %q", i, st, body)
		}
	}
	s.mu.Lock()
	loops := s.evloops
	s.mu.Unlock()
	if len(loops) != 1 || loops[0].direct {
		t.Fatalf("%d loops, the first direct: want one loop in the poller", len(loops))
	}
	c := dial(t, addr)
	br := bufio.NewReader(c)
	for _, path := range []string{"/wait", "/", "/wait"} {
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n")
		if resp, err := http.ReadResponse(br, nil); err != nil || bodyOf(resp) != "Hello, World!" {
			t.Fatalf("%s: %v %v", path, resp, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("want EOF after Shutdown, got %v", err)
	}
}

// TestStoppedAcceptorWritesToNoClient: with GOMAXPROCS=1, Serve's own
// acceptor waits for the listener (serveAcceptor). While it stops, a Close
// (stop, under s.mu) may still wake it: the eventfd written to must still
// be the acceptor's then, not a number another client's socket reuses.
func TestStoppedAcceptorWritesToNoClient(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Handler: Nonblocking(hello)}
	leaked := make(chan string, 1)
	hook := func(hs *Server) {
		if hs != s {
			return
		}
		leaked <- socketsAfter(func() {
			s.mu.Lock()
			s.stop() // what a Close arriving now does
			s.mu.Unlock()
		})
	}
	testHookAcceptorClosing.Store(&hook)
	t.Cleanup(func() { testHookAcceptorClosing.Store(nil) })
	serveAndShutdown(t, s, ln, leaked, "the stopped acceptor's wake-up")
}

// serveAndShutdown serves ln with s until one request is answered, shuts
// s down, and fails t if what came on leaked (a test hook's socketsAfter,
// sent while s stops) is not "": what names the bytes that leaked.
func serveAndShutdown(t *testing.T, s *Server, ln net.Listener, leaked <-chan string, what string) {
	t.Helper()
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	if st, _ := get(t, ln.Addr().String(), "/"); st != 200 {
		t.Fatalf("status %d", st)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-leaked:
		if got != "" {
			t.Fatalf("%s reached a socket: %s", what, got)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the test hook did not run: Serve or its loops did not stop")
	}
	if err := <-served; err != ErrServerClosed {
		t.Fatalf("Serve: %v", err)
	}
}

// socketsAfter opens sockets, which take the lowest free descriptor
// numbers as a newly accepted client's would, runs f, and reports what
// reached them: "" when nothing did.
func socketsAfter(f func()) string {
	var pairs [][2]int
	for range 8 {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			break
		}
		pairs = append(pairs, fds)
	}
	f()
	got := ""
	buf := make([]byte, 64)
	for _, fds := range pairs {
		for _, fd := range fds {
			if n, _ := unix.Read(fd, buf); n > 0 {
				got += fmt.Sprintf("%q on a socket; ", buf[:n])
			}
			unix.Close(fd)
		}
	}
	return got
}
