package protocol

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// transport moves a connection's bytes; a conn has one at a time, in c.t,
// of two kinds: *loopTransport (a raw socket on an event loop) and
// *netTransport (a net.Conn). Who owns each descriptor, who may close it and
// under which lock is the package doc's table ("Who owns a descriptor");
// this file holds both transports and every change of owner between them
// (leave, attach, offLoop, backToLoop).
type transport interface {
	// readNow reads into p what has arrived, without waiting. It returns
	// errWait when nothing has (or the last read came back short, which
	// means the socket is empty), and also when the transport cannot read
	// without waiting at this moment: a netTransport outside its read
	// callback. At the end of the stream it returns io.EOF.
	readNow(p []byte) (int, error)
	// readAgain makes the next readNow read even if the last read came
	// back short: the end of the stream may have come with that read's
	// bytes, and brings no readiness of its own afterwards.
	readAgain()
	// writeNow calls step with the descriptor if the transport may use it
	// at this moment, and returns what step returned: true when it is done
	// (or failed), false when it must wait for the socket. It returns false
	// without calling step when the descriptor is not at hand (a
	// netTransport outside its read callback).
	writeNow(step func(fd uintptr) bool) bool
	// setReadDeadline bounds the wait for the next read. A loop's
	// connections have no deadline of their own: the loop's sweep enforces
	// the exchange's c.rdl.
	setReadDeadline(t time.Time)
	// close closes the socket, unless a hijacking handler owns it.
	close()
}

// errWait is readNow's answer when reading would have to wait.
var errWait = errors.New("protocol: internal: would wait")

// netTransport is a connection's transport over a net.Conn: every socket
// accepted as a net.Conn, and every connection that has left its event
// loop. It may wait: reads and writes that cannot go at once wait in the
// runtime's poller (RawConn.Read/Write), under the deadlines.
//
// On sockets (rc != nil) the keep-alive loop runs inside one RawConn.Read
// callback (serveTurns): while it runs, fd is the descriptor that callback
// was given, and readNow and writeNow use it; outside, fd is -1 and the
// number is not used at all.
//
// A connection that left its loop because its handler waits for something
// else (leaveLoop: a proxied request) is held: it has no net.Conn yet, and
// raw is its socket, which writeNow writes to at once; its net.Conn is
// made (unhold) only when it must wait for its client, so that a response
// that goes out at once on a connection that then closes never pays for
// one.
type netTransport struct {
	nc      net.Conn
	rc      syscall.RawConn // nil when nc is not a socket (TLS, pipes)
	fd      int             // inside readFn: the descriptor; else -1
	raw     int             // a held socket (leaveLoop), else -1; see unhold
	loop    *eventLoop      // whose epoll set still lists raw (leaveLoop), or nil
	drained bool            // the last read came back short
	given   bool            // Hijack gave nc itself to the handler
	act     int             // how the turn inside readFn ended
	readFn  func(uintptr) bool
	c       *conn
}

func (t *netTransport) reset() {
	*t = netTransport{fd: -1, raw: -1, readFn: t.readFn, c: t.c}
}

// init makes t the transport of nc.
func (t *netTransport) init(nc net.Conn) {
	t.nc = nc
	t.rc = nil
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			t.rc = rc
		}
	}
}

func (t *netTransport) readNow(p []byte) (int, error) {
	if t.fd < 0 {
		return 0, errWait
	}
	return readRaw(t.fd, p, &t.drained)
}

func (t *netTransport) readAgain() { t.drained = false }

func (t *netTransport) writeNow(step func(uintptr) bool) bool {
	if t.raw >= 0 {
		return step(uintptr(t.raw))
	}
	return t.fd >= 0 && step(uintptr(t.fd))
}

func (t *netTransport) setReadDeadline(d time.Time) {
	t.unhold()
	if t.nc != nil {
		t.nc.SetReadDeadline(d)
	}
}

func (t *netTransport) setWriteDeadline(d time.Time) {
	t.unhold()
	if t.nc != nil {
		t.nc.SetWriteDeadline(d)
	}
}

func (t *netTransport) close() {
	if t.raw >= 0 {
		s := t.c.srv
		s.mu.Lock() // Close may be shutting it down (see unhold)
		unix.Close(t.raw)
		t.raw = -1
		s.mu.Unlock()
		return
	}
	if t.nc != nil && !t.given {
		t.nc.Close()
	}
}

// errInTurn would be a bug: serveTurns serves a request inside its read
// callback only when the body is already buffered, because a socket read
// there would wait on a lock the callback holds. (On an event loop the
// rule is the same: a turn never waits.)
var errInTurn = errors.New("protocol: internal error: a read that waits inside a turn")

// errLost is the error of a connection whose net.Conn could not be made
// when it left its loop; c.werr says why.
var errLost = errors.New("protocol: connection lost leaving its event loop")

// read waits for bytes, under the read deadline.
func (t *netTransport) read(p []byte) (int, error) {
	t.unhold()
	switch {
	case t.fd >= 0:
		return 0, errInTurn
	case t.nc == nil:
		return 0, errLost
	}
	return t.nc.Read(p)
}

// next serves the connection's next request (or requests: pipelined ones
// that are in at once) and says how it ended.
func (t *netTransport) next(c *conn) int {
	if t.rc == nil || c.srv.noRaw {
		return c.serveRequest(c.readHead())
	}
	return t.serveTurns(c)
}

// serveTurns runs the exchange's turns (conn.turn) inside one RawConn.Read
// callback, reading with read(2) itself: after a read that came back short
// the socket is known to be empty, so the next wait goes straight to the
// poller instead of first making a read(2) that fails with EAGAIN. Go
// resets a descriptor's readiness only when RawRead begins, so data that
// arrives while a handler runs inside the callback is never missed.
// Requests whose body is not yet buffered are served outside the callback,
// where the body can wait on the socket.
func (t *netTransport) serveTurns(c *conn) int {
	t.drained = false
	t.act = actClose
	if c.rdl == 0 {
		// The deadline left on the net.Conn is unknown (parkDelay's, or a
		// handler's): RawConn.Read must not fail on it before it reads.
		d := c.srv.lim.IdleTimeout
		if c.first {
			d = c.srv.lim.ReadHeaderTimeout
		}
		c.extendReadDeadline(d)
	}
	if err := t.rc.Read(t.readFn); err != nil {
		if c.proxy {
			c.proxyLost(err)
			return actClose
		}
		if c.r < c.w && isTimeout(err) {
			return c.serveRequest(http.StatusRequestTimeout)
		}
		if c.parking && c.r == c.w && len(c.wbuf) == 0 && isTimeout(err) {
			if !c.srv.draining.Load() {
				return actPark
			}
			if c.first {
				// Shutdown began while it waited to park: a connection
				// that has carried no request keeps its read-header
				// timeout (see enterIdle).
				c.keepFirstDeadline()
				return actNext
			}
		}
		return actClose
	}
	if t.act == actOutside {
		return c.serveRequest(0)
	}
	return t.act
}

// onReadable is readFn, the RawConn.Read callback of serveTurns.
func (t *netTransport) onReadable(fd uintptr) bool {
	t.fd = int(fd)
	act := t.c.turn()
	t.fd = -1
	if act == actWait {
		return false
	}
	t.act = act
	return true
}

// waitWrite runs step under RawConn.Write until it is done: between calls
// it waits for the socket, under the write deadline. It reports false when
// nc is not a socket (the caller then writes through nc).
func (t *netTransport) waitWrite(step func(uintptr) bool) (bool, error) {
	t.unhold()
	if t.rc == nil {
		if t.nc == nil {
			return true, errLost
		}
		return false, nil
	}
	return true, t.rc.Write(step)
}

// hijack hands nc to a handler. Inside the read callback the descriptor
// stays locked until the handler returns, so the handler gets a duplicate
// instead, and nc is closed when the connection is released (the socket
// lives on in the duplicate). So does a handler whose connection left an
// event loop: it gets a net.Conn from the net package (a *net.TCPConn for
// TCP), as a handler of net/http's would, not a sockConn.
func (t *netTransport) hijack() (net.Conn, error) {
	t.unhold()
	if t.nc == nil {
		return nil, errLost
	}
	if _, sock := t.nc.(*sockConn); t.fd < 0 && !sock {
		t.given = true
		return t.nc, nil
	}
	return dupConn(t.nc)
}

// closeLinger half-closes and reads what the client still sends for a
// short while, so that closing does not reset the connection before the
// client has read the last response (which the caller has flushed).
func (t *netTransport) closeLinger(buf []byte) {
	t.unhold()
	cw, ok := t.nc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	t.nc.SetReadDeadline(time.Now().Add(lingerTimeout))
	for total := 0; total < maxLinger; {
		n, err := t.nc.Read(buf)
		total += n
		if err != nil {
			return
		}
	}
}

// loopTransport is the transport of a socket accepted raw for an event
// loop, which owns the descriptor (the package doc's table): the loop's
// goroutine and the exchange code of the connection's turn use the number
// directly.
type loopTransport struct {
	l       *eventLoop // the loop holding the socket; nil before add and after leave
	fd      int        // the socket; -1 once attach has replaced it
	drained bool       // the last read came back short
	// lingering: the loop discards what the client still sends before it
	// closes (linger); lingered counts it.
	lingering bool
	lingered  int
	// missed: an event came while the connection's request was
	// suspended (Suspend), which the loop did not act on.
	missed bool
	c      *conn // the conn t belongs to
}

func (t *loopTransport) reset() { *t = loopTransport{fd: -1, c: t.c} }

func (t *loopTransport) readNow(p []byte) (int, error) { return readRaw(t.fd, p, &t.drained) }

func (t *loopTransport) readAgain() { t.drained = false }

func (t *loopTransport) writeNow(step func(uintptr) bool) bool { return step(uintptr(t.fd)) }

func (t *loopTransport) setReadDeadline(time.Time) {} // the sweep enforces c.rdl

func (t *loopTransport) close() {
	if t.fd >= 0 {
		rawClose(t.fd)
		t.fd = -1
	}
}

// leave takes the socket off its loop, which no longer watches or closes
// it: from now on it belongs to the goroutine that calls attach.
func (t *loopTransport) leave() {
	l := t.l
	if l == nil {
		return
	}
	t.forget()
	// The descriptor is still open (attach replaces it only after this),
	// so this cannot hit a reused number.
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, t.fd, nil)
}

// forget removes the socket from the loop's table, for a socket about to
// be closed (close(2) takes it out of the epoll instance).
func (t *loopTransport) forget() {
	l := t.l
	l.mu.Lock()
	l.conns[t.fd] = nil
	l.mu.Unlock()
	t.l = nil
}

// attach is the second half of leaving a loop: it hands the raw socket of
// t, which is off its loop, to a net.Conn (a sockConn: the descriptor
// itself, registered with the runtime's poller) and makes that c's
// transport. On failure c.werr says why, and the netTransport it returns
// has no net.Conn: serving it only releases c.
func (t *loopTransport) attach(c *conn) *netTransport {
	nt := &c.nt
	nt.drained = t.drained // for closesQuietly
	nc, rc, err := newSockConn(t.fd, c.req.LocalAddr, c.req.RemoteAddr)
	t.fd = -1 // nc's now, or closed
	if err != nil {
		c.werr = fmt.Errorf("protocol: leaving the event loop: %w", err)
		c.srv.logger.Warn("connection lost leaving the event loop", "remote", c.req.RemoteAddr, "error", err)
	}
	// From here on the descriptor is nc's, which Close or Shutdown may
	// close at any time; its number may then be reused at once by any
	// socket this process opens, which must never receive this client's
	// bytes. So it is used only inside rc's callbacks (netTransport).
	s := c.srv
	s.mu.Lock()
	if nc != nil {
		nt.nc, nt.rc = nc, rc
	}
	c.t = nt
	closed := s.closed
	s.mu.Unlock()
	if nc == nil {
		return nt
	}
	if closed {
		nc.Close() // Close has passed over c while it had no net.Conn
	}
	if c.rdl != 0 {
		// The deadline the loop's sweep kept for it.
		nc.SetReadDeadline(s.epoch.Add(c.rdl))
	}
	return nt
}

// offLoop makes c's transport one that may wait, and returns it: a
// connection on an event loop leaves it for good (the goroutine running
// the turn stays with it, and a new goroutine carries on with the loop, so
// that the loop's other connections never wait for this one). Exchange
// code runs for a connection on a loop only in the loop's turn, so that is
// where offLoop is called from. It fails when the net.Conn could not be
// made (c.werr says why).
func (c *conn) offLoop() (*netTransport, error) {
	if t, ok := c.t.(*loopTransport); ok {
		if l := t.l; l != nil {
			t.leave()
			go l.run()
		}
		t.attach(c)
	}
	nt := c.t.(*netTransport)
	nt.unhold()
	if nt.nc == nil {
		return nt, c.werr
	}
	return nt, nil
}

// leaveLoop is offLoop for a handler about to wait for something other
// than its client (WillBlock): the connection leaves its loop for good in
// the same way, but is held (netTransport.raw) rather than given a
// net.Conn, until it must wait for its client. A proxied request on a
// connection that then closes is answered with one write on the raw
// socket, without the net.Conn's fcntl and the two epoll_ctl calls of the
// runtime's poller (registration, and removal at close), nor the loop's
// own removal: the socket stays in the loop's epoll set, where its events
// find no connection, until unhold takes it out or close(2) does.
func (c *conn) leaveLoop() {
	t, ok := c.t.(*loopTransport)
	if !ok {
		return // off its loop already
	}
	l := t.l
	if l == nil {
		c.offLoop()
		return
	}
	// The loop forgets the socket, but a held one stays in its epoll set
	// until unhold takes it out (most never need that: they close, which
	// takes it out too); an event for it meanwhile finds no connection.
	t.forget()
	nt := &c.nt
	nt.drained = t.drained // for closesQuietly
	s := c.srv
	s.mu.Lock()
	held := !s.closed
	if held {
		nt.raw, nt.loop, t.fd = t.fd, l, -1
		c.t = nt
	}
	s.mu.Unlock()
	if !held {
		// As leave: before the loop goes on without this goroutine.
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, t.fd, nil)
	}
	go l.run()
	if !held {
		t.attach(c) // Close has begun: attach closes the net.Conn it makes
	}
}

// unhold makes the net.Conn of a held connection (leaveLoop) before its
// first wait, as attach does for one that leaves its loop; on failure
// c.werr says why and t has no net.Conn. The goroutine serving the
// connection owns a held socket alone, but sets, replaces and closes raw
// only under Server.mu, where Close shuts a held socket down (it cannot
// close it: the number is in use without a lock). It does nothing to a
// connection that is not held.
func (t *netTransport) unhold() {
	if t.raw < 0 {
		return
	}
	c := t.c
	s := c.srv
	if l := t.loop; l != nil {
		// Out of the loop's epoll set (see leaveLoop) before the runtime's
		// poller takes it, unless the loop has ended, and its epoll with it
		// (under l.mu, as add).
		t.loop = nil
		l.mu.Lock()
		if !l.closed {
			unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, t.raw, nil)
		}
		l.mu.Unlock()
	}
	s.mu.Lock()
	fd := t.raw
	t.raw = -1
	// newSockConn closes fd on failure: under s.mu, so that Close never
	// shuts down a number that another socket may have by then.
	nc, rc, err := newSockConn(fd, c.req.LocalAddr, c.req.RemoteAddr)
	if err == nil {
		t.nc, t.rc = nc, rc
	}
	closed := s.closed
	s.mu.Unlock()
	if err != nil {
		c.werr = fmt.Errorf("protocol: leaving the event loop: %w", err)
		s.logger.Warn("connection lost leaving the event loop", "remote", c.req.RemoteAddr, "error", err)
		return
	}
	if closed {
		nc.Close() // Close has shut it down; its net.Conn is closed as Close would have
		return
	}
	if c.rdl != 0 {
		nc.SetReadDeadline(s.epoch.Add(c.rdl))
	}
}

// rejoin puts c, held (leaveLoop) and done with its request, with nothing
// buffered or queued, back on the loop it left, at the cost of one
// epoll_ctl: the socket is still in that loop's epoll set, and
// EPOLL_CTL_MOD, made under the loop's mu with the connection back in its
// table, queues an event at once if bytes came while it was held (their
// event found no connection). From then on the loop owns the descriptor,
// and the calling goroutine must not touch c. It reports false when c
// stays with the calling goroutine (then on a net.Conn of its own, c.t):
// the server or the loop is closing.
func (c *conn) rejoin(t *netTransport) bool {
	s := c.srv
	l := t.loop
	if l == nil || t.raw < 0 || s.draining.Load() {
		return false // under Shutdown it waits on its net.Conn, with the drain's grace
	}
	s.mu.Lock()
	closed := s.closed
	if !closed {
		c.lt.reset()
		c.lt.fd, t.raw, t.loop = t.raw, -1, nil
		c.t = &c.lt // Close and Shutdown now leave it to the loop
	}
	s.mu.Unlock()
	if closed {
		return false // serveNet goes on: its unhold makes the net.Conn, closed
	}
	t.reset()
	c.parking = false
	c.dropBuffers()
	c.enterIdle()
	lt := &c.lt
	fd := lt.fd
	l.mu.Lock()
	ok := !l.closed
	if ok {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
		if ok = rawEpollCtl(l.epfd, unix.EPOLL_CTL_MOD, fd, &ev) == nil; ok {
			l.conns[fd] = c
			lt.l = l
			c.home = l
		}
	}
	l.mu.Unlock()
	if ok {
		return true
	}
	lt.attach(c) // the loop has ended: on a net.Conn here (attach sees Close)
	return false
}

// backToLoop moves c, idle on its net.Conn t with nothing buffered or
// queued, back onto an event loop: inside t's Control callback (which
// holds the descriptor open) it duplicates the socket, closes the
// net.Conn, makes the duplicate c's loopTransport under the Server's mu,
// gives its buffers back and registers it with a loop. From then on the
// loop owns the descriptor and serves c's next bytes, and the calling
// goroutine must not touch c. It reports false when c stays on a
// net.Conn (c.t, possibly a new one): the server is closing, or the
// duplicate or the loop failed.
func (c *conn) backToLoop(t *netTransport) bool {
	s := c.srv
	l := s.pickLoop()
	if l == nil || t.rc == nil {
		return false
	}
	fd := -1
	var derr error
	err := t.rc.Control(func(f uintptr) {
		fd, derr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0)
	})
	if err != nil || derr != nil {
		return false
	}
	c.lt.reset()
	c.lt.fd = fd
	s.mu.Lock()
	closed := s.closed
	if !closed {
		c.t = &c.lt // Close and Shutdown now leave it to the loop
	}
	s.mu.Unlock()
	if closed {
		unix.Close(fd)
		c.lt.fd = -1
		return false // release closes the net.Conn
	}
	t.nc.Close() // the duplicate (same open file, nonblocking) lives on
	t.reset()
	c.parking = false // rdl is the real deadline again, for the sweep
	c.dropBuffers()
	if l.add(&c.lt) {
		return true
	}
	// The loop has ended (Shutdown): carry on here.
	c.lt.attach(c)
	return false
}

// dupConn makes a second net.Conn on nc's socket with a descriptor of its
// own.
func dupConn(nc net.Conn) (net.Conn, error) {
	var f *os.File
	if sc, ok := nc.(*sockConn); ok {
		// The duplicate is made under the file's reference (Control):
		// Close may close the file at any moment, and its number could
		// then belong to another socket (net.FileConn uses File.Fd,
		// which holds none).
		dfd := -1
		var derr error
		if err := sc.rc.Control(func(fd uintptr) { dfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
			return nil, fmt.Errorf("protocol: hijack: %w", err)
		}
		if derr != nil {
			return nil, fmt.Errorf("protocol: hijack: %w", os.NewSyscallError("fcntl", derr))
		}
		f = os.NewFile(uintptr(dfd), "")
		defer f.Close()
	} else {
		fc, ok := nc.(interface{ File() (*os.File, error) })
		if !ok {
			return nil, fmt.Errorf("protocol: hijack: cannot duplicate a %T", nc)
		}
		var err error
		if f, err = fc.File(); err != nil {
			return nil, fmt.Errorf("protocol: hijack: %w", err)
		}
		defer f.Close()
	}
	dc, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("protocol: hijack: %w", err)
	}
	return dc, nil
}

// sockConn is the net.Conn of a socket that left its event loop: an
// os.File over the socket's own descriptor, which os registers with the
// runtime's poller (the socket is nonblocking), so that its reads, writes
// and deadlines wait there as a net.Conn's do; its addresses are the ones
// the loop had. net.FileConn would duplicate the descriptor, ask the
// kernel for its type and both addresses, and set five socket options the
// accepted socket already has: eleven system calls more for every
// connection that leaves a loop (a proxied request, a net/http handler's
// first request).
type sockConn struct {
	*os.File
	rc           syscall.RawConn
	laddr, raddr net.Addr
}

// newSockConn makes fd, an accepted nonblocking socket, a sockConn, which
// owns it from then on: on failure fd is closed.
func newSockConn(fd int, laddr, raddr net.Addr) (*sockConn, syscall.RawConn, error) {
	f := os.NewFile(uintptr(fd), "socket")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return &sockConn{File: f, rc: rc, laddr: laddr, raddr: raddr}, rc, nil
}

func (c *sockConn) LocalAddr() net.Addr  { return c.laddr }
func (c *sockConn) RemoteAddr() net.Addr { return c.raddr }

// CloseWrite shuts down the sending side (closeLinger's half-close).
func (c *sockConn) CloseWrite() error {
	var serr error
	if err := c.rc.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), unix.SHUT_WR) }); err != nil {
		return err
	}
	if serr != nil {
		return os.NewSyscallError("shutdown", serr)
	}
	return nil
}

// The raw syscalls below are made on nonblocking sockets, without the
// runtime's blocking-syscall bookkeeping: they return at once, with EAGAIN
// when they would block. Callers hold the descriptor (see transport).

// readRaw is read(2) for readNow: it retries EINTR, reports EAGAIN and a
// drained socket (see netTransport.drained) as errWait, and the end of
// the stream as io.EOF.
func readRaw(fd int, p []byte, drained *bool) (int, error) {
	if *drained {
		// The last read drained the socket: wait for the poller.
		*drained = false
		return 0, errWait
	}
	for {
		n, err := rawRead(fd, p)
		switch {
		case n > 0:
			*drained = n < len(p)
			return n, nil
		case err == nil:
			return 0, io.EOF
		case err == syscall.EAGAIN:
			return 0, errWait
		case err != syscall.EINTR:
			return 0, err
		}
	}
}

// rawClose and rawEpollCtl are close(2) and epoll_ctl(2) for the event
// loops' path of every connection (add on accept, close on the way out),
// made without the runtime's syscall bookkeeping as rawRead is: neither
// can sleep there (no socket forkd serves has SO_LINGER, and epoll_ctl never
// waits), so there is no P to hand off. accept4 keeps it (see
// newLoopListener: a shared listener can be made blocking by another
// process).
func rawClose(fd int) {
	syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0)
}

func rawEpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// rawRead is read(2); n is 0 on error.
func rawRead(fd int, p []byte) (int, error) {
	r, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// sendNow sends what the socket fd takes of p at once and returns the
// rest (empty when all went; an error leaves the rest too, and the write
// that follows reports it). flags adds to MSG_NOSIGNAL.
func sendNow(fd int, p []byte, flags int) []byte {
	for len(p) > 0 {
		n, err := rawSend(fd, p, flags)
		if n > 0 {
			p = p[n:]
		} else if err != syscall.EINTR {
			break
		}
	}
	return p
}

// rawSend is send(2) with flags, and without SIGPIPE (MSG_NOSIGNAL); n is 0
// on error.
func rawSend(fd int, p []byte, flags int) (int, error) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)),
		uintptr(syscall.MSG_NOSIGNAL|flags), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// rawWritev is writev(2) of a and b; n is 0 on error. (The runtime ignores
// SIGPIPE for sockets, as for net.Conn's own writes.)
func rawWritev(fd int, iov *[2]unix.Iovec, a, b []byte) (int, error) {
	cnt := 0
	for _, p := range [2][]byte{a, b} {
		if len(p) > 0 {
			iov[cnt].Base = unsafe.SliceData(p)
			iov[cnt].SetLen(len(p))
			cnt++
		}
	}
	r, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(cnt))
	*iov = [2]unix.Iovec{}
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
