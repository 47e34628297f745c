package upstream

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// testTimeout bounds each wait for an event; it is a deadline against
// hangs, not a timing assertion.
const testTimeout = 10 * time.Second

// What a lateUpstream does after its response, besides writing bytes.
const (
	finClose = "\x00fin" // closes its side: a FIN
	rstClose = "\x00rst" // closes with a reset
)

// lateUpstream answers the first request on each connection with resp,
// then waits for the test to say what to do next (act: bytes to write, or
// finClose or rstClose), does it, says so on done, and reports on ended
// the error of its next read, which the pool's close of the connection
// ends.
type lateUpstream struct {
	addr  string
	act   chan string
	done  chan struct{}
	ended chan error
}

func newLateUpstream(t testing.TB, resp string) *lateUpstream {
	t.Helper()
	u := &lateUpstream{act: make(chan string, 1), done: make(chan struct{}, 4), ended: make(chan error, 4)}
	quit := make(chan struct{})
	u.addr = newServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, _, err := readRequest(br); err != nil {
			return
		}
		io.WriteString(c, resp)
		var act string
		select {
		case act = <-u.act:
		case <-quit:
			return
		}
		switch act {
		case finClose:
			c.(*net.TCPConn).CloseWrite()
		case rstClose:
			c.(*net.TCPConn).SetLinger(0) // the server's close resets
			u.done <- struct{}{}
			return
		default:
			io.WriteString(c, act)
		}
		u.done <- struct{}{}
		_, err := br.ReadByte()
		u.ended <- err
	}).addr
	t.Cleanup(func() { close(quit) }) // before the server waits for its connections
	return u
}

// logSink is an hclog output that hands each line to the test.
type logSink struct{ lines chan string }

func newLogSink() (*logSink, hclog.Logger) {
	s := &logSink{lines: make(chan string, 64)}
	return s, hclog.New(&hclog.LoggerOptions{Output: s, Level: hclog.Debug})
}

func (s *logSink) Write(p []byte) (int, error) {
	select {
	case s.lines <- string(p):
	default:
	}
	return len(p), nil
}

// wait waits for a line that contains want.
func (s *logSink) wait(t *testing.T, want string) string {
	t.Helper()
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	for {
		select {
		case l := <-s.lines:
			if strings.Contains(l, want) {
				return l
			}
		case <-timer.C:
			t.Fatalf("no log line %q", want)
		}
	}
}

func newLoggedPool(addr string, logger hclog.Logger) *Pool {
	return NewPool(Config{Network: "tcp", Address: addr, ConnectTimeout: 5 * time.Second,
		Timeout: 30 * time.Second, Keepalive: 4, IdleTimeout: time.Minute, Logger: logger,
		Detach: true}) // as a pool whose exchanges run on the loops
}

// waitEnded waits for the upstream to see the pool close its connection.
func waitEnded(t *testing.T, u *lateUpstream) {
	t.Helper()
	select {
	case err := <-u.ended:
		if err == nil {
			t.Fatal("the upstream read a byte after its response")
		}
	case <-time.After(testTimeout):
		t.Fatal("the upstream did not see its connection closed")
	}
}

// idleConn returns the pool's one idle connection, which stays in the pool.
func idleConn(t *testing.T, p *Pool) *Conn {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) != 1 {
		t.Fatalf("%d idle connections, want 1", len(p.idle))
	}
	return p.idle[0]
}

// waitReadable waits, with poll(2) rather than a sleep, until c's socket
// has bytes or its end waiting.
func waitReadable(t *testing.T, c *Conn) {
	t.Helper()
	fd := dupSock(t, c)
	defer unix.Close(fd)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
	for {
		n, err := unix.Poll(fds, int(testTimeout/time.Millisecond))
		if err == unix.EINTR {
			continue
		}
		if err != nil || n != 1 {
			t.Fatalf("poll: %d, %v", n, err)
		}
		return
	}
}

// dupSock returns a duplicate of c's socket descriptor, for the test to
// look at while the pool may close c: taken under Pool.mu, which keeps an
// idle connection's descriptor open (a connection in use is the test's).
func dupSock(t *testing.T, c *Conn) int {
	t.Helper()
	c.pool.mu.Lock()
	defer c.pool.mu.Unlock()
	d := -1
	err := c.withFD(func(fd uintptr) { d, _ = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) })
	if err != nil || d < 0 {
		t.Fatalf("duplicating the socket: %v", err)
	}
	return d
}

// A second, complete response, sent late on the same connection.
const stray = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Label: stray\r\n\r\nstray"

// TestIdleWatchCloses: an idle connection that becomes readable (stray
// bytes, the upstream's FIN, a reset) is closed at once and leaves the
// pool, without a Get; so is one whose stray bytes arrived after its
// response was read but before it was released, and one that has been
// taken and put back since it first idled (its registration disarmed and
// armed again rather than made anew).
func TestIdleWatchCloses(t *testing.T) { testWatchCloses(t, false) }

// testWatchCloses runs TestIdleWatchCloses's cases, with the connection
// watched by an event loop when loop is set (TestLoopWatchCloses): then
// its socket must be registered once for all its reuses, never in the
// pool's own watch, and its registration must end with it.
func testWatchCloses(t *testing.T, loop bool) {
	for _, tc := range []struct {
		name, act, log string
		beforePut      bool
		reuse          bool
	}{
		{"bytes", stray, "sent bytes on an idle connection", false, false},
		{"bytes before put", stray, "sent bytes on an idle connection", true, false},
		{"fin", finClose, "closed an idle connection", false, false},
		{"reset", rstClose, "closed an idle connection", false, false},
		{"bytes after reuse", stray, "sent bytes on an idle connection", false, true},
		{"fin after reuse", finClose, "closed an idle connection", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newLateUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			var w *testWatcher
			if loop {
				w = newTestWatcher(t)
			}
			sink, logger := newLogSink()
			p := newLoggedPool(u.addr, logger)
			defer p.Close()
			c, err := p.Get()
			if err != nil {
				t.Fatal(err)
			}
			var ww Watcher // nil: the pool's own watch
			if loop {
				ww = w
			}
			exchangeOn(t, c, ww)
			if tc.beforePut {
				u.act <- tc.act
				<-u.done
				waitReadable(t, c) // the bytes are in the socket
				c.Release()
			} else {
				c.Release()
				if n := p.Idle(); n != 1 {
					t.Fatalf("%d idle, want 1", n)
				}
				for i := 0; tc.reuse && i < 2; i++ {
					c2, err := p.Get()
					if err != nil || c2 != c {
						t.Fatalf("Get: %p (%v), want the idle connection %p", c2, err, c)
					}
					p.put(c2)
				}
				u.act <- tc.act
				<-u.done
			}
			line := sink.wait(t, tc.log)
			if !loop && !strings.Contains(line, "upstream="+u.addr) {
				t.Errorf("log line without the upstream: %q", line)
			}
			if n := p.Idle(); n != 0 {
				t.Fatalf("%d idle connections after the close, want 0", n)
			}
			if tc.act != rstClose {
				waitEnded(t, u)
			}
			if !loop {
				return
			}
			watches, unwatches, live := w.counts()
			if watches != 1 || unwatches != 1 || live != 0 {
				t.Errorf("%d Watch, %d Unwatch, %d left registered: want one registration, ended", watches, unwatches, live)
			}
			p.mu.Lock()
			pw := p.watch
			p.mu.Unlock()
			if pw != nil {
				t.Error("the pool made its own watch for a connection a loop watches")
			}
		})
	}
}

// testGetChecks: Get does not hand out an idle connection that became
// readable by act, however short its idle time, also when nothing else
// (the idle watch) has closed it; it dials instead.
func testGetChecks(t *testing.T, act string) {
	u := newLateUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	p := newPool(u.addr)
	defer p.Close()
	p.mu.Lock()
	p.watchTried = true // no idle watch: Get's own check
	p.mu.Unlock()
	if _, _, err := exchange(t, p); err != nil {
		t.Fatal(err)
	}
	u.act <- act
	<-u.done
	waitReadable(t, idleConn(t, p))
	c, err := p.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Reused() {
		t.Fatal("Get handed out the readable connection")
	}
	if n := p.Idle(); n != 0 {
		t.Fatalf("%d idle connections, want 0", n)
	}
	if act != rstClose {
		waitEnded(t, u)
	}
}

// TestGetSkipsUnread: a connection with bytes waiting is never reused,
// even right after it was put back.
func TestGetSkipsUnread(t *testing.T) {
	t.Run("response", func(t *testing.T) { testGetChecks(t, stray) })
	t.Run("one byte", func(t *testing.T) { testGetChecks(t, "x") })
}

// TestGetSkipsClosed: nor is one that the upstream closed (FIN or reset)
// while it idled.
func TestGetSkipsClosed(t *testing.T) {
	t.Run("fin", func(t *testing.T) { testGetChecks(t, finClose) })
	t.Run("reset", func(t *testing.T) { testGetChecks(t, rstClose) })
}

// TestPutBuffered: a connection whose read buffer holds bytes past the
// response (here they came with it, in one segment) is closed by put, not
// pooled.
func TestPutBuffered(t *testing.T) {
	for _, tc := range []struct {
		name, resp string
		noBody     bool
	}{
		{"after length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + stray, false},
		{"head", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", true},
		{"no content", "HTTP/1.1 204 No Content\r\n\r\n" + stray, false},
		{"not modified", "HTTP/1.1 304 Not Modified\r\n\r\n" + stray, false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n" + stray, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newLateUpstream(t, tc.resp)
			p := newPool(u.addr)
			defer p.Close()
			c, err := p.Get()
			if err != nil {
				t.Fatal(err)
			}
			head := append(c.HeadBuffer(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...)
			if _, err := c.Do(head, nil, nil, 0, tc.noBody); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadAll(c); err != nil {
				t.Fatal(err)
			}
			if !c.Buffered() {
				t.Skip("the extra bytes came in a segment of their own") // TestIdleWatchCloses' case
			}
			p.put(c)
			if n := p.Idle(); n != 0 {
				t.Fatalf("%d idle connections, want 0", n)
			}
			close(u.act)
			waitEnded(t, u)
		})
	}
}

// TestIdleWatchConcurrent: exchanges on many goroutines while the upstream
// closes every second connection after a response, so that the idle watch
// closes connections while Get takes others (the race detector's part);
// every exchange succeeds, sent again on a new connection when a reused
// one turns out closed, as the proxy does.
func TestIdleWatchConcurrent(t *testing.T) {
	s := closingEverySecond(t)
	p := newPool(s.addr)
	defer p.Close()
	exchangeConcurrently(t, p, func() (string, error) {
		_, body, err := exchange(t, p)
		return body, err
	})
	if n := p.Idle(); n > 4 {
		t.Errorf("%d idle connections, over Keepalive's 4", n)
	}
}

// closingEverySecond starts an upstream that answers each request "ok"
// and closes every second connection after its response: a FIN while the
// connection idles, or before the next request.
func closingEverySecond(t *testing.T) *server {
	return newServer(t, func(c net.Conn, br *bufio.Reader) {
		for i := 0; ; i++ {
			if _, _, err := readRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			if i%2 == 1 {
				return
			}
		}
	})
}

// exchangeConcurrently makes 8 goroutines of 50 exchanges each with do, on
// p; an exchange whose reused connection turned out closed (between Get's
// check and the request: ErrNoResponse) is sent again on a new connection,
// as the proxy does. Every exchange must answer "ok".
func exchangeConcurrently(t *testing.T, p *Pool, do func() (string, error)) {
	t.Helper()
	const workers, each = 8, 50
	errs := make(chan error, workers)
	for range workers {
		go func() {
			for range each {
				body, err := do()
				if errors.Is(err, ErrNoResponse) {
					_, body, err = exchangeFresh(p)
				}
				if err != nil || body != "ok" {
					errs <- fmt.Errorf("%q %w", body, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// exchangeFresh is exchange on a new connection.
func exchangeFresh(p *Pool) (*Response, string, error) {
	c, err := p.Dial()
	if err != nil {
		return nil, "", err
	}
	head := append(c.HeadBuffer(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...)
	resp, err := c.Do(head, nil, nil, 0, false)
	if err != nil {
		c.Close()
		return nil, "", err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		c.Close()
		return resp, string(b), err
	}
	c.Release()
	return resp, string(b), nil
}
