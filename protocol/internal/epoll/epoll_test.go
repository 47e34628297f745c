package epoll

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func socketpair(t *testing.T) (a, b int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Close(fds[0])
		unix.Close(fds[1])
	})
	return fds[0], fds[1]
}

// TestPeek: nothing, a byte (which stays to be read), the peer's end.
func TestPeek(t *testing.T) {
	a, b := socketpair(t)
	if got := Peek(a); got != Nothing {
		t.Fatalf("empty: %v, want Nothing", got)
	}
	unix.Write(b, []byte("x"))
	for range 2 {
		if got := Peek(a); got != Data {
			t.Fatalf("a byte: %v, want Data", got)
		}
	}
	var buf [2]byte
	if n, _ := unix.Read(a, buf[:]); n != 1 {
		t.Fatalf("read %d bytes after the peeks, want 1", n)
	}
	unix.Shutdown(b, unix.SHUT_WR)
	if got := Peek(a); got != Gone {
		t.Fatalf("after the peer's end: %v, want Gone", got)
	}
}

// TestSet: an event carries its registration's token; a one-shot
// registration fires once; Close ends a wait, and Ctl fails after it; the
// descriptor is close-on-exec.
func TestSet(t *testing.T) {
	s, err := NewSet("test")
	if err != nil {
		t.Fatal(err)
	}
	if fl, err := unix.FcntlInt(uintptr(s.fd), unix.F_GETFD, 0); err != nil || fl&unix.FD_CLOEXEC == 0 {
		t.Errorf("flags %#x, %v: not close-on-exec", fl, err)
	}
	a, b := socketpair(t)
	const token = 1<<40 | 7
	if err := s.Ctl(unix.EPOLL_CTL_ADD, a, unix.EPOLLIN|unix.EPOLLONESHOT, token); err != nil {
		t.Fatal(err)
	}
	unix.Write(b, []byte("x"))
	type result struct {
		tokens []uint64
		err    error
	}
	waits := make(chan result)
	go func() {
		for {
			evs, err := s.Wait()
			var r result
			for i := range evs {
				r.tokens = append(r.tokens, Token(&evs[i]))
			}
			r.err = err
			waits <- r
			if err != nil {
				return
			}
		}
	}()
	select {
	case r := <-waits:
		if r.err != nil || len(r.tokens) != 1 || r.tokens[0] != token {
			t.Fatalf("wait: %v %v, want token %#x", r.tokens, r.err, uint64(token))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
	// One-shot: the byte still waiting makes no second event; Close ends
	// the wait.
	s.Close()
	select {
	case r := <-waits:
		if !errors.Is(r.err, ErrClosed) || len(r.tokens) != 0 {
			t.Fatalf("after Close: %v %v, want ErrClosed", r.tokens, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the wait")
	}
	if err := s.Ctl(unix.EPOLL_CTL_DEL, a, 0, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ctl after Close: %v, want ErrClosed", err)
	}
}
