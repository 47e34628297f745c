package upstream

import (
	"bufio"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/forkd/forkd/internal/testserver"
	"golang.org/x/sys/unix"
)

// nowExchange is loopNow for a connection whose events the watcher sends
// (OnReady): it sends the request as the loop does, waiting for the
// watcher's events while it is Pending (DialNow's connect under way), then
// reads the response without waiting, and returns its body; the caller
// releases c. The error is SendNow's or SendMore's.
func nowExchange(t *testing.T, c *Conn) (string, error) {
	t.Helper()
	next := onEvents(t, c)
	head := append(c.HeadBuffer(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...)
	return nowFinish(t, c, next, c.SendNow(head, false))
}

// onEvents routes the watcher's events for c to the function it returns,
// which waits for the next one, until the test ends.
func onEvents(t *testing.T, c *Conn) (next func()) {
	events := make(chan bool, 64)
	c.OnReady(func(gone bool) { events <- gone })
	t.Cleanup(func() { c.OnReady(nil) })
	return func() {
		t.Helper()
		select {
		case gone := <-events:
			if gone {
				t.Fatal("the watcher ended")
			}
		case <-time.After(testTimeout):
			t.Fatal("no event from the watcher")
		}
	}
}

// nowFinish is nowExchange after SendNow (sent: its result), with next
// from onEvents.
func nowFinish(t *testing.T, c *Conn, next func(), sent bool) (string, error) {
	t.Helper()
	defer c.OnReady(nil)
	for !sent {
		if !c.Pending() {
			_, err := c.SendMore()
			return "", err
		}
		next()
		var err error
		if sent, err = c.SendMore(); err != nil {
			return "", err
		}
	}
	if c.Dialing() {
		t.Fatal("the whole request went out, and the connection is still Dialing")
	}
	return readNow(t, c, next), nil
}

// dialNow is p.DialNow(w), which must succeed.
func dialNow(t *testing.T, p *Pool, w Watcher) *Conn {
	t.Helper()
	c, err := p.DialNow(w)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// gone fails the test if the socket ino has a descriptor or an epoll
// registration left, or w a registration.
func gone(t *testing.T, ino uint64, w *testWatcher) {
	t.Helper()
	if fds, sets := sockUse(t, ino); fds != 0 || sets != 0 {
		t.Fatalf("closed: %d descriptors, %d epoll sets left", fds, sets)
	}
	if _, _, live := w.counts(); live != 0 {
		t.Fatalf("%d loop registrations left", live)
	}
}

// TestDialNow: a connection that DialNow makes never joins the runtime's
// poller: from the connect on it has one descriptor, in the loop's epoll
// set only; its request goes at the loop's event once it is connected, and
// its response is read without waiting; put keeps it registered where it
// is (one Watch in its life), and the loop's next exchange reuses it.
func TestDialNow(t *testing.T) {
	s := echoCount(t)
	w := newTestWatcher(t)
	p := newPool(s.addr)
	defer p.Close()
	c := dialNow(t, p, w)
	ino := sockIno(t, c)
	if fds, sets := sockUse(t, ino); fds != 1 || sets != 1 || c.nc != nil || c.Watcher() != w {
		t.Fatalf("dialled: %d descriptors, %d epoll sets, nc %v, watcher %v; want 1, 1 (the loop's), none, the loop",
			fds, sets, c.nc, c.Watcher())
	}
	if body, err := nowExchange(t, c); err != nil || body != "1" {
		t.Fatalf("first exchange: %q, %v", body, err)
	}
	c.Release()
	if p.Idle() != 1 {
		t.Fatalf("%d idle after the first exchange, want 1", p.Idle())
	}
	for want := "2"; want <= "3"; want = string(want[0] + 1) {
		got := p.GetIdle(w)
		if got != c {
			t.Fatalf("GetIdle: %p, want %p", got, c)
		}
		if body, err := nowExchange(t, c); err != nil || body != want {
			t.Fatalf("reuse: %q, %v; want %q", body, err, want)
		}
		c.Release()
		if fds, sets := sockUse(t, ino); fds != 1 || sets != 1 || c.nc != nil {
			t.Fatalf("after a reuse: %d descriptors, %d epoll sets, nc %v; want 1, 1, none", fds, sets, c.nc)
		}
	}
	if watches, _, _ := w.counts(); watches != 1 {
		t.Fatalf("%d Watch calls, want 1", watches)
	}
	p.Close()
	gone(t, ino, w)
}

// TestDialNowLater: a connect that takes its time (the upstream's accept
// queue is full, and the SYN is sent again a second later) holds the
// request (Pending, Dialing) until the loop's event for its end, when
// SendMore sends it.
func TestDialNowLater(t *testing.T) {
	h := testserver.Hold(t)
	w := newTestWatcher(t)
	p := newPool(h.Addr)
	defer p.Close()
	c := dialNow(t, p, w)
	next := onEvents(t, c)
	head := append(c.HeadBuffer(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...)
	if c.SendNow(head, false) || !c.Pending() || !c.Dialing() {
		t.Fatal("the request went out before the upstream took the connection")
	}
	h.Serve(func(c net.Conn) {
		c.SetDeadline(time.Now().Add(testTimeout))
		br := bufio.NewReader(c)
		if _, _, err := readRequest(br); err == nil {
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nlater"))
		}
		readRequest(br) // until the pool closes it
	})
	if body, err := nowFinish(t, c, next, false); err != nil || body != "later" {
		t.Fatalf("%q, %v", body, err)
	}
	c.Release()
	if p.Idle() != 1 {
		t.Fatalf("%d idle, want 1", p.Idle())
	}
}

// TestDialNowUnix: DialNow connects to a unix socket upstream too (at once:
// unix sockets have no handshake).
func TestDialNowUnix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "up.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(testTimeout))
		br := bufio.NewReader(c)
		if _, _, err := readRequest(br); err == nil {
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nunix"))
		}
		readRequest(br) // until the pool closes it
	}()
	w := newTestWatcher(t)
	p := NewPool(Config{Network: "unix", Address: path, ConnectTimeout: testTimeout, Timeout: testTimeout,
		Keepalive: 4, Detach: true})
	defer p.Close()
	c := dialNow(t, p, w)
	if body, err := nowExchange(t, c); err != nil || body != "unix" {
		t.Fatalf("%q, %v", body, err)
	}
	c.Release()
}

// TestDialNowFails: a connect refused (nothing listens on the port) is the
// error of the send, wrapping ErrDial, with nothing sent, at once or at
// the loop's event; a unix socket that does not exist fails DialNow
// itself. Neither leaves a descriptor or a registration.
func TestDialNowFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close() // nothing listens there now
	w := newTestWatcher(t)
	p := newPool(refused)
	defer p.Close()
	// The refusal comes back while connect(2) runs, but is seen after it
	// returned EINPROGRESS; a connect that saw it would fail DialNow.
	c, err := p.DialNow(w)
	if err == nil {
		ino := sockIno(t, c)
		_, err = nowExchange(t, c)
		c.Close()
		gone(t, ino, w)
	}
	if !errors.Is(err, ErrDial) || !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatalf("refused: %v, want ErrDial's ECONNREFUSED", err)
	}

	up := NewPool(Config{Network: "unix", Address: filepath.Join(t.TempDir(), "none.sock"), Keepalive: 4, Detach: true})
	defer up.Close()
	if c, err := up.DialNow(w); !errors.Is(err, ErrDial) || !errors.Is(err, os.ErrNotExist) || c != nil {
		t.Fatalf("no such socket: %v, %v; want ErrDial's ENOENT", c, err)
	}
	if _, _, live := w.counts(); live != 0 {
		t.Fatalf("%d loop registrations left", live)
	}
}

// TestDialNowNotNow: DialNow leaves to Dial what it cannot do without
// waiting: a host name to resolve, a pool that keeps its connections in
// the runtime's poller, no watcher, a loop that has ended.
func TestDialNowNotNow(t *testing.T) {
	s := echoCount(t)
	_, port, _ := net.SplitHostPort(s.addr)
	w := newTestWatcher(t)
	for _, tc := range []struct {
		name string
		cfg  Config
		w    Watcher
	}{
		{"host name", Config{Network: "tcp", Address: "localhost:" + port, Detach: true}, w},
		{"not detached", Config{Network: "tcp", Address: s.addr}, w},
		{"no watcher", Config{Network: "tcp", Address: s.addr, Detach: true}, nil},
	} {
		p := NewPool(tc.cfg)
		if c, err := p.DialNow(tc.w); !errors.Is(err, ErrNotNow) || c != nil {
			t.Errorf("%s: %v, %v; want ErrNotNow", tc.name, c, err)
		}
		p.Close()
	}
	ended := newTestWatcher(t)
	ended.end()
	p := newPool(s.addr)
	defer p.Close()
	if c, err := p.DialNow(ended); !errors.Is(err, ErrNotNow) || c != nil {
		t.Errorf("ended loop: %v, %v; want ErrNotNow", c, err)
	}
}

// TestDialNowFinish: a goroutine that takes over while DialNow's connect is
// under way (the loop ended) waits for it in the runtime's poller: Finish
// sends the request once connected; one that never connects fails with
// ErrDial, nothing sent, at connect_timeout counted from DialNow.
func TestDialNowFinish(t *testing.T) {
	s := echoCount(t)
	w := newTestWatcher(t)
	p := newPool(s.addr)
	defer p.Close()
	c := dialNow(t, p, w)
	head := append(c.HeadBuffer(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...)
	c.SendNow(head, false) // sent, or pending: Finish goes on either way
	if _, err := c.Finish(false); err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, c); body != "1" {
		t.Fatalf("response %q", body)
	}
	c.Release()

	const connectTimeout = 200 * time.Millisecond
	hang := NewPool(Config{Network: "tcp", Address: testserver.Unanswered(t), ConnectTimeout: connectTimeout,
		Timeout: testTimeout, Keepalive: 4, Detach: true})
	defer hang.Close()
	c = dialNow(t, hang, w)
	start := time.Now()
	head = append(c.HeadBuffer(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...)
	if c.SendNow(head, false) || !c.Pending() || !c.Dialing() {
		t.Fatal("a connect to a listener that drops SYNs is not under way")
	}
	if _, err := c.Finish(false); !errors.Is(err, ErrDial) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Finish: %v, want ErrDial's timeout", err)
	}
	if d := time.Since(start); d < connectTimeout/2 || d > testTimeout {
		t.Fatalf("Finish gave up after %v, with connect_timeout %v", d, connectTimeout)
	}
	c.Close()
}
