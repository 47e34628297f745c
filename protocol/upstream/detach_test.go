package upstream

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sockIno returns the inode of c's socket, which names it in /proc
// whichever descriptors refer to it.
func sockIno(t *testing.T, c *Conn) uint64 {
	t.Helper()
	fd := dupSock(t, c)
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// sockUse counts, in this process, the descriptors that refer to the
// socket ino and the epoll sets it is registered in (the runtime's
// poller's among them): /proc/self/fd and each epoll set's fdinfo.
func sockUse(t *testing.T, ino uint64) (fds, sets int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	hex := "ino:" + strconv.FormatUint(ino, 16)
	for _, e := range ents {
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the directory's own descriptor, or one closed meanwhile
		}
		switch link {
		case fmt.Sprintf("socket:[%d]", ino):
			fds++
		case "anon_inode:[eventpoll]":
			info, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(info), "\n") {
				if strings.HasPrefix(line, "tfd:") && strings.Contains(line+" ", " "+hex+" ") {
					sets++
				}
			}
		}
	}
	return fds, sets
}

// echoCount answers every request with its number on the connection.
func echoCount(t *testing.T) *server {
	return newServer(t, func(c net.Conn, br *bufio.Reader) {
		for n := 1; ; n++ {
			if _, _, err := readRequest(br); err != nil {
				return
			}
			b := strconv.Itoa(n)
			if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b), b); err != nil {
				return
			}
		}
	})
}

// loopNow makes an exchange as the event loop makes it (SendNow,
// ReadHeadNow, BodyNow), waiting for the socket with poll rather than the
// loop's events, and returns the body; the caller releases c.
func loopNow(t *testing.T, c *Conn) string {
	t.Helper()
	head := append(c.HeadBuffer(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...)
	if !c.SendNow(head, false) {
		t.Fatal("SendNow did not send the whole request")
	}
	return readNow(t, c, func() { waitReadable(t, c) })
}

// readNow reads the response of the request c sent as the loop reads it
// (ReadHeadNow, BodyNow), calling wait whenever the socket has nothing
// more yet, and returns its body.
func readNow(t *testing.T, c *Conn, wait func()) string {
	t.Helper()
	for {
		_, err := c.ReadHeadNow()
		if err == nil {
			break
		}
		if err != ErrWouldBlock {
			t.Fatal(err)
		}
		wait()
	}
	for {
		complete, err := c.BodyNow()
		if complete {
			break
		}
		if err != ErrWouldBlock {
			t.Fatal(err)
		}
		wait()
	}
	return readBody(t, c) // all in the buffer: the proxy reads it so on the loop
}

// TestDetached: a connection an event loop watches leaves the runtime's
// poller at its first put (one descriptor, one epoll set: the loop's),
// serves the loop's exchanges so, takes a net.Conn again for a goroutine
// that must wait on it (two descriptors, the runtime's set too), keeps it
// for the exchanges after, and closes both descriptors at its end.
func TestDetached(t *testing.T) {
	s := echoCount(t)
	w := newTestWatcher(t)
	p := newPool(s.addr)
	defer p.Close()
	c, err := p.Dial()
	if err != nil {
		t.Fatal(err)
	}
	ino := sockIno(t, c)
	if fds, sets := sockUse(t, ino); fds != 1 || sets != 1 {
		t.Fatalf("dialled: %d descriptors, %d epoll sets; want 1, 1 (the runtime's)", fds, sets)
	}
	firstOn(t, c, w)
	c.Release()
	if fds, sets := sockUse(t, ino); fds != 1 || sets != 1 || c.nc != nil || c.fd < 0 {
		t.Fatalf("put: %d descriptors, %d epoll sets, nc %v, fd %d; want detached: 1, 1 (the loop's)", fds, sets, c.nc, c.fd)
	}
	next := 2
	want := func(body string) {
		t.Helper()
		if body != strconv.Itoa(next) {
			t.Fatalf("response %q, want %d", body, next)
		}
		next++
	}
	for range 3 { // the loop's exchanges leave it detached
		got := p.GetIdle(w)
		if got != c {
			t.Fatalf("GetIdle: %p, want %p", got, c)
		}
		want(loopNow(t, c))
		c.Release()
		if fds, sets := sockUse(t, ino); fds != 1 || sets != 1 || c.nc != nil {
			t.Fatalf("after a loop exchange: %d descriptors, %d epoll sets, nc %v; want 1, 1, none", fds, sets, c.nc)
		}
	}
	for range 2 { // a goroutine's exchange attaches it, once
		_, body, err := loopExchange(t, p, w)
		if err != nil {
			t.Fatal(err)
		}
		want(body)
		if fds, sets := sockUse(t, ino); fds != 2 || sets != 2 || p.Idle() != 1 {
			t.Fatalf("after a goroutine's exchange: %d descriptors, %d epoll sets, %d idle; want 2, 2, 1", fds, sets, p.Idle())
		}
	}
	if got := p.GetIdle(w); got != c {
		t.Fatalf("GetIdle: %p, want %p", got, c)
	}
	want(loopNow(t, c)) // the loop's exchange works on an attached one too
	c.Close()
	gone(t, ino, w)
}

// TestNotDetached: a pool without Detach leaves the connections a loop
// watches in the runtime's poller: one descriptor, two epoll sets.
func TestNotDetached(t *testing.T) {
	s := echoCount(t)
	w := newTestWatcher(t)
	p := NewPool(Config{Network: "tcp", Address: s.addr, ConnectTimeout: 5 * time.Second,
		Timeout: 30 * time.Second, Keepalive: 4})
	defer p.Close()
	c := dialOn(t, p, w)
	c.Release()
	ino := sockIno(t, c)
	if fds, sets := sockUse(t, ino); fds != 1 || sets != 2 || c.nc == nil || c.fd >= 0 {
		t.Fatalf("%d descriptors, %d epoll sets, nc %v, fd %d; want 1, 2 (the runtime's, the loop's), not detached",
			fds, sets, c.nc, c.fd)
	}
}

// TestDetachedTimeout: a detached connection that takes a net.Conn again
// gives it the read timeout, though the timeout's deadline, set on the
// net.Conn it had before, seemed fresh enough to leave alone.
func TestDetachedTimeout(t *testing.T) {
	n := 0
	s := newServer(t, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, _, err := readRequest(br); err != nil {
				return
			}
			if n++; n == 1 {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			} // then no answer
		}
	})
	w := newTestWatcher(t)
	p := NewPool(Config{Network: "tcp", Address: s.addr, ConnectTimeout: 5 * time.Second,
		Timeout: time.Second, Keepalive: 4, Detach: true})
	defer p.Close()
	c, err := p.Dial()
	if err != nil {
		t.Fatal(err)
	}
	exchangeOn(t, c, w) // its read deadline is a second away
	c.Release()
	if c.nc != nil {
		t.Fatal("not detached")
	}
	if got := p.GetIdle(w); got != c {
		t.Fatalf("GetIdle: %p, want %p", got, c)
	}
	done := make(chan error, 1)
	go func() {
		head := append(c.HeadBuffer(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...)
		_, err := c.Do(head, nil, nil, 0, false)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("Do: %v, want ErrTimeout", err)
		}
	case <-time.After(testTimeout):
		c.Close()
		t.Fatal("Do did not time out")
	}
	c.Close()
}

// TestAttachFails: when a detached connection cannot take a net.Conn again
// (no descriptor left), the exchange fails as an exchange whose request
// went out (Finish: ErrTruncated, not to be sent again) or not (Do:
// ErrNoResponse, as a pooled connection found closed), Tunnel reports it,
// and the socket is closed, leaving no descriptor.
func TestAttachFails(t *testing.T) {
	emfile := os.NewSyscallError("fcntl", unix.EMFILE)
	orig := fileConn
	fileConn = func(int) (net.Conn, error) { return nil, emfile }
	defer func() { fileConn = orig }()
	for _, tc := range []struct {
		name string
		use  func(c *Conn) error
		want error
	}{
		{"Do", func(c *Conn) error {
			_, err := c.Do(append(c.HeadBuffer(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...), nil, nil, 0, false)
			c.Close()
			return err
		}, ErrNoResponse},
		{"Finish", func(c *Conn) error {
			c.SendNow(append(c.HeadBuffer(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...), false)
			_, err := c.Finish(false)
			c.Close()
			return err
		}, ErrTruncated},
		{"Tunnel", func(c *Conn) error {
			_, _, err := c.Tunnel()
			return err
		}, unix.EMFILE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := echoCount(t)
			w := newTestWatcher(t)
			p := newPool(s.addr)
			defer p.Close()
			c := dialOn(t, p, w)
			c.Release()
			ino := sockIno(t, c)
			if got := p.GetIdle(w); got != c || c.nc != nil {
				t.Fatalf("GetIdle: %p (nc %v), want %p detached", got, c.nc, c)
			}
			if err := tc.use(c); !errors.Is(err, tc.want) || !errors.Is(err, unix.EMFILE) {
				t.Fatalf("%v, want %v and EMFILE", err, tc.want)
			}
			if fds, sets := sockUse(t, ino); fds != 0 || sets != 0 {
				t.Fatalf("%d descriptors, %d epoll sets left", fds, sets)
			}
		})
	}
}

// dialOn dials a connection of p, offering w as its watcher, and makes
// its first exchange (echoCount's "1"); the caller releases it.
func dialOn(t *testing.T, p *Pool, w Watcher) *Conn {
	t.Helper()
	c, err := p.Dial()
	if err != nil {
		t.Fatal(err)
	}
	firstOn(t, c, w)
	return c
}

// firstOn makes c's first exchange with Do, offering w as its watcher.
func firstOn(t *testing.T, c *Conn, w Watcher) {
	t.Helper()
	c.SetWatcher(w)
	head := append(c.HeadBuffer(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...)
	if _, err := c.Do(head, nil, nil, 0, false); err != nil {
		t.Fatal(err)
	}
	if got := readBody(t, c); got != "1" {
		t.Fatalf("first response %q", got)
	}
}

// readBody reads the rest of c's response body.
func readBody(t *testing.T, c *Conn) string {
	t.Helper()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
