package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// readBufferSize and writeBufferSize are the per-connection buffers.
	// The read buffer grows up to the head limits only for big heads.
	readBufferSize  = 4 << 10
	writeBufferSize = 4 << 10
	// minFill is the least free space a body read asks the buffer for.
	minFill = 1 << 10
	// lingerTimeout and maxLinger bound how long, and how much, a closing
	// connection reads and discards after its last response, so that the
	// client receives the response instead of a reset.
	lingerTimeout = 500 * time.Millisecond
	maxLinger     = 64 << 10
)

// Connection states, for Shutdown.
const (
	stateActive = iota
	stateIdle
)

// conn is one client connection and all of its per-request state, reused
// from request to request and from connection to connection.
type conn struct {
	srv    *Server
	nc     net.Conn
	rbuf   []byte // read buffer; unread bytes are rbuf[r:w]
	r, w   int
	hdrEnd int // end of the current request head: body reads refill behind it
	scan   int // where the search for the end of the head resumes
	wbuf   []byte
	// The write in progress off the loop (writeAll): what is left of its
	// two parts, and the error that stopped it.
	wa, wb  []byte
	wfErr   error
	iov     [2]unix.Iovec
	writeFn func(uintptr) bool // c.onWritable, made once

	req  Request
	resp ResponseWriter
	body bodyReader

	state    atomic.Int32
	mu       sync.Mutex    // orders deadline changes with Shutdown's
	rdl, wdl time.Duration // deadlines set, on srv's clock; 0 when unknown
	werr     error         // sticky write error
	first    bool          // no request served yet
	hijacked bool
	partial  bool // a head has begun to arrive; its deadline is set
	proxy    bool // a PROXY header must come first (proxyconn.go)

	// The raw keep-alive loop (serveRaw); rc is nil for connections that
	// are not sockets.
	rc        syscall.RawConn
	readFn    func(uintptr) bool // c.onReadable, made once
	fd        int                // the socket while inside the callback, else -1
	act       int                // why the callback returned
	skipRead  bool               // the socket is empty: wait before reading
	inRaw     bool               // a handler runs inside the callback
	hijackDup bool               // hijacked via a duplicate descriptor

	// The event loop (loop.go): the loop holding c (registered there by
	// rawFd); onLoop while the loop serves c; moved once c left the loop
	// mid-request for the goroutine that ran it.
	loop  *eventLoop
	rawFd int // the socket of a conn accepted for a loop, until attach; else -1
	// lingering: the loop discards what the client still sends before it
	// closes (lingerOnLoop); lingered counts it.
	lingering bool
	lingered  int
	onLoop    bool
	moved     bool
	loopFn    func(uintptr) // onReadable for the event loop, made once
	loopRet   bool          // what onReadable returned in loopFn

	hooks connHooks // hook: net/http-style ConnState, contexts, deadlines (connstate.go)
}

func newConn(s *Server) *conn {
	c := &conn{
		srv:  s,
		rbuf: make([]byte, readBufferSize),
		wbuf: make([]byte, 0, writeBufferSize),
	}
	c.body.c = c
	c.resp.c = c
	c.readFn = c.onReadable
	c.writeFn = c.onWritable
	c.loopFn = func(fd uintptr) { c.loopRet = c.onReadable(fd) }
	c.fd, c.rawFd = -1, -1
	c.req.Body = &c.body
	return c
}

// init prepares a pooled conn for nc.
func (c *conn) init(nc net.Conn) {
	c.reset()
	c.nc = nc
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			c.rc = rc
		}
	}
	c.req.RemoteAddr = nc.RemoteAddr()
	c.req.LocalAddr = nc.LocalAddr()
}

// initRaw prepares a pooled conn for a socket accepted for an event loop;
// it gets a net.Conn (attach) only if it leaves the loop.
func (c *conn) initRaw(fd int, remote, local net.Addr) {
	c.reset()
	c.rawFd = fd
	c.req.RemoteAddr = remote
	c.req.LocalAddr = local
}

// reset clears what the last connection left in a pooled conn.
func (c *conn) reset() {
	c.nc, c.rawFd = nil, -1
	c.lingering, c.lingered = false, 0
	if len(c.rbuf) > readBufferSize {
		c.rbuf = make([]byte, readBufferSize)
	}
	if cap(c.wbuf) > 4*writeBufferSize {
		c.wbuf = make([]byte, 0, writeBufferSize)
	}
	c.wbuf = c.wbuf[:0]
	c.r, c.w, c.hdrEnd, c.scan = 0, 0, 0, 0
	c.rdl, c.wdl = 0, 0
	c.werr = nil
	c.first = true
	c.partial = false
	c.proxy = false
	c.hijacked = false
	c.hijackDup = false
	c.rc = nil
	c.loop, c.onLoop, c.moved = nil, false, false
	c.skipRead = false
	c.resp.hijacked = false
	c.state.Store(stateActive)
}

// Actions that serveRequest and the keep-alive loops hand back.
const (
	actNext    = iota // keep the connection for the next request
	actClose          // close it now (silently, or it was hijacked)
	actLinger         // lingering close after the last response
	actOutside        // raw loop: serve this request outside the read callback
)

// stWait is readHeadRaw's answer when it must wait for the socket to become
// readable.
const stWait = -2

// serve runs the connection: read a head, call the handler, finish the
// response, decide whether the connection stays open; repeat.
func (c *conn) serve() { c.serveFrom(actNext) }

// serveFrom is serve for a connection whose last request ended with act;
// event loops hand connections over with it.
func (c *conn) serveFrom(act int) {
	defer c.release()
	if c.nc == nil {
		return // attach failed (werr says why); release closes the socket
	}
	if act == actOutside {
		act = c.serveRequest(0)
	}
	if act == actNext {
		if c.rc != nil && !c.srv.noRaw {
			act = c.serveRaw()
		} else {
			for act == actNext {
				act = c.serveRequest(c.readHead())
			}
		}
	}
	if act == actLinger {
		c.closeLinger()
	}
}

// serveRaw is serve's loop for sockets. It runs the keep-alive loop inside
// one syscall.RawConn.Read callback, reading with read(2) itself: after a
// read that came back short the socket is known to be empty, so the next
// wait goes straight to the poller instead of first making a read(2) that
// fails with EAGAIN. Go resets a descriptor's readiness only when RawRead
// begins, so data that arrives while a handler runs inside the callback is
// never missed. Requests whose body is not yet buffered are served outside
// the callback, where the body can block on the socket; so are lingering
// closes. Hijack inside the callback hands out a duplicate descriptor.
func (c *conn) serveRaw() int {
	for {
		c.skipRead = false
		c.act = actClose
		if err := c.rc.Read(c.readFn); err != nil {
			if c.r < c.w && isTimeout(err) {
				return c.serveRequest(http.StatusRequestTimeout)
			}
			return actClose
		}
		act := c.act
		if act == actOutside {
			act = c.serveRequest(0)
		}
		if act != actNext {
			return act
		}
	}
}

// onReadable is the RawRead callback: it serves requests until it must wait
// for the socket (false) or the connection leaves the callback (true, with
// c.act saying why).
func (c *conn) onReadable(fd uintptr) bool {
	c.fd = int(fd)
	defer func() { c.fd = -1 }()
	for {
		st := c.readHeadRaw(c.fd)
		switch {
		case st == stWait:
			return false
		case st < 0:
			c.act = actClose
			return true
		case st == 0 && !c.bodyBuffered():
			c.act = actOutside
			return true
		}
		c.inRaw = true
		act := c.serveRequest(st)
		c.inRaw = false
		if act != actNext || c.fd < 0 {
			// Done, or the connection left its event loop in the
			// handler (attach): its next request is read through its
			// net.Conn's RawConn, never with the number fd was.
			c.act = act
			return true
		}
	}
}

// rawRead and rawWrite are read(2) and send(2) (without SIGPIPE) on a
// nonblocking socket,
// made without the runtime's blocking-syscall bookkeeping: they return at
// once, with EAGAIN when they would block. n is 0 on error.
func rawRead(fd int, p []byte) (int, error) {
	r, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// sendNow sends what the nonblocking socket fd takes of p at once and
// returns the rest (empty when all went, or an error stopped it: a later
// write through the net.Conn reports the error).
func sendNow(fd int, p []byte) []byte {
	for len(p) > 0 {
		n, err := rawWrite(fd, p)
		if n > 0 {
			p = p[n:]
		} else if err != syscall.EINTR {
			break
		}
	}
	return p
}

func rawWrite(fd int, p []byte) (int, error) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)),
		syscall.MSG_NOSIGNAL, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// bodyBuffered reports whether the parsed request's body is entirely in the
// read buffer already (or there is none), so that serving it cannot block on
// a socket read.
func (c *conn) bodyBuffered() bool {
	r := &c.req
	switch {
	case r.expectContinue || r.chunked:
		return false
	case r.ContentLength > 0:
		return int64(c.w-c.r) >= r.ContentLength
	}
	return true
}

// serveRequest answers one request whose head readHead parsed (st == 0),
// or the error status st, and says what happens to the connection next;
// st < 0 closes it silently.
func (c *conn) serveRequest(st int) int {
	if st < 0 {
		return actClose
	}
	s := c.srv
	var start time.Time
	if s.Log != nil {
		start = time.Now()
	}
	if st > 0 {
		c.writeError(st)
		c.done(start)
		return actLinger
	}
	if s.draining.Load() {
		c.req.Close = true
	}
	c.body.reset(&c.req)
	c.resp.reset(&c.req)
	c.req.Trailer.reset()

	if len(c.req.Target) == 1 && c.req.Target[0] == '*' {
		// OPTIONS * (the parser allows "*" for OPTIONS only) asks about
		// the server, not a resource: no site is asked (RFC 9110 §9.3.7).
		c.resp.hdr.Set("Allow", serverMethods)
	} else if !c.callHandler() {
		if c.hijacked || c.resp.committed {
			return actClose // hijacked, or a torn response: cut the connection
		}
		c.writeError(http.StatusInternalServerError)
		c.done(start)
		return actLinger
	}
	if c.hijacked {
		return actClose
	}

	w, b := &c.resp, &c.body
	if b.status != 0 && !w.committed && w.status < 400 {
		// The body was refused while the handler read it (413 for a
		// chunked body over the limit, 400 for bad framing, 408).
		c.writeError(b.status)
	} else {
		if !b.done && (b.expect || b.err != nil || b.mode == bodyLength && b.n > maxDrain) {
			w.close = true
		}
		w.finish()
	}
	closing := w.close || c.werr != nil || b.err != nil
	if !closing && !b.done {
		// Answer first, then discard the rest of the body (bounded).
		if c.flush() != nil || !b.drain() {
			closing = true
		}
	}
	c.done(start)
	if closing {
		return actLinger
	}
	c.first = false
	return actNext
}

// serverMethods is the Allow value of the answer to OPTIONS *: the methods
// a handler may be asked to serve.
const serverMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

// callHandler runs the handler and reports whether it returned normally.
func (c *conn) callHandler() (ok bool) {
	defer func() {
		if ok {
			return
		}
		v := recover()
		c.abortHandler(v) // hook: http.ErrAbortHandler closes without a response (connstate.go)
		if v != nil && v != http.ErrAbortHandler {
			c.srv.logger.Error("handler panic", "remote", c.req.RemoteAddr, "panic", v, "stack", string(debug.Stack()))
		}
	}()
	c.srv.Handler.Serve(&c.resp, &c.req)
	return true
}

// readHead reads until rbuf[r:w] starts with a complete request head and
// parses it. It returns 0, an error status to answer with, or -1 to close
// the connection silently (EOF, idle timeout, broken connection).
func (c *conn) readHead() int {
	for {
		if st, ok := c.parseHead(); ok {
			return st
		}
		if !c.prepareRead() {
			return -1
		}
		n, err := c.nc.Read(c.rbuf[c.w:])
		if n > 0 {
			c.got(n)
			continue
		}
		if err == nil {
			continue
		}
		if c.r < c.w && isTimeout(err) {
			return http.StatusRequestTimeout
		}
		return -1
	}
}

// readHeadRaw is readHead inside the RawRead callback, reading from fd
// itself; it returns stWait when the socket has nothing to read.
func (c *conn) readHeadRaw(fd int) int {
	for {
		if st, ok := c.parseHead(); ok {
			return st
		}
		if !c.prepareRead() {
			return -1
		}
		if c.skipRead {
			// The last read drained the socket: wait for the poller.
			c.skipRead = false
			return stWait
		}
		p := c.rbuf[c.w:]
		n, err := rawRead(fd, p)
		switch {
		case n > 0:
			c.skipRead = n < len(p)
			c.got(n)
		case err == syscall.EAGAIN:
			return stWait
		case err == syscall.EINTR:
		default:
			return -1 // EOF or a broken connection
		}
	}
}

// parseHead parses the head at rbuf[r:w] once it is complete (or too
// large), reporting ok with readHead's result; !ok means more bytes are
// needed.
func (c *conn) parseHead() (st int, ok bool) {
	s := c.srv
	if c.proxy && c.r < c.w {
		if st, ok := c.takeProxyHeader(); st != 0 || !ok {
			return st, ok
		}
	}
	if c.r == c.w || !c.headComplete() && c.w-c.r < s.maxHead {
		return 0, false
	}
	n, st := parseRequest(&c.req, c.rbuf[c.r:c.w], &s.lim)
	if st == 0 {
		c.r += n
		c.hdrEnd, c.scan = c.r, c.r
		c.partial = false
		if c.first && c.rc == nil && c.nc != nil {
			// A layered connection (TLS over NewProxyListener's) may
			// learn its client's address in its first Read.
			c.req.RemoteAddr = c.nc.RemoteAddr()
		}
		return 0, true
	}
	if st != statusNeedMore {
		return st, true
	}
	if c.w-c.r >= s.maxHead {
		return http.StatusRequestHeaderFieldsTooLarge, true
	}
	return 0, false
}

// prepareRead gets ready to read more of a head: it sends the responses
// batched so far (the read may block), makes room in the buffer, and arms
// the read deadline. It reports false when the flush failed.
func (c *conn) prepareRead() bool {
	s := c.srv
	if len(c.wbuf) > 0 && c.flush() != nil {
		return false
	}
	switch {
	case c.r == c.w:
		c.r, c.w, c.scan = 0, 0, 0
	case c.w == len(c.rbuf) && c.r > 0:
		n := copy(c.rbuf, c.rbuf[c.r:c.w])
		c.scan -= c.r
		c.r, c.w = 0, n
	case c.w == len(c.rbuf):
		nb := make([]byte, min(2*len(c.rbuf), s.maxHead))
		copy(nb, c.rbuf[c.r:c.w])
		c.rbuf = nb
	}
	if c.r == c.w {
		c.enterIdle()
	} else if !c.partial {
		// RFC 9112 has no number; ReadHeaderTimeout counts from the
		// request's first byte.
		c.partial = true
		c.setReadDeadline(time.Now(), s.lim.ReadHeaderTimeout)
	}
	return true
}

// got accounts for n bytes read into the buffer.
func (c *conn) got(n int) {
	if c.r == c.w {
		c.becomeActive()
	}
	c.w += n
}

// headComplete reports whether rbuf[r:w] holds the empty line that ends a
// head ("\n\r\n", or "\n\n" which the parser then refuses), resuming the
// search where the last call stopped.
func (c *conn) headComplete() bool {
	b := c.rbuf[:c.w]
	i := max(c.scan, c.r)
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			c.scan = c.w
			return false
		}
		i += j
		switch {
		case i+1 >= len(b):
		case b[i+1] == '\n':
			return true
		case b[i+1] != '\r':
			i++
			continue
		case i+2 >= len(b):
		case b[i+2] == '\n':
			return true
		default:
			i++
			continue
		}
		c.scan = i
		return false
	}
}

// enterIdle arms the read deadline for the wait for a next request: the
// idle timeout, the read-header timeout before the first request, or the
// drain grace once Shutdown has begun. The deadline is set before the state
// changes, so a concurrent Shutdown's deadline always lands after it.
func (c *conn) enterIdle() {
	s := c.srv
	if !s.draining.Load() {
		d := s.lim.IdleTimeout
		if c.first {
			d = s.lim.ReadHeaderTimeout
		}
		c.extendReadDeadline(d)
	}
	c.state.Store(stateIdle)
	c.setState(http.StateIdle) // hook: Server.ConnState (connstate.go)
	if s.draining.Load() {
		c.mu.Lock()
		if c.nc != nil {
			c.nc.SetReadDeadline(time.Now().Add(s.idleGrace))
		}
		c.mu.Unlock()
		c.rdl = 0
	}
}

// becomeActive marks the connection busy when a request's first bytes
// arrive. Under Shutdown it waits out any deadline change Shutdown is making
// and forgets the deadline it knew, so the next one is set in full.
func (c *conn) becomeActive() {
	c.state.Store(stateActive)
	c.setState(http.StateActive) // hook: Server.ConnState (connstate.go)
	if c.srv.draining.Load() {
		c.mu.Lock()
		//lint:ignore SA2001 an intentional barrier: wait out Shutdown's deadline change
		c.mu.Unlock()
		c.rdl = 0
	}
}

// drainIdle is Shutdown's call: an idle connection gets until dl for its
// next request, which will be answered with Connection: close.
func (c *conn) drainIdle(dl time.Time) {
	c.mu.Lock()
	if c.state.Load() == stateIdle && c.nc != nil {
		// (Connections still on an event loop have no net.Conn: the
		// loop hands them over when it sees Shutdown.)
		c.nc.SetReadDeadline(dl)
	}
	c.mu.Unlock()
}

// extendReadDeadline makes the read deadline now+d. Deadlines cost a timer
// update, so a deadline already between 3/4 d and d ahead (judged on the
// server's once-a-second clock) is kept.
func (c *conn) extendReadDeadline(d time.Duration) {
	if c.userReadDeadline() { // hook: http.ResponseController's deadline instead (connstate.go)
		return
	}
	now := c.srv.coarseNow()
	if left := c.rdl - now; c.rdl != 0 && left >= d*3/4+time.Second && left <= d {
		return
	}
	c.setReadDeadline(time.Now(), d)
}

func (c *conn) setReadDeadline(now time.Time, d time.Duration) {
	if c.nc != nil {
		c.nc.SetReadDeadline(now.Add(d))
	} // else the event loop's sweep enforces c.rdl
	c.rdl = now.Sub(c.srv.epoch) + d
}

// extendWriteDeadline is extendReadDeadline for writes and WriteTimeout.
func (c *conn) extendWriteDeadline() {
	if c.userWriteDeadline() { // hook: http.ResponseController's deadline instead (connstate.go)
		return
	}
	d := c.srv.lim.WriteTimeout
	now := c.srv.coarseNow()
	if left := c.wdl - now; c.wdl != 0 && left >= d*3/4+time.Second && left <= d {
		return
	}
	t := time.Now()
	if c.nc != nil {
		c.nc.SetWriteDeadline(t.Add(d))
	}
	c.wdl = t.Sub(c.srv.epoch) + d
}

// fill reads more body bytes into the buffer behind the request head.
func (c *conn) fill() error {
	if c.inRaw {
		return errInRaw
	}
	if c.r == c.w {
		c.r, c.w = c.hdrEnd, c.hdrEnd
	}
	if len(c.rbuf)-c.w < minFill {
		if c.r > c.hdrEnd {
			n := copy(c.rbuf[c.hdrEnd:], c.rbuf[c.r:c.w])
			c.r, c.w = c.hdrEnd, c.hdrEnd+n
		}
		if len(c.rbuf)-c.w < minFill {
			// The request head still lives in the old buffer; only the
			// connection moves on to the new one.
			nb := make([]byte, 2*len(c.rbuf))
			copy(nb, c.rbuf[:c.w])
			c.rbuf = nb
		}
	}
	if err := c.flushBeforeRead(); err != nil {
		return err
	}
	for {
		c.extendReadDeadline(c.srv.lim.IdleTimeout)
		n, err := c.nc.Read(c.rbuf[c.w:])
		c.w += n
		if n > 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// readDirect reads body bytes from the socket straight into p.
func (c *conn) readDirect(p []byte) (int, error) {
	if c.inRaw {
		return 0, errInRaw
	}
	if err := c.flushBeforeRead(); err != nil {
		return 0, err
	}
	for {
		c.extendReadDeadline(c.srv.lim.IdleTimeout)
		n, err := c.nc.Read(p)
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// flushBeforeRead sends what is queued (the responses to earlier
// pipelined requests, and whatever the handler has written) before a body
// read that may block: a client that waits for an answer before it sends
// more must not wait for us.
func (c *conn) flushBeforeRead() error {
	if len(c.wbuf) == 0 {
		return nil
	}
	return c.flush()
}

// write queues p for the client, flushing when the buffer is full; large
// writes go out together with the buffer in one writev(2).
func (c *conn) write(p []byte) error {
	if c.werr != nil {
		return c.werr
	}
	if len(c.wbuf)+len(p) <= cap(c.wbuf) {
		c.wbuf = append(c.wbuf, p...)
		return nil
	}
	if len(p) < cap(c.wbuf)/2 {
		if err := c.flush(); err != nil {
			return err
		}
		c.wbuf = append(c.wbuf, p...)
		return nil
	}
	c.leaveLoop()
	if c.werr != nil {
		return c.werr
	}
	err := c.writeAll(c.wbuf, p)
	c.wbuf = c.wbuf[:0]
	return err
}

// writeAll sends a and then b (one writev(2) where it can) off the event
// loop, waiting for the socket as long as it takes them. WriteTimeout
// bounds the time without progress, like nginx's send_timeout, not the
// whole write: a client that reads a large response steadily gets all of
// it, one that stops reading is cut after WriteTimeout. The error is
// sticky (c.werr).
func (c *conn) writeAll(a, b []byte) error {
	var err error
	if c.rc == nil {
		err = c.writeChunks(a, b)
	} else {
		c.wa, c.wb, c.wfErr = a, b, nil
		c.extendWriteDeadline()
		// Inside the callback the descriptor is held open by rc.
		err = c.rc.Write(c.writeFn)
		if err == nil {
			err = c.wfErr
		}
		c.wa, c.wb, c.wfErr = nil, nil, nil
	}
	if err != nil {
		c.werr = err
	}
	return err
}

// onWritable is writeAll's RawConn.Write callback: it writes until the
// socket is full (false: wait for the poller, with the deadline moved on
// if anything went) or everything went or failed (true).
func (c *conn) onWritable(fd uintptr) bool {
	progressed := false
	for len(c.wa)+len(c.wb) > 0 {
		n, err := c.writev(int(fd))
		switch {
		case n > 0:
			progressed = true
			k := min(n, len(c.wa))
			c.wa = c.wa[k:]
			c.wb = c.wb[n-k:]
		case err == syscall.EINTR:
		case err == syscall.EAGAIN:
			if progressed {
				c.extendWriteDeadline()
			}
			return false
		default:
			c.wfErr = os.NewSyscallError("writev", err)
			return true
		}
	}
	return true
}

// writev is writev(2) of c.wa and c.wb on the nonblocking socket fd; n is
// 0 on error. (The runtime ignores SIGPIPE for sockets, as for net.Conn's
// own writes.)
func (c *conn) writev(fd int) (int, error) {
	cnt := 0
	for _, p := range [2][]byte{c.wa, c.wb} {
		if len(p) > 0 {
			c.iov[cnt].Base = unsafe.SliceData(p)
			c.iov[cnt].SetLen(len(p))
			cnt++
		}
	}
	r, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&c.iov[0])), uintptr(cnt))
	c.iov = [2]unix.Iovec{}
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// writeChunks is writeAll for connections that are not sockets: the
// deadline moves on before each chunk, so it bounds the time per chunk.
func (c *conn) writeChunks(a, b []byte) error {
	const chunk = 64 << 10
	for _, p := range [2][]byte{a, b} {
		for len(p) > 0 {
			n := min(len(p), chunk)
			c.extendWriteDeadline()
			if _, err := c.nc.Write(p[:n]); err != nil {
				return err
			}
			p = p[n:]
		}
	}
	return nil
}

// flush sends the write buffer.
func (c *conn) flush() error {
	if c.werr != nil {
		return c.werr
	}
	if len(c.wbuf) == 0 {
		return nil
	}
	p := c.wbuf
	if c.fd >= 0 {
		// Inside serveRaw's callback or on an event loop: try a plain
		// write(2) first. The socket is nonblocking, so this cannot block
		// and needs neither the scheduler's syscall bookkeeping nor a
		// write deadline; what the socket does not take goes through the
		// poller below (off the loop).
		if p = sendNow(c.fd, p); len(p) == 0 {
			c.wbuf = c.wbuf[:0]
			return nil
		}
		c.leaveLoop() // the rest waits for the socket
		if c.werr != nil {
			return c.werr
		}
	}
	err := c.writeAll(p, nil)
	c.wbuf = c.wbuf[:0]
	return err
}

// writeError queues a complete error response with a short fixed body and
// Connection: close. Nothing from the request is echoed.
func (c *conn) writeError(status int) {
	w := &c.resp
	w.reset(&c.req)
	w.status = status
	w.committed = true
	w.close = true
	text := http.StatusText(status)
	n := len(text) + 5
	b := appendStatusLine(c.wbuf, status)
	b = append(b, c.srv.dateLine()...)
	b = append(b, "Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"...)
	b = appendContentLength(b, int64(n))
	b = append(b, "\r\n"...)
	if !c.req.isHead() {
		b = append(b, byte('0'+status/100), byte('0'+status/10%10), byte('0'+status%10), ' ')
		b = append(b, text...)
		b = append(b, '\n')
	}
	w.written = int64(n)
	c.wbuf = b
}

// done counts a finished response and calls the hooks.
func (c *conn) done(start time.Time) {
	s := c.srv
	s.requests.Add(1)
	if st := c.resp.status; st >= 100 && st < 600 {
		s.status[st/100-1].Add(1)
	}
	if s.OnRequestDone != nil {
		s.OnRequestDone()
	}
	if s.Log != nil {
		s.Log(&c.req, &c.resp, start)
	}
}

// closeLinger flushes, half-closes, and reads what the client still sends
// for a short while, so that closing does not reset the connection before
// the client has read the last response.
func (c *conn) closeLinger() {
	if c.flush() != nil {
		return
	}
	cw, ok := c.nc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.nc.SetReadDeadline(time.Now().Add(lingerTimeout))
	for total := 0; total < maxLinger; {
		n, err := c.nc.Read(c.rbuf)
		total += n
		if err != nil {
			return
		}
	}
}

// hijack hands the connection to the handler. Inside the raw loop's read
// callback the connection's descriptor stays locked until the handler
// returns, so the handler gets a duplicate of it instead, and the original
// is closed when the handler returns (the socket lives on in the duplicate).
func (c *conn) hijack() (net.Conn, *bufio.ReadWriter, error) {
	if err := c.flush(); err != nil {
		return nil, nil, err
	}
	c.leaveLoop() // the handler goes on with the connection as it likes
	if c.werr != nil {
		return nil, nil, c.werr
	}
	nc := c.nc
	if c.inRaw {
		dc, err := dupConn(nc)
		if err != nil {
			return nil, nil, err
		}
		nc = dc
		c.hijackDup = true
	}
	c.hijacked = true
	c.resp.hijacked = true
	rest := bytes.Clone(c.rbuf[c.r:c.w])
	c.r = c.w
	c.srv.forget(c)
	c.setState(http.StateHijacked) // hook: Server.ConnState (connstate.go)
	var r io.Reader = nc
	if len(rest) > 0 {
		r = io.MultiReader(bytes.NewReader(rest), nc)
	}
	return nc, bufio.NewReadWriter(hijackReader(r, len(rest)), bufio.NewWriter(nc)), nil // hook: buffered bytes visible, as net/http's (connstate.go)
}

// dupConn makes a second net.Conn on nc's socket with a descriptor of its
// own.
func dupConn(nc net.Conn) (net.Conn, error) {
	fc, ok := nc.(interface{ File() (*os.File, error) })
	if !ok {
		return nil, fmt.Errorf("protocol: hijack: cannot duplicate a %T", nc)
	}
	f, err := fc.File()
	if err != nil {
		return nil, fmt.Errorf("protocol: hijack: %w", err)
	}
	defer f.Close()
	dc, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("protocol: hijack: %w", err)
	}
	return dc, nil
}

// release closes the connection (unless it was handed over whole by
// hijack) and pools c.
func (c *conn) release() {
	if !c.hijacked || c.hijackDup {
		if c.nc != nil {
			c.nc.Close()
		} else if c.rawFd >= 0 {
			unix.Close(c.rawFd)
		}
	}
	c.rawFd = -1
	if !c.hijacked {
		c.setState(http.StateClosed) // hook: Server.ConnState (connstate.go)
		c.srv.forget(c)
	}
	c.nc = nil
	c.rc = nil
	c.req.reset()
	c.req.RemoteAddr, c.req.LocalAddr = nil, nil
	c.resp.reset(&c.req)
	c.srv.pool.Put(c)
}

// errInRaw would be a bug: serveRaw serves a request inside its read
// callback only when the body is already buffered, because a socket read
// there would wait on a lock the callback holds.
var errInRaw = errors.New("protocol: internal error: body read inside the read callback")

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
