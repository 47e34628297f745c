package upstream

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"
	"unsafe"

	"github.com/forkd/forkd/protocol/internal/wire"
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

// ErrNotNow is DialNow's answer when the pool cannot connect without
// waiting: its address is a name to resolve, its connections stay in the
// runtime's poller (Config.Detach unset), or the loop has ended. Dial, on
// a goroutine, can.
var ErrNotNow = errors.New("upstream: no connect on the event loop")

// DialNow opens a new connection for an exchange on the event loop w,
// without waiting for it, as nginx's upstream connects: a nonblocking
// connect(2) on a socket that never joins the runtime's poller (it is
// detached from birth; see the package doc), registered with w at once,
// so that the connect's end comes as w's event (OnReady), as the
// response does. SendNow sends as soon as the connection is up: until it
// is, the request waits (Pending), and SendMore sends it at the event. A
// connect that failed is SendNow's or SendMore's error, wrapping ErrDial:
// nothing was sent, and another upstream may be tried. Dialing reports
// whether that may still happen. Its time limit is the caller's
// (Config.ConnectTimeout); Finish, on a goroutine, waits for the connect
// in the runtime's poller. The connection is the caller's, as after Dial.
func (p *Pool) DialNow(w Watcher) (*Conn, error) {
	if p.family == 0 || !p.cfg.Detach || w == nil {
		return nil, ErrNotNow
	}
	var sa unix.Sockaddr
	switch p.family {
	case unix.AF_INET:
		sa = &unix.SockaddrInet4{Port: int(p.addr.Port()), Addr: p.addr.Addr().As4()}
	case unix.AF_INET6:
		sa = &unix.SockaddrInet6{Port: int(p.addr.Port()), Addr: p.addr.Addr().As16()}
	default:
		sa = &unix.SockaddrUnix{Name: p.path}
	}
	fd, err := unix.Socket(p.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDial, os.NewSyscallError("socket", err))
	}
	if p.family != unix.AF_UNIX {
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) // as net's dial
	}
	// EINPROGRESS: under way (a TCP handshake); EINTR leaves it so too. A
	// unix socket connects at once, or fails (EAGAIN: its backlog is full).
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS && err != unix.EINTR {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: %w", ErrDial, os.NewSyscallError("connect", err))
	}
	c := p.newConn(nil, nil, fd)
	c.dialing, c.dialAt, c.want = true, time.Now(), w
	if werr, ok := c.watchOn(w, false); !ok {
		c.closeSock()
		return nil, fmt.Errorf("%w: %w", ErrNotNow, werr)
	}
	return c, nil
}

// SendNow begins an exchange without a body, as Do does, writing the head
// with one nonblocking write; it reports false when the socket did not
// take all of it (Pending: SendMore, at the loop's next event for the
// socket, or Finish sends the rest), or the write failed (Finish weighs
// the error as Do does once it has read what came back, at once on a
// connection that broke; a connect that failed is ErrDial's, see
// DialNow).
func (c *Conn) SendNow(head []byte, noBody bool) bool {
	c.begin(head)
	c.noBody = noBody
	c.nowait = true
	c.pend = head
	done, _ := c.SendMore()
	return done
}

// SendMore sends what the socket did not take of the request (Pending),
// without waiting, at an event of the loop watching it; done reports that
// all of it is out. err is the write's failure, wrapping ErrDial when the
// connection never came up (see DialNow); Finish weighs any other as Do
// does.
func (c *Conn) SendMore() (done bool, err error) {
	if c.lwerr != nil {
		return false, c.lwerr
	}
	var n int
	var werr error
	if c.fd >= 0 {
		n, werr = sendNow(uintptr(c.fd), c.pend) // detached: no closure, nothing to keep open
	} else if err := c.rc.Control(func(fd uintptr) { n, werr = sendNow(fd, c.pend) }); err != nil {
		werr = err
	}
	if n > 0 {
		c.dialing = false // the connection is up
	}
	c.pend = c.pend[n:]
	if werr != nil {
		if c.dialing {
			werr = fmt.Errorf("%w: %w", ErrDial, werr)
		}
		c.lwerr = werr
		return false, werr
	}
	if len(c.pend) > 0 {
		return false, nil
	}
	c.pend = nil
	return true, nil
}

// Pending reports whether part of the request waits for the socket to
// take it (SendMore), with no write failed.
func (c *Conn) Pending() bool { return len(c.pend) > 0 && c.lwerr == nil }

// Unsent is how many bytes of the request wait (Pending).
func (c *Conn) Unsent() int { return len(c.pend) }

// Dialing reports whether the connection may still be connecting: DialNow
// made it, and no byte has gone out on it.
func (c *Conn) Dialing() bool { return c.dialing }

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
// runs to the close, is chunked with framing or a trailer section Read
// refuses, or the read failed) means the body is to be read by Read, on a
// goroutine, which reports what is wrong with it.
func (c *Conn) BodyNow() (bool, error) {
	switch c.mode {
	case bodyNone:
		return true, nil
	case bodyLength:
	case bodyChunked:
		return c.chunkedNow()
	default:
		return false, errNotNow
	}
	for int64(c.w-c.r) < c.left {
		if c.w == cap(c.buf) {
			return false, errNotNow // (not compacted: see chunkedNow)
		}
		if err := c.fill(); err != nil {
			return false, err
		}
	}
	return true, nil
}

// chunkedNow is BodyNow for a chunked body: it reads without waiting until
// the buffer holds the rest of the body, its last chunk and its trailer
// section to the empty line that ends it (chunkedIn). The body must fit
// the buffer after the head: the head's fields, which the response is
// made from once the body is in, are bytes of the buffer too, and moving
// the body to its start (compact) would write over them.
func (c *Conn) chunkedNow() (bool, error) {
	for {
		switch done, bad := c.chunkedIn(); {
		case done:
			return true, nil
		case bad:
			return false, errNotNow
		}
		if c.w == cap(c.buf) {
			return false, errNotNow
		}
		if err := c.fill(); err != nil {
			return false, err
		}
	}
}

// chunkedIn walks the chunked framing of the buffered bytes as read will
// decode them (with a copy of its decoder, and its checks of the trailer
// section) and reports whether they hold the rest of the body (done: read
// then decodes it to its end without a fill), or something read refuses
// (bad).
func (c *Conn) chunkedIn() (done, bad bool) {
	d := c.chunks
	b := c.buf[c.r:c.w]
	for {
		used, step := d.Next(b)
		b = b[used:]
		switch step {
		case wire.ChunkNeed:
			return false, false
		case wire.ChunkBad:
			return false, true
		case wire.ChunkData:
			n := int(min(d.Left(), int64(len(b))))
			d.Consume(n)
			b = b[n:]
			if d.Left() > 0 {
				return false, false
			}
		default: // wire.ChunkTrailer: its lines, as read takes them
			fields, size := len(c.toff)/3, len(c.tarena)
			for {
				line, err := cutLine(b)
				if err != nil || line == nil {
					return false, err != nil
				}
				b = b[len(line):]
				name, value, err := c.trailerField(line, fields, size)
				switch {
				case err != nil:
					return false, true
				case name == nil:
					return true, false
				}
				fields++
				size += len(name) + len(value)
			}
		}
	}
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
		if c.dialing {
			return nil, fmt.Errorf("%w: %w", ErrDial, err) // nothing went out
		}
		// The request went out, or some of it: not one to send again.
		return nil, fmt.Errorf("%w: %w", ErrTruncated, err)
	}
	if headIn {
		return &c.head, nil
	}
	if len(c.pend) > 0 && c.lwerr == nil {
		if t := c.pool.cfg.ConnectTimeout; c.dialing && t > 0 {
			// DialNow's connect, which the write waits for, has its own
			// limit, from when it began.
			c.nc.SetWriteDeadline(c.dialAt.Add(t))
			c.wdeadline = time.Time{} // set again after it
		} else {
			c.setWriteDeadline()
		}
		var n int
		n, c.lwerr = c.nc.Write(c.pend)
		c.pend = nil
		if n > 0 {
			c.dialing = false
		}
	}
	if c.lwerr != nil && c.dialing {
		if !errors.Is(c.lwerr, ErrDial) {
			c.lwerr = fmt.Errorf("%w: %w", ErrDial, c.lwerr)
		}
		return nil, c.lwerr
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
