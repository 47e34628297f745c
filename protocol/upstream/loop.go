package upstream

import (
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// An exchange on an event loop. The reverse proxy serves a request whose
// upstream connection is watched by the loop its client is on (Watcher)
// without a goroutine: SendNow writes the request with one nonblocking
// write, the loop's events for the socket go to the owner (OnReady), which
// reads the response with ReadHeadNow and BodyNow, never waiting; whatever
// cannot be done at once goes on with Finish (and the ordinary Read) on a
// goroutine, from where the loop left off, with Do's results. The
// connection is the owner's throughout, as after Get; a loop event
// reaches only the one exchange that set OnReady, and OnReady(nil) ends
// that before Release puts the connection back.

// ErrWouldBlock is the answer of the nonblocking calls (ReadHeadNow,
// BodyNow) when the socket has nothing more yet: wait for its next event.
var ErrWouldBlock = errors.New("upstream: would block")

// Watcher returns the event loop watching c's socket, or nil.
func (c *Conn) Watcher() Watcher {
	if !c.looped {
		return nil
	}
	p := c.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	return c.lw
}

// OnReady sends the events of the loop watching c (Watcher) to f while c
// is in use, instead of noting them for the idle check; nil ends it. f
// runs on the loop's goroutine, with gone true (once, and last) when the
// loop ends.
func (c *Conn) OnReady(f func(gone bool)) {
	p := c.pool
	p.mu.Lock()
	c.onReady = f
	p.mu.Unlock()
}

// SendNow begins an exchange without a body, as Do does, writing the head
// with one nonblocking write; it reports false when the socket did not
// take all of it (Finish sends the rest), or the write failed (Finish
// weighs the error as Do does once it has read what came back, at once on
// a connection that broke).
func (c *Conn) SendNow(head []byte, noBody bool) bool {
	c.begin(head)
	c.noBody = noBody
	c.nowait = true
	var n int
	var werr error
	if c.fd >= 0 {
		n, werr = sendNow(uintptr(c.fd), head) // detached: no closure, nothing to keep open
	} else if err := c.rc.Control(func(fd uintptr) { n, werr = sendNow(fd, head) }); err != nil {
		werr = err
	}
	switch {
	case werr != nil:
		c.lwerr = werr
		return false
	case n < len(head):
		c.pend = head[n:]
		return false
	}
	return true
}

// sendNow writes as much of head as the socket takes at once, with
// nonblocking sends; n is how much, err a failure other than a full socket.
func sendNow(fd uintptr, head []byte) (n int, err error) {
	for n < len(head) {
		p := head[n:]
		m, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)),
			unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT, 0, 0)
		switch {
		case e == 0 && m > 0:
			n += int(m)
			continue
		case e == unix.EINTR:
			continue
		case e != unix.EAGAIN && e != 0:
			err = os.NewSyscallError("sendto", e)
		}
		return n, err
	}
	return n, nil
}

// ReadHeadNow reads and parses the response head without waiting, with
// Do's results, or ErrWouldBlock.
func (c *Conn) ReadHeadNow() (*Response, error) {
	return c.afterSend(c.lwerr, c.noBody)
}

// BodyNow reads the response body into the buffer without waiting, and
// reports whether all of it is there (Read then never waits): ErrWouldBlock
// when more is to come; another error (the body does not fit the buffer,
// is chunked or runs to the close, or the read failed) means the body is
// to be read by Read, on a goroutine.
func (c *Conn) BodyNow() (bool, error) {
	switch c.mode {
	case bodyNone:
		return true, nil
	case bodyLength:
	default:
		return false, errNotNow
	}
	for int64(c.w-c.r) < c.left {
		if c.w == cap(c.buf) {
			if c.r == 0 {
				return false, errNotNow
			}
			c.compact()
		}
		if err := c.fill(); err != nil {
			return false, err
		}
	}
	return true, nil
}

// errNotNow is BodyNow's error for a body the loop does not read.
var errNotNow = errors.New("upstream: body read on a goroutine")

// Finish goes on with an exchange begun by SendNow on the calling
// goroutine, where it may wait: it sends what the socket did not take,
// and unless the head is in (ReadHeadNow returned it) reads it, with Do's
// results. headIn: the head was read already; Finish then only makes the
// connection's reads wait from now on.
func (c *Conn) Finish(headIn bool) (*Response, error) {
	c.nowait = false
	if err := c.attach(); err != nil {
		// The request went out, or some of it: not one to send again.
		return nil, fmt.Errorf("%w: %w", ErrTruncated, err)
	}
	if headIn {
		return &c.head, nil
	}
	if len(c.pend) > 0 && c.lwerr == nil {
		c.setWriteDeadline()
		_, c.lwerr = c.nc.Write(c.pend)
		c.pend = nil
	}
	return c.afterSend(c.lwerr, c.noBody)
}

// readNow is readInto for an exchange on a loop: one nonblocking read.
func (c *Conn) readNow(p []byte) (int, error) {
	var n uintptr
	var e unix.Errno
	if c.fd >= 0 {
		n, e = readRaw(uintptr(c.fd), p) // detached: no closure, nothing to keep open
	} else if err := c.rc.Control(func(fd uintptr) { n, e = readRaw(fd, p) }); err != nil {
		return 0, err
	}
	switch {
	case e == unix.EAGAIN:
		return 0, ErrWouldBlock
	case e != 0:
		return 0, fmt.Errorf("read: %w", os.NewSyscallError("read", e))
	case n > 0:
		c.got = true
		return int(n), nil
	}
	return 0, io.EOF
}

// readRaw is one read, raw as the loop's own reads: nonblocking (the
// socket is), and without the scheduler's bookkeeping.
func readRaw(fd uintptr, p []byte) (uintptr, unix.Errno) {
	for {
		n, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
		if e != unix.EINTR {
			return n, e
		}
	}
}
