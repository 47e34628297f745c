package upstream

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/forkd/forkd/protocol/internal/epoll"
	"golang.org/x/sys/unix"
)

// testWatcher is a Watcher as an event loop is one (protocol's
// SocketWatcher): an epoll set in which sockets are registered
// edge-triggered, keyed, with one goroutine calling their ready functions.
type testWatcher struct {
	set *epoll.Set
	mu  sync.Mutex
	rs  map[int]func(bool) // by key
	key int
	// watches and unwatches count the calls; openUnwatches those with a
	// descriptor (Tunnel's).
	watches, unwatches, openUnwatches int
	ended                             bool
	done                              chan struct{}
}

func newTestWatcher(t *testing.T) *testWatcher {
	t.Helper()
	s, err := epoll.NewSet("test-watcher")
	if err != nil {
		t.Fatal(err)
	}
	w := &testWatcher{set: s, rs: map[int]func(bool){}, done: make(chan struct{})}
	go w.run()
	t.Cleanup(w.end)
	return w
}

func (w *testWatcher) run() {
	defer close(w.done)
	for {
		evs, err := w.set.Wait()
		if err != nil {
			return
		}
		var fire []func(bool)
		w.mu.Lock()
		for i := range evs {
			if r := w.rs[int(epoll.Token(&evs[i]))]; r != nil {
				fire = append(fire, r)
			}
		}
		w.mu.Unlock()
		for _, r := range fire {
			r(false)
		}
	}
}

func (w *testWatcher) Watch(fd int, ready func(bool)) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended {
		return -1, errors.New("ended")
	}
	w.key++
	if err := w.set.Ctl(unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN|unix.EPOLLOUT|unix.EPOLLRDHUP|unix.EPOLLET, uint64(w.key)); err != nil {
		return -1, err
	}
	w.rs[w.key] = ready
	w.watches++
	return w.key, nil
}

func (w *testWatcher) Unwatch(key, fd int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended || w.rs[key] == nil {
		return
	}
	if fd >= 0 {
		w.set.Ctl(unix.EPOLL_CTL_DEL, fd, 0, 0)
		w.openUnwatches++
	}
	delete(w.rs, key)
	w.unwatches++
}

// end ends the watcher as a loop's end does: every watcher hears gone.
func (w *testWatcher) end() {
	w.mu.Lock()
	if w.ended {
		w.mu.Unlock()
		return
	}
	w.ended = true
	rs := w.rs
	w.rs = nil
	w.mu.Unlock()
	w.set.Close()
	<-w.done
	for _, r := range rs {
		r(true)
	}
}

// settle stops the watcher's goroutine, so that the ready functions it was
// running (a drop of an idle connection the upstream closed, which ends
// that registration) have returned, and reports the registrations left.
// Unwatch still frees registrations; end still ends it.
func (w *testWatcher) settle() (live int) {
	w.set.Close()
	<-w.done
	_, _, live = w.counts()
	return live
}

// counts returns the calls so far and the registrations in force.
func (w *testWatcher) counts() (watches, unwatches, live int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.watches, w.unwatches, len(w.rs)
}

// loopExchange is exchange with w offered as the connection's watcher.
func loopExchange(t *testing.T, p *Pool, w Watcher) (*Conn, string, error) {
	t.Helper()
	c, err := p.Get()
	if err != nil {
		return nil, "", err
	}
	c.SetWatcher(w)
	head := append(c.HeadBuffer(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...)
	if _, err := c.Do(head, nil, nil, 0, false); err != nil {
		c.Close()
		return c, "", err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		c.Close()
		return c, string(b), err
	}
	c.Release()
	return c, string(b), nil
}

// TestLoopWatchCloses is TestIdleWatchCloses for connections an event loop
// watches: an idle one that becomes readable is closed at once, without a
// Get, also when its bytes came before it was put back, and after reuses;
// the socket is registered once for all its reuses, never in the pool's
// own watch, and its registration ends with it.
func TestLoopWatchCloses(t *testing.T) { testWatchCloses(t, true) }

// TestLoopWatchGone: once its loop has ended, an idle connection is
// unwatched, and Get goes back to peeking at it: one with bytes waiting
// is not handed out. A connection put back after the loop ended goes to
// the pool's own watch.
func TestLoopWatchGone(t *testing.T) {
	u := newLateUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	w := newTestWatcher(t)
	p := newPool(u.addr)
	defer p.Close()
	if _, body, err := loopExchange(t, p, w); err != nil || body != "ok" {
		t.Fatalf("%q %v", body, err)
	}
	w.end()
	c := idleConn(t, p)
	p.mu.Lock()
	lw := c.lw
	p.mu.Unlock()
	if lw != nil {
		t.Fatal("still watched by the ended loop")
	}
	u.act <- stray
	<-u.done
	waitReadable(t, c)
	c2, err := p.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if c2.Reused() {
		t.Fatal("Get handed out the readable connection")
	}
	waitEnded(t, u)
}

// TestLoopWatchTunnel: a connection handed over by Tunnel leaves its
// loop's epoll set (Unwatch with its descriptor), so that the tunnel's
// traffic brings the loop no events.
func TestLoopWatchTunnel(t *testing.T) {
	s := newServer(t, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, _, err := readRequest(br); err != nil {
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	w := newTestWatcher(t)
	p := newPool(s.addr)
	defer p.Close()
	if _, body, err := loopExchange(t, p, w); err != nil || body != "ok" {
		t.Fatalf("%q %v", body, err)
	}
	c, err := p.Get()
	if err != nil || !c.Reused() {
		t.Fatalf("Get: %v, reused %v", err, err == nil && c.Reused())
	}
	nc, _, err := c.Tunnel()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	w.mu.Lock()
	open := w.openUnwatches
	w.mu.Unlock()
	if _, _, live := w.counts(); live != 0 || open != 1 {
		t.Fatalf("%d registrations left, %d taken out of the set: want the tunnel's taken out", live, open)
	}
}

// TestLoopWatchConcurrent is TestIdleWatchConcurrent with a loop watching:
// the upstream closes every second connection, so the watcher closes
// connections while exchanges take and put back others (the race
// detector's part); every registration ends with its connection.
func TestLoopWatchConcurrent(t *testing.T) {
	s := closingEverySecond(t)
	w := newTestWatcher(t)
	p := newPool(s.addr)
	exchangeConcurrently(t, p, func() (string, error) {
		_, body, err := loopExchange(t, p, w)
		return body, err
	})
	p.Close()
	// The upstream's FINs are seen by the watcher's goroutine, which may
	// be dropping an idle connection still: wait for it before counting.
	if live := w.settle(); live != 0 {
		t.Errorf("%d registrations left after the pool closed", live)
	}
}

// busyWatcher is a loop too busy to have looked since: it registers
// sockets but never reports their events.
type busyWatcher struct {
	mu  sync.Mutex
	key int
}

func (w *busyWatcher) Watch(fd int, ready func(bool)) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.key++
	return w.key, nil
}

func (w *busyWatcher) Unwatch(key, fd int) {}

// TestLoopWatchBusyLoop: stray bytes that reach an idle connection before
// its loop has looked (a response sent just after the last one, and the
// connection reused at once) are still caught by Get, which does not
// hand the connection out.
func TestLoopWatchBusyLoop(t *testing.T) {
	u := newLateUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	p := newLoggedPool(u.addr, nil)
	defer p.Close()
	c, b, err := loopExchange(t, p, &busyWatcher{})
	if err != nil || b != "ok" {
		t.Fatalf("%q %v", b, err)
	}
	if n := p.Idle(); n != 1 {
		t.Fatalf("%d idle, want 1", n)
	}
	u.act <- stray
	<-u.done
	waitReadable(t, c)
	c2, err := p.Get()
	if err == nil {
		defer c2.Close()
	}
	if c2 == c {
		t.Fatal("Get handed out an idle connection with a stray response waiting")
	}
	if n := p.Idle(); n != 0 {
		t.Errorf("%d idle, want 0", n)
	}
}
