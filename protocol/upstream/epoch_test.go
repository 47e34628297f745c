package upstream

import (
	"io"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// epochWatcher is a Watcher and Looker as an event loop is one, driven by
// the test: turn is one wait (epoll_wait without a timeout) of the size
// asked, numbered before it fetches, whose events' ready calls run on the
// test's goroutine; it completes (Looked) only when it did not fill its
// buffer.
type epochWatcher struct {
	ep     int
	mu     sync.Mutex
	rs     map[int]func(bool) // by key
	key    int
	epoch  atomic.Uint64
	looked atomic.Uint64
}

func newEpochWatcher(t *testing.T) *epochWatcher {
	t.Helper()
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(ep) })
	return &epochWatcher{ep: ep, rs: map[int]func(bool){}}
}

func (w *epochWatcher) Watch(fd int, ready func(bool)) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.key++
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(w.key)}
	if err := unix.EpollCtl(w.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return -1, err
	}
	w.rs[w.key] = ready
	return w.key, nil
}

func (w *epochWatcher) Unwatch(key, fd int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if fd >= 0 {
		unix.EpollCtl(w.ep, unix.EPOLL_CTL_DEL, fd, nil)
	}
	delete(w.rs, key)
}

func (w *epochWatcher) Epoch() uint64  { return w.epoch.Load() }
func (w *epochWatcher) Looked() uint64 { return w.looked.Load() }

// turn is one wait for at most size events; it returns how many came.
func (w *epochWatcher) turn(t *testing.T, size int) int {
	t.Helper()
	e := w.epoch.Add(1)
	evs := make([]unix.EpollEvent, size)
	n, err := unix.EpollWait(w.ep, evs, 0)
	for err == unix.EINTR {
		n, err = unix.EpollWait(w.ep, evs, 0)
	}
	if err != nil {
		t.Fatal(err)
	}
	var fire []func(bool)
	w.mu.Lock()
	for _, ev := range evs[:n] {
		if r := w.rs[int(ev.Fd)]; r != nil {
			fire = append(fire, r)
		}
	}
	w.mu.Unlock()
	for _, r := range fire {
		r(false)
	}
	if n < size {
		w.looked.Store(e)
	}
	return n
}

// end ends the watcher as a loop's end does: every watcher hears gone.
func (w *epochWatcher) end() {
	w.mu.Lock()
	rs := w.rs
	w.rs = map[int]func(bool){}
	w.mu.Unlock()
	for _, r := range rs {
		r(true)
	}
}

// epochPool returns a pool of u, and one connection it has put back,
// watched by w: the first exchange, with turns of w done before its put.
func epochPool(t *testing.T, u *lateUpstream, w *epochWatcher, turns int) (*Pool, *Conn) {
	t.Helper()
	p := newLoggedPool(u.addr, nil)
	t.Cleanup(p.Close)
	c, err := p.Dial()
	if err != nil {
		t.Fatal(err)
	}
	exchangeOn(t, c, w)
	for range turns {
		w.turn(t, 64)
	}
	c.Release()
	if n := p.Idle(); n != 1 {
		t.Fatalf("%d idle, want 1", n)
	}
	return p, c
}

// exchangeOn makes one exchange on c, offering w as its watcher, and
// reads the body; the caller releases c.
func exchangeOn(t *testing.T, c *Conn, w Watcher) {
	t.Helper()
	c.SetWatcher(w)
	head := append(c.HeadBuffer(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...)
	if _, err := c.Do(head, nil, nil, 0, false); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(c); err != nil || string(b) != "ok" {
		t.Fatalf("%q %v", b, err)
	}
}

// strayArrives makes u send a stray response on its connection and waits
// until it is in c's socket.
func strayArrives(t *testing.T, u *lateUpstream, c *Conn) {
	t.Helper()
	u.act <- stray
	<-u.done
	waitReadable(t, c)
}

// notHandedOut checks that GetIdle(w) peeked at c, the pool's one idle
// connection, which has stray bytes waiting: it closed it rather than
// handing it out.
func notHandedOut(t *testing.T, p *Pool, u *lateUpstream, w Watcher) {
	t.Helper()
	if got := p.GetIdle(w); got != nil {
		got.Close()
		t.Fatal("GetIdle handed out a connection with a stray response waiting: it did not peek")
	}
	if n := p.Idle(); n != 0 {
		t.Fatalf("%d idle, want 0", n)
	}
	waitEnded(t, u)
}

const okResp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// TestEpochNotLookedPeeks: a connection put back while its loop has not
// completed a wait since (the most recent wait began before the put:
// Looked == the epoch put noted) is peeked at by GetIdle.
func TestEpochNotLookedPeeks(t *testing.T) {
	for _, turns := range []int{0, 2} {
		u := newLateUpstream(t, okResp)
		w := newEpochWatcher(t)
		p, c := epochPool(t, u, w, turns)
		if w.Looked() != w.Epoch() || w.Epoch() != uint64(turns) {
			t.Fatalf("looked %d, epoch %d", w.Looked(), w.Epoch())
		}
		strayArrives(t, u, c)
		notHandedOut(t, p, u, w)
	}
}

// TestEpochLookedSkipsPeek: once the loop has completed a wait that began
// after the put, with no event for the connection, GetIdle hands it out
// without a peek. The stray bytes sent after that wait began show it:
// a peek would have found them (the residual window, nginx's too).
func TestEpochLookedSkipsPeek(t *testing.T) {
	u := newLateUpstream(t, okResp)
	w := newEpochWatcher(t)
	p, c := epochPool(t, u, w, 1)
	if n := w.turn(t, 64); n != 0 {
		t.Fatalf("%d events, want none", n)
	}
	strayArrives(t, u, c)
	got := p.GetIdle(w)
	if got == nil {
		t.Fatal("GetIdle peeked at a connection its loop had looked at since it went idle")
	}
	defer got.Close()
	if got != c || !got.Reused() {
		t.Fatal("GetIdle did not hand out the idle connection")
	}
}

// TestEpochStrayBeforeWait: stray bytes that arrived before a complete
// wait are reported by it, and the connection is closed then: GetIdle
// has nothing to hand out.
func TestEpochStrayBeforeWait(t *testing.T) {
	u := newLateUpstream(t, okResp)
	w := newEpochWatcher(t)
	p, c := epochPool(t, u, w, 0)
	strayArrives(t, u, c)
	if n := w.turn(t, 64); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
	if n := p.Idle(); n != 0 {
		t.Fatalf("%d idle after the loop's event, want 0", n)
	}
	if got := p.GetIdle(w); got != nil {
		got.Close()
		t.Fatal("GetIdle handed out a connection with a stray response waiting")
	}
	waitEnded(t, u)
}

// TestEpochFullWait: a wait that filled its event buffer may have left
// events in the kernel, and completes nothing: GetIdle still peeks.
func TestEpochFullWait(t *testing.T) {
	u := newLateUpstream(t, okResp)
	w := newEpochWatcher(t)
	p, c := epochPool(t, u, w, 0)
	// Another socket, ready, fills a buffer of one.
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	if _, err := w.Watch(fds[0], func(bool) {}); err != nil {
		t.Fatal(err)
	}
	unix.Write(fds[1], []byte("x"))
	if n := w.turn(t, 1); n != 1 {
		t.Fatalf("%d events, want 1 (a full buffer)", n)
	}
	if w.Looked() != 0 {
		t.Fatalf("a full wait completed epoch %d", w.Looked())
	}
	strayArrives(t, u, c)
	notHandedOut(t, p, u, w)
}

// TestEpochPrefersSafe: GetIdle takes the most recently used connection
// it need not peek at over a more recent one put back since the loop's
// last wait; then that one, peeked at.
func TestEpochPrefersSafe(t *testing.T) {
	u := newLateUpstream(t, okResp)
	w := newEpochWatcher(t)
	p := newLoggedPool(u.addr, nil)
	defer p.Close()
	var cs [2]*Conn
	for i := range cs {
		c, err := p.Dial()
		if err != nil {
			t.Fatal(err)
		}
		exchangeOn(t, c, w)
		cs[i] = c
	}
	cs[0].Release()
	w.turn(t, 64)
	cs[1].Release() // more recent, and the loop has not looked since
	if got := p.GetIdle(w); got != cs[0] {
		t.Fatalf("GetIdle took %p, want the safe one %p (the unsafe one %p)", got, cs[0], cs[1])
	}
	if got := p.GetIdle(w); got != cs[1] {
		t.Fatalf("GetIdle took %p, want %p after a peek", got, cs[1])
	}
	for _, c := range cs {
		c.Close()
	}
}

// TestEpochOtherLoop: an epoch is never compared with another loop's
// count, nor used once the loop has ended: GetIdle peeks at a connection
// that another loop watches, however many waits the one asking has
// completed, and at one whose loop has ended.
func TestEpochOtherLoop(t *testing.T) {
	t.Run("other", func(t *testing.T) {
		u := newLateUpstream(t, okResp)
		w, w2 := newEpochWatcher(t), newEpochWatcher(t)
		p, c := epochPool(t, u, w2, 0)
		for range 3 {
			w.turn(t, 64)
		}
		strayArrives(t, u, c)
		notHandedOut(t, p, u, w)
	})
	t.Run("ended", func(t *testing.T) {
		u := newLateUpstream(t, okResp)
		w := newEpochWatcher(t)
		p, c := epochPool(t, u, w, 0)
		w.turn(t, 64)
		w.end()
		strayArrives(t, u, c)
		notHandedOut(t, p, u, w)
	})
}
