package protocol

import (
	"context"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sockEvents is what a SocketWatcher's ready calls report to a test.
type sockEvents chan bool

func (ch sockEvents) ready(gone bool) { ch <- gone }

// next waits for the next ready call and returns its gone.
func (ch sockEvents) next(t *testing.T) bool {
	t.Helper()
	select {
	case gone := <-ch:
		return gone
	case <-time.After(10 * time.Second):
		t.Fatal("no event from the loop")
		return false
	}
}

// none checks that no ready call is waiting, after the loop has served a
// request (so that it has fetched whatever events there were).
func (ch sockEvents) none(t *testing.T, addr string) {
	t.Helper()
	if st, _ := get(t, addr, "/"); st != 200 {
		t.Fatalf("status %d", st)
	}
	select {
	case gone := <-ch:
		t.Fatalf("unexpected event (gone %v)", gone)
	default:
	}
}

// The SocketWatcher a handler gets is its connection's loop, which reports
// a watched socket's readiness edge-triggered (once when it is registered,
// writable, then once per arrival, not again for bytes left unread), forgets it at Unwatch (fd -1 for a closed
// socket: close(2) takes it out of the epoll set), reuses its key, and
// tells every watcher once, with gone, when the loop ends.
func TestSocketWatcher(t *testing.T) { inLoopModes(t, testSocketWatcher) }

// servedLoop starts a server and returns it, its address and the event
// loop that served a request on it (the handler's SocketWatcher).
func servedLoop(t *testing.T) (*Server, string, *eventLoop) {
	t.Helper()
	got := make(chan SocketWatcher, 1)
	s, addr := startServer(t, HandlerFunc(func(w *ResponseWriter, r *Request) {
		if string(r.Path) == "/watcher" {
			got <- w.SocketWatcher()
		}
		w.WriteString("ok")
	}), nil)
	if st, _ := get(t, addr, "/watcher"); st != 200 {
		t.Fatalf("status %d", st)
	}
	sw := <-got
	l, ok := sw.(*eventLoop)
	if !ok || l == nil {
		t.Fatalf("SocketWatcher is %T, want the connection's loop", sw)
	}
	return s, addr, l
}

func testSocketWatcher(t *testing.T) {
	s, addr, l := servedLoop(t)
	var sw SocketWatcher = l
	pair := func() (a, b int) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		return fds[0], fds[1]
	}
	a, b := pair()
	defer unix.Close(b)
	evs := make(sockEvents, 8)
	key, err := sw.Watch(a, evs.ready)
	if err != nil {
		t.Fatal(err)
	}
	// A writable socket brings one event when it is registered
	// (EPOLLOUT): waited for first, so that the events after it are
	// counted alone.
	if evs.next(t) {
		t.Fatal("gone before the loop ended")
	}
	unix.Write(b, []byte("x"))
	if evs.next(t) {
		t.Fatal("gone before the loop ended")
	}
	evs.none(t, addr) // the unread byte brings no second event
	unix.Write(b, []byte("y"))
	if evs.next(t) {
		t.Fatal("gone before the loop ended")
	}
	sw.Unwatch(key, a) // a stays open, out of the epoll set
	unix.Write(b, []byte("z"))
	evs.none(t, addr)
	unix.Close(a)

	// The key is free again; the next socket gets it.
	c, d := pair()
	defer unix.Close(d)
	evs2 := make(sockEvents, 8)
	key2, err := sw.Watch(c, evs2.ready)
	if err != nil {
		t.Fatal(err)
	}
	if key2 != key {
		t.Errorf("key %d after Unwatch of %d, want it reused", key2, key)
	}
	if evs2.next(t) { // the registration's (writable)
		t.Fatal("gone before the loop ended")
	}
	unix.Shutdown(d, unix.SHUT_WR) // the peer's FIN is readiness too
	if evs2.next(t) {
		t.Fatal("gone before the loop ended")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if !evs2.next(t) {
		t.Fatal("the loop ended without saying so")
	}
	if _, err := sw.Watch(c, evs2.ready); err == nil {
		t.Fatal("an ended loop took a socket")
	}
	sw.Unwatch(key2, -1) // after the end: nothing to do, no panic
	unix.Close(c)
	select {
	case gone := <-evs:
		t.Fatalf("the unwatched socket heard from the loop (gone %v)", gone)
	default:
	}
}
