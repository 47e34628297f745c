package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/forkd/forkd/protocol/internal/wire"
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
	stateIdle   // waiting for its next request
	stateFresh  // waiting for its first request: Shutdown leaves its deadline
)

// conn is one client connection: the HTTP exchange (its buffers, the
// Request, ResponseWriter and body reader, serveRequest) over its transport
// (c.t; see transport), reused from request to request and from connection
// to connection.
type conn struct {
	srv    *Server
	t      transport // &lt or &nt
	rbuf   []byte    // read buffer; unread bytes are rbuf[r:w]
	r, w   int
	hdrEnd int // end of the current request head: body reads refill behind it
	scan   int // where the search for the end of the head resumes
	wbuf   []byte
	// The write in progress (send): what is left of its two parts, and the
	// error that stopped it.
	wa, wb  []byte
	wfErr   error
	wmore   int // MSG_MORE while a connection's last response goes (closeNow), else 0
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
	// parking: the net.Conn's read deadline is parkDelay away, and rdl is
	// the real one, which the loop keeps if the connection goes back to
	// one when it strikes (backToLoop).
	parking bool
	proxy   bool // a PROXY header must come first (proxyconn.go)
	// home is the event loop the connection was last on, or nil: the
	// one SocketWatcher offers its handler.
	home *eventLoop
	// trusted is the listener's ListenOptions.Trusted, against which the
	// client address is judged again when a PROXY header names it
	// (setClient).
	trusted []netip.Prefix
	h2      bool // the first bytes may hand it to HTTP/2 (handoff.go)
	// susp is the request suspended on the loop (Suspend), and start when
	// serveRequest began it, for what follows its handler.
	susp     *Suspended
	start    time.Time
	resuming bool // runResumed runs the rest of the request's handler
	// rejoinLoop: the handler asked that the connection, held once it
	// left its loop, go back to it as soon as its request is done
	// (ResponseWriter.ReturnToLoop, rejoin).
	rejoinLoop bool

	// The two transports, kept with the conn so that a pooled conn brings
	// them along; c.t points at the one in use.
	lt loopTransport
	nt netTransport

	hooks connHooks // hook: net/http-style ConnState, contexts, deadlines (connstate.go)
}

func newConn(s *Server) *conn {
	c := &conn{srv: s} // buffers come with the first bytes (buffers, takeBuffers)
	c.body.c = c
	c.resp.c = c
	c.writeFn = c.onWritable
	c.lt.c, c.nt.c = c, c
	c.lt.reset()
	c.nt.reset()
	c.nt.readFn = c.nt.onReadable
	c.req.Body = &c.body
	return c
}

// init prepares a pooled conn for nc.
func (c *conn) init(nc net.Conn) {
	c.reset()
	c.buffers()
	c.nt.init(nc)
	c.t = &c.nt
	c.req.RemoteAddr = nc.RemoteAddr()
	c.req.LocalAddr = nc.LocalAddr()
}

// initRaw prepares a pooled conn for a socket accepted for an event loop;
// it gets a net.Conn (attach) only if it leaves the loop.
func (c *conn) initRaw(fd int, remote, local net.Addr) {
	c.reset()
	c.lt.fd = fd
	c.t = &c.lt
	c.req.RemoteAddr = remote
	c.req.LocalAddr = local
}

// buffers gives c read and write buffers if it has none: a connection
// accepted for an event loop has none until its first bytes arrive, nor
// while it waits on the loop for its next request (giveBuffers).
func (c *conn) buffers() {
	if c.rbuf == nil {
		c.rbuf = newBuffer()
	}
	if c.wbuf == nil {
		c.wbuf = newBuffer()[:0]
	}
}

// bufPool holds buffers of connections that went back to a loop from a
// goroutine (backToLoop), which may not use a loop's free list.
var bufPool sync.Pool

// A buffer serves as a read or a write buffer alike.
var _ = [1]struct{}{}[readBufferSize-writeBufferSize]

func newBuffer() []byte {
	if b, ok := bufPool.Get().(*[readBufferSize]byte); ok {
		return b[:]
	}
	return make([]byte, readBufferSize)
}

// dropBuffers gives c's buffers to bufPool; c waits for its next request
// with nothing buffered, and its Request no longer aliases them.
func (c *conn) dropBuffers() {
	for _, b := range [2][]byte{c.rbuf, c.wbuf[:cap(c.wbuf)]} {
		if len(b) == readBufferSize {
			bufPool.Put((*[readBufferSize]byte)(b))
		}
	}
	c.rbuf, c.wbuf = nil, nil
	c.r, c.w, c.scan, c.hdrEnd = 0, 0, 0, 0
	c.req.reset()
}

// reset clears what the last connection left in a pooled conn.
func (c *conn) reset() {
	c.t = nil
	c.lt.reset()
	c.nt.reset()
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
	c.parking = false
	c.proxy = false
	c.trusted = nil
	c.hijacked = false
	c.resp.hijacked = false
	c.req.h2 = false
	c.state.Store(stateActive)
}

// Actions that serveRequest and turn hand back: what happens to the
// connection next.
const (
	actNext    = iota // keep the connection for the next request
	actClose          // close it now (silently, or it was hijacked)
	actLinger         // lingering close after the last response
	actOutside        // turn: serve this request outside the turn (its body may wait)
	actWait           // turn: wait until the socket is readable
	actPark           // idle past parkDelay on a net.Conn: back to a loop (backToLoop)
	actSuspend        // a loop turn: the request is suspended (Suspend) until Resume
)

// parkDelay is how long a connection served on a goroutine (its handler
// is not LoopSafe, or it left its loop) waits for its next request before
// it goes back to waiting on an event loop, without a goroutine or
// buffers. Going back and leaving again costs a few system calls and a
// goroutine; a client that keeps the connection busy never pays them.
const parkDelay = 50 * time.Millisecond

// stWait is readHeadNow's answer when it must wait for the socket to
// become readable.
const stWait = -2

// serve runs a connection accepted as a net.Conn.
func (c *conn) serve() { c.serveNet(&c.nt, actNext) }

// serveNet serves c over the net.Conn transport t, on the calling
// goroutine, for the rest of its life: read a head, call the handler,
// finish the response, decide whether the connection stays open; repeat.
// act is how its last request ended (event loops hand connections over
// with it).
func (c *conn) serveNet(t *netTransport, act int) {
	onLoop := false
	defer func() {
		if !onLoop {
			c.release()
		}
	}()
	if t.raw >= 0 && (act == actClose || act == actLinger && c.closeNow(t.drained)) {
		return // held (leaveLoop) and done: release closes the socket
	}
	if act == actNext && c.rejoinLoop && t.raw >= 0 && c.r == c.w && c.flush() == nil && t.raw >= 0 {
		// (A flush the socket did not take at once made the net.Conn.)
		c.rejoinLoop = false
		if onLoop = c.rejoin(t); onLoop {
			return // the loop has it: this goroutine ends
		}
		t = c.t.(*netTransport)
	}
	c.rejoinLoop = false
	t.unhold()
	if t.nc == nil {
		return // attach failed (werr says why); release closes the socket
	}
	c.buffers() // it may have waited on a loop without them
	switch act {
	case actWait:
		act = actNext
	case actOutside:
		act = c.serveRequest(0)
	}
	for {
		for act == actNext {
			act = t.next(c)
		}
		if act != actPark {
			break
		}
		if onLoop = c.backToLoop(t); onLoop {
			return // the loop has it: this goroutine ends
		}
		t, act = c.t.(*netTransport), actNext
		c.buffers()
	}
	if act == actLinger && !c.closeNow(t.drained) {
		t.closeLinger(c.rbuf)
	}
}

// closeNow sends the rest of the last response of c, which closes after
// it, and reports whether the connection may be closed now: the send
// failed, or it closes quietly (closesQuietly); else it lingers. Either
// way a FIN follows at once, from close(2) or the linger's half-close, so
// the response goes with MSG_MORE: the kernel holds its last segment back
// for the FIN, which goes in it, one segment less each way for each
// connection (TestLastResponseCarriesFIN).
func (c *conn) closeNow(drained bool) bool {
	c.wmore = unix.MSG_MORE
	err := c.flush()
	c.wmore = 0
	return err != nil || c.closesQuietly(drained)
}

// closesQuietly reports whether c, closing after its last response, needs
// no lingering close: the client asked to close, its whole request has
// been read and nothing more is buffered, and the last read came back
// short (drained), so the socket had nothing more a moment ago. A client
// that asked to close sends nothing after its request, so close(2) alone
// ends the connection with a FIN, not a reset, and saves the half-close,
// a read and (off a loop) a wait per closed connection. A request whose
// body was not read to its end always lingers: its client may still be
// sending; so does an error answer (the request may have been refused
// before its body was looked at).
func (c *conn) closesQuietly(drained bool) bool {
	return drained && c.req.Close && c.body.done && c.resp.status < 400 && c.r == c.w && !c.srv.draining.Load()
}

// turn serves the requests whose bytes have arrived, reading with the
// transport's readNow, until it must wait for more (actWait) or the
// connection must go on outside the turn. A turn is a stretch in which the
// transport holds the descriptor at hand and nothing may wait on the
// socket: an event loop's handling of one event, or one call of a
// netTransport's read callback. A request is served inside it only when
// its body is already buffered (else actOutside). If the connection leaves
// its event loop in the handler (offLoop), the turn ends after that
// request: its transport is then a net.Conn, which the loop's goroutine
// serves from here on.
func (c *conn) turn() int {
	t := c.t
	for {
		st := c.readHeadNow()
		switch {
		case st == stWait:
			return actWait
		case st < 0:
			return actClose
		case st == 0 && !c.bodyBuffered():
			return actOutside
		}
		act := c.serveRequest(st)
		if act != actNext || c.t != t {
			return act
		}
	}
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
	c.rejoinLoop = false
	c.body.reset(&c.req)
	c.resp.reset(&c.req)
	c.req.Trailer.reset()

	if len(c.req.Target) == 1 && c.req.Target[0] == '*' {
		// OPTIONS * (the parser allows "*" for OPTIONS only) asks about
		// the server, not a resource: no site is asked (RFC 9110 §9.3.7).
		c.resp.hdr.Set("Allow", serverMethods)
	} else {
		ok := c.callHandler(nil)
		if c.susp != nil {
			if ok {
				c.start = start
				return actSuspend // Resume goes on from here (runResumed)
			}
			c.susp.queued = true // a panic after Suspend: its Resume does nothing
			c.susp = nil
		}
		return c.afterHandler(ok, start)
	}
	return c.afterHandler(true, start)
}

// afterHandler is what follows the handler of a request (ok: it returned
// normally): the response is finished, the request logged and counted, and
// it says what happens to the connection next, as serveRequest does.
func (c *conn) afterHandler(ok bool, start time.Time) int {
	if !ok {
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

// callHandler runs the handler, or fn (the rest of a suspended request's
// handler) when it is not nil, and reports whether it returned normally.
func (c *conn) callHandler(fn func()) (ok bool) {
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
	if fn != nil {
		fn()
		return true
	}
	if _, ok := c.t.(*loopTransport); ok && !c.srv.loopSafe {
		// A handler that may block runs off the loop (its connection
		// comes back once idle: backToLoop).
		c.offLoop()
	}
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
		n, err := c.t.(*netTransport).read(c.rbuf[c.w:])
		if n > 0 {
			c.got(n)
			continue
		}
		if err == nil {
			continue
		}
		if c.proxy {
			return c.proxyLost(err)
		}
		if c.r < c.w && isTimeout(err) {
			return http.StatusRequestTimeout
		}
		return -1
	}
}

// readHeadNow is readHead in a turn: it reads with readNow and returns
// stWait when the socket has nothing more to read.
func (c *conn) readHeadNow() int {
	for {
		if st, ok := c.parseHead(); ok {
			return st
		}
		if !c.prepareRead() {
			return -1
		}
		if c.r < c.w {
			// A head has begun but not ended: if the client closed
			// after it, only a read says so (one read(2) more per wait
			// for the rest of a head), and the connection closes now
			// instead of at read_header_timeout.
			c.t.readAgain()
		}
		n, err := c.t.readNow(c.rbuf[c.w:])
		switch {
		case n > 0:
			c.got(n)
		case err == errWait:
			return stWait
		case c.proxy:
			return c.proxyLost(err)
		default:
			return -1 // EOF or a broken connection
		}
	}
}

// parseHead parses the head at rbuf[r:w] once it is complete (or too
// large), reporting ok with readHead's result; !ok means more bytes are
// needed. Every head is parsed here, on every transport (readHead,
// readHeadNow): it is the one place where a connection's first bytes
// (c.first, before any head) are seen before the first head is parsed.
func (c *conn) parseHead() (st int, ok bool) {
	s := c.srv
	if c.proxy && c.r < c.w {
		if st, ok := c.takeProxyHeader(); st != 0 || !ok {
			return st, ok
		}
	}
	if c.h2 && c.r < c.w {
		if st, ok := c.takeH2(); st != 0 || !ok { // hook: HTTP/2 (handoff.go)
			return st, ok
		}
	}
	if c.r == c.w || !c.headComplete() && c.w-c.r < s.maxHead && wire.CanStartRequest(c.rbuf[c.r]) {
		// A head that has not ended waits for more bytes, unless its
		// first byte already refuses it (a TLS ClientHello sent to a
		// plain listener, say): parseRequest answers that with a 400 at
		// once, rather than after read_header_timeout.
		return 0, false
	}
	n, st := parseRequest(&c.req, c.rbuf[c.r:c.w], &s.lim)
	if st == 0 {
		c.r += n
		c.hdrEnd, c.scan = c.r, c.r
		c.partial = false
		if nc := c.netConn(); c.first && nc != nil && c.rawConn() == nil {
			// A layered connection (TLS over NewProxyListener's) may
			// learn its client's address in its first Read.
			c.setClient(nc.RemoteAddr())
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
		// request's first byte, once: later bytes do not move it.
		c.partial = true
		c.setReadDeadline(time.Now(), s.lim.ReadHeaderTimeout)
		if t, ok := c.t.(*loopTransport); ok && t.l != nil {
			t.l.sweepBy(c.rdl) // the 408 is due then, not at the next second's sweep
		}
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
//
// The drain grace is for connections that have carried a request: one that
// has not keeps its read-header timeout under Shutdown too. Its client has
// not been slow (its TLS handshake may just have ended, on a worker short of
// CPU), and cutting it would fail a request it has every right to send;
// Shutdown's own deadline (graceful_timeout) still bounds it.
func (c *conn) enterIdle() {
	s := c.srv
	if nt, ok := c.t.(*netTransport); ok {
		// A held connection (leaveLoop) waits for its next request on a
		// net.Conn, made before it turns idle, where Shutdown may set its
		// deadline (drainIdle).
		nt.unhold()
	}
	switch {
	case !s.draining.Load():
		d := s.lim.IdleTimeout
		if c.first {
			d = s.lim.ReadHeaderTimeout
		}
		if c.mayPark(d) {
			// Wait parkDelay here, then on a loop (backToLoop) until rdl.
			now := time.Now()
			c.t.setReadDeadline(now.Add(parkDelay))
			c.rdl = now.Sub(s.epoch) + d
			c.parking = true
		} else {
			c.extendReadDeadline(d)
		}
	case c.first:
		c.keepFirstDeadline()
	}
	st := int32(stateIdle)
	if c.first {
		st = stateFresh
	}
	c.state.Store(st)
	c.setState(http.StateIdle) // hook: Server.ConnState (connstate.go)
	if s.draining.Load() && !c.first {
		c.mu.Lock()
		c.t.setReadDeadline(time.Now().Add(s.idleGrace))
		c.mu.Unlock()
		c.rdl = 0
	}
}

// keepFirstDeadline sets the read deadline of c, which waits for its first
// request under Shutdown, to the read-header timeout it had (rdl: from
// accept, or from its last read), or a full one when that is unknown. It
// no longer parks: there are no loops to go back to.
func (c *conn) keepFirstDeadline() {
	c.parking = false // rdl is the real deadline (see becomeActive)
	if c.rdl == 0 {
		c.setReadDeadline(time.Now(), c.srv.lim.ReadHeaderTimeout)
		return
	}
	c.t.setReadDeadline(c.srv.epoch.Add(c.rdl))
}

// becomeActive marks the connection busy when a request's first bytes
// arrive. Under Shutdown it waits out any deadline change Shutdown is making
// and forgets the deadline it knew, so the next one is set in full.
func (c *conn) becomeActive() {
	if c.parking {
		// The net.Conn's deadline is parkDelay's: the next read that may
		// wait sets its own in full.
		c.parking = false
		c.rdl = 0
	}
	c.state.Store(stateActive)
	c.setState(http.StateActive) // hook: Server.ConnState (connstate.go)
	if c.srv.draining.Load() {
		c.mu.Lock()
		//lint:ignore SA2001 an intentional barrier: wait out Shutdown's deadline change
		c.mu.Unlock()
		c.rdl = 0
	}
}

// mayPark reports whether c, about to wait up to d for its next request,
// should go back to an event loop if none comes within parkDelay: it waits
// in the read callback of a socket's net.Conn (serveTurns), the server has
// loops, and no handler's deadline stands in for the server's.
func (c *conn) mayPark(d time.Duration) bool {
	nt, ok := c.t.(*netTransport)
	return ok && nt.fd >= 0 && d > 2*parkDelay && len(c.srv.evloops) > 0 && !c.userReadDeadline()
}

// drainIdle is Shutdown's call: an idle connection gets until dl for its
// next request, which will be answered with Connection: close. One that
// has not carried a request yet (stateFresh) keeps its read-header timeout
// (see enterIdle).
func (c *conn) drainIdle(dl time.Time) {
	c.mu.Lock()
	if c.state.Load() == stateIdle {
		// (Connections still on an event loop have no deadline of their
		// own: the loop hands them over when it sees Shutdown.)
		c.t.setReadDeadline(dl)
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
	c.t.setReadDeadline(now.Add(d)) // on a loop, the sweep enforces c.rdl
	c.rdl = now.Sub(c.srv.epoch) + d
}

// extendWriteDeadline is extendReadDeadline for writes and WriteTimeout.
// Only a netTransport waits for writes; on a loop there is nothing to do.
func (c *conn) extendWriteDeadline() {
	if c.userWriteDeadline() { // hook: http.ResponseController's deadline instead (connstate.go)
		return
	}
	nt, ok := c.t.(*netTransport)
	if !ok {
		return
	}
	d := c.srv.lim.WriteTimeout
	now := c.srv.coarseNow()
	if left := c.wdl - now; c.wdl != 0 && left >= d*3/4+time.Second && left <= d {
		return
	}
	t := time.Now()
	nt.setWriteDeadline(t.Add(d))
	c.wdl = t.Sub(c.srv.epoch) + d
}

// fill reads more body bytes into the buffer behind the request head.
func (c *conn) fill() error {
	t, err := c.waiting()
	if err != nil {
		return err
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
		n, err := t.read(c.rbuf[c.w:])
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
	t, err := c.waiting()
	if err != nil {
		return 0, err
	}
	if err := c.flushBeforeRead(); err != nil {
		return 0, err
	}
	for {
		c.extendReadDeadline(c.srv.lim.IdleTimeout)
		n, err := t.read(p)
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// waiting returns the transport for a read that may wait: a body read,
// which never happens in a turn (turn serves a request inside only when
// its body is buffered).
func (c *conn) waiting() (*netTransport, error) {
	t, ok := c.t.(*netTransport)
	if !ok || t.fd >= 0 {
		return nil, errInTurn
	}
	return t, nil
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
	err := c.send(c.wbuf, p)
	c.wbuf = c.wbuf[:0]
	return err
}

// flush sends the write buffer.
func (c *conn) flush() error {
	if c.werr != nil {
		return c.werr
	}
	if len(c.wbuf) == 0 {
		return nil
	}
	err := c.send(c.wbuf, nil)
	c.wbuf = c.wbuf[:0]
	return err
}

// send sends a and then b (one writev(2) where it can). In a turn it tries
// at once: the socket is nonblocking, so that cannot block, and needs
// neither the scheduler's syscall bookkeeping nor a write deadline. What
// the socket does not take waits for it, off the event loop. WriteTimeout
// bounds the time without progress, like nginx's send_timeout, not the
// whole write: a client that reads a large response steadily gets all of
// it, one that stops reading is cut after WriteTimeout. The error is
// sticky (c.werr).
func (c *conn) send(a, b []byte) error {
	c.wa, c.wb, c.wfErr = a, b, nil
	var err error
	if !c.t.writeNow(c.writeFn) {
		var t *netTransport
		if t, err = c.offLoop(); err == nil {
			c.extendWriteDeadline()
			var polled bool
			if polled, err = t.waitWrite(c.writeFn); !polled {
				err = c.writeChunks(t.nc, c.wa, c.wb)
			}
		}
	}
	if err == nil {
		err = c.wfErr
	}
	c.wa, c.wb, c.wfErr = nil, nil, nil
	if err != nil {
		c.werr = err
	}
	return err
}

// onWritable is send's step (writeNow, RawConn.Write): it writes until the
// socket is full (false: wait for the poller, with the deadline moved on
// if anything went) or everything went or failed (true).
func (c *conn) onWritable(fd uintptr) bool {
	progressed := false
	for len(c.wa)+len(c.wb) > 0 {
		var n int
		var err error
		if len(c.wb) == 0 {
			n, err = rawSend(int(fd), c.wa, c.wmore)
		} else {
			n, err = rawWritev(int(fd), &c.iov, c.wa, c.wb)
		}
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

// writeChunks is send for connections that are not sockets: the deadline
// moves on before each chunk, so it bounds the time per chunk.
func (c *conn) writeChunks(nc net.Conn, a, b []byte) error {
	const chunk = 64 << 10
	for _, p := range [2][]byte{a, b} {
		for len(p) > 0 {
			n := min(len(p), chunk)
			c.extendWriteDeadline()
			if _, err := nc.Write(p[:n]); err != nil {
				return err
			}
			p = p[n:]
		}
	}
	return nil
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

// hijack hands the connection to the handler (see netTransport.hijack).
func (c *conn) hijack() (net.Conn, *bufio.ReadWriter, error) {
	if err := c.flush(); err != nil {
		return nil, nil, err
	}
	t, err := c.offLoop() // the handler goes on with the connection as it likes
	if err != nil {
		return nil, nil, err
	}
	if c.rdl == 0 && t.nc != nil {
		// Not parkDelay's deadline (see becomeActive): the idle timeout's.
		t.nc.SetReadDeadline(time.Now().Add(c.srv.lim.IdleTimeout))
	}
	nc, rest, err := c.detach(t)
	if err != nil {
		return nil, nil, err
	}
	var r io.Reader = nc
	if len(rest) > 0 {
		r = io.MultiReader(bytes.NewReader(rest), nc)
	}
	return nc, bufio.NewReadWriter(hijackReader(r, len(rest)), bufio.NewWriter(nc)), nil // hook: buffered bytes visible, as net/http's (connstate.go)
}

// detach takes the connection's net.Conn out of t, which has left its loop,
// for whoever takes it over whole (a handler's Hijack, HTTP/2's HandOff):
// the server forgets c, and rest is a copy of what was read but not parsed.
func (c *conn) detach(t *netTransport) (nc net.Conn, rest []byte, err error) {
	nc, err = t.hijack()
	if err != nil {
		return nil, nil, err
	}
	c.hijacked = true
	c.resp.hijacked = true
	rest = bytes.Clone(c.rbuf[c.r:c.w])
	c.r = c.w
	c.srv.forget(c)
	c.setState(http.StateHijacked) // hook: Server.ConnState (connstate.go)
	return nc, rest, nil
}

// release closes the connection (unless it was handed over whole by
// hijack) and pools c.
func (c *conn) release() {
	c.t.close()
	if !c.hijacked {
		c.setState(http.StateClosed) // hook: Server.ConnState (connstate.go)
		c.srv.forget(c)
	}
	c.t = nil
	c.home = nil
	c.lt.reset()
	c.nt.reset()
	c.req.reset()
	c.req.RemoteAddr, c.req.LocalAddr = nil, nil
	c.req.TrustedPeer = false
	c.resp.reset(&c.req)
	s := c.srv
	s.pool.Put(c)
	if s.released != nil {
		s.released()
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
