package protocol

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestLoopEpochFullBatch: resolve completes the wait it dispatches (Looked
// becomes its number, Epoch) only when the wait did not fill the event
// buffer, which may have left ready events in the kernel, and did not
// fail.
func TestLoopEpochFullBatch(t *testing.T) {
	l := &eventLoop{}
	l.turns.Store(7)
	l.ready = loopEvents // events of no connection: nothing to find
	l.resolve()
	if got := l.Looked(); got != 0 {
		t.Fatalf("a full batch completed wait %d", got)
	}
	l.ready = 3
	l.resolve()
	if got := l.Looked(); got != 7 {
		t.Fatalf("looked %d after a batch of 3 of wait 7, want 7", got)
	}
	l.turns.Store(8)
	l.ready, l.failed = 0, true
	l.resolve()
	if got := l.Looked(); got != 7 {
		t.Fatalf("a failed wait completed: looked %d, want 7", got)
	}
	l.next, l.ready = 0, 0
}

// TestLoopEpoch: a loop's wait epoch advances with its waits, and a wait
// counts as looked (Looked) only after the ready calls of the sockets it
// reported have returned; a wait that began after a point in time is
// complete once Looked passes the Epoch read then.
func TestLoopEpoch(t *testing.T) { inLoopModes(t, testLoopEpoch) }

func testLoopEpoch(t *testing.T) {
	_, _, l := servedLoop(t)
	e0 := l.Epoch()
	if e0 == 0 || l.Looked() > e0 {
		t.Fatalf("epoch %d, looked %d after a request served", e0, l.Looked())
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	defer unix.Close(fds[0])
	type seen struct{ epoch, looked uint64 }
	at := make(chan seen, 4)
	key, err := l.Watch(fds[0], func(gone bool) {
		if !gone {
			at <- seen{l.Epoch(), l.Looked()}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unwatch(key, fds[0])
	event := func() seen {
		t.Helper()
		select {
		case s := <-at:
			return s
		case <-time.After(10 * time.Second):
			t.Fatal("no event from the loop")
		}
		return seen{}
	}
	event() // the registration's: the socket is writable (EPOLLOUT)
	next := func(b string) seen {
		t.Helper()
		unix.Write(fds[1], []byte(b))
		return event()
	}
	x := next("x")
	if x.epoch < e0 || x.looked >= x.epoch {
		t.Fatalf("ready call in wait %d with looked %d (epoch before: %d): the wait reporting it is not complete yet", x.epoch, x.looked, e0)
	}
	// The next byte, written after that ready call, is fetched by a
	// later wait, which began after the one before completed.
	y := next("y")
	if y.epoch <= x.epoch || y.looked < x.epoch || y.looked >= y.epoch {
		t.Fatalf("ready calls in waits %d (looked %d) then %d (looked %d): want the first complete by the second", x.epoch, x.looked, y.epoch, y.looked)
	}
}
