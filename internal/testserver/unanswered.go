package testserver

import (
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Held is a loopback listener that does not accept, and whose accept queue
// is full: the kernel drops every SYN sent to it, so a connect to it stays
// under way (SYN_SENT, the SYN sent again after 1 s, 3 s, ...) until the
// connecting side gives up, or until Serve makes room. It is the loopback
// stand-in for an upstream host that does not answer, for connect
// timeouts.
type Held struct {
	Addr   string
	t      testing.TB
	fd     int
	filler net.Conn // the connection that fills the queue
}

// Hold returns a Held listener, closed when t ends.
func Hold(t testing.TB) *Held {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	h := &Held{t: t, fd: fd}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	// Backlog 0: the accept queue holds one connection (Linux queues up
	// to backlog+1), and is full once it does.
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	h.Addr = "127.0.0.1:" + strconv.Itoa(sa.(*unix.SockaddrInet4).Port)
	c, err := net.DialTimeout("tcp", h.Addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	h.filler = c
	t.Cleanup(func() { c.Close() })
	// The listener is readable once that connection is in its accept
	// queue: from then on the queue is full.
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 10_000)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n != 1 {
			t.Fatalf("the filler connection never reached the accept queue: %d, %v", n, err)
		}
		return h
	}
}

// Unanswered is Hold's address, for a listener that stays held.
func Unanswered(t testing.TB) string {
	t.Helper()
	return Hold(t).Addr
}

// Serve starts accepting, as Start's server: the filler connection first,
// which makes room in the queue, then the connects that the kernel lets
// through from then on (one whose SYN was dropped sends it again, a second
// after its first), each served by fn.
func (h *Held) Serve(fn func(c net.Conn)) *Server {
	h.t.Helper()
	d, err := unix.FcntlInt(uintptr(h.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	f := os.NewFile(uintptr(d), "held")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		h.t.Fatal(err)
	}
	h.filler.Close()
	return serve(h.t, ln, fn)
}
