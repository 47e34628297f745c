package protocol

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/forkd/forkd/protocol/internal/epoll"
	"golang.org/x/sys/unix"
)

// LoopSafe is implemented by handlers that may run on the Server's event
// loops: their Serve waits for nothing but this connection's ResponseWriter
// (no upstream I/O, sleeps, or locks held across such waits) unless it first
// calls ResponseWriter.WillBlock. A Server whose Handler reports LoopSafe
// serves its sockets from one event loop per GOMAXPROCS, like nginx's
// workers; any other Handler gets a goroutine per connection.
type LoopSafe interface {
	LoopSafe() bool
}

// Nonblocking returns h marked LoopSafe: its requests are served inline on
// the event loops. Use it only for handlers that wait for nothing but the
// connection, or that call ResponseWriter.WillBlock before they do.
func Nonblocking(h Handler) Handler { return nonblocking{h} }

type nonblocking struct{ Handler }

func (nonblocking) LoopSafe() bool { return true }

// Compressible reports whether the handler it marks is Compressible.
func (n nonblocking) Compressible() bool {
	c, ok := n.Handler.(Compressible)
	return ok && c.Compressible()
}

// Compressible is implemented by a handler of an embedding program that
// lets the compress block of the site it serves compress its responses
// (Compressed marks one). A handler without it, the default, has its
// responses sent as it wrote them: it may compress for itself.
type Compressible interface {
	Compressible() bool
}

// Compressed marks h Compressible; it stays LoopSafe if it was.
func Compressed(h Handler) Handler { return compressed{h} }

type compressed struct{ Handler }

func (compressed) Compressible() bool { return true }

func (c compressed) LoopSafe() bool {
	ls, ok := c.Handler.(LoopSafe)
	return ok && ls.LoopSafe()
}

// loopEvents is how many readiness events one epoll_wait returns at most.
const loopEvents = 512

// eventLoop serves idle and ready keep-alive connections without a
// goroutine each. It owns an epoll instance of its own, in which every
// connection it holds is registered edge-triggered, and handles the ready
// ones in the order the kernel reports them: each request is served inline,
// from its first byte to its response, as in the raw loop. The runtime's
// poller reports connections to the goroutines that wait on them in reverse
// order, which widens the latency spread under load; a loop keeps it FIFO.
//
// A connection leaves the loop for a goroutine of its own whenever serving
// it could wait: a handler that is not LoopSafe, a body that is not
// buffered yet, a response the socket does not take at once, a handler
// that calls WillBlock or Hijack, a timeout or Shutdown. If that happens
// while its handler runs, the goroutine running the loop stays with the
// connection and a new goroutine carries on with the loop's remaining
// events, so the other connections never wait for one that blocks. A
// connection that left comes back once it is idle (conn.backToLoop).
//
// Only the goroutine currently running the loop touches the events and
// removes connections; connections coming back add them under mu, and
// Serve adds and removes listeners under mu.
type eventLoop struct {
	s *Server
	// direct: the loop waits in epoll_wait itself, in the kernel (see
	// startLoops); else in the runtime's poller, in which epfd is
	// registered through file and rc.
	direct bool
	epfd   int
	file   *os.File
	rc     syscall.RawConn
	// wake is an eventfd in the epoll: Shutdown, Close and a connection
	// slot freed for a paused listener write to it (Server.wakeLoops). The
	// loop closes it, under s.mu, when it ends.
	wake int

	mu      sync.Mutex
	conns   []*conn       // by descriptor
	closed  bool          // the loop ended: add must not register more
	accepts []*loopAccept // the listeners it accepts on (accept.go)
	paused  atomic.Int32  // how many of them are paused
	pend    []*loopAccept // listeners reported ready, to accept on
	rsa     unix.RawSockaddrAny

	// Other sockets the loop watches for their owners (SocketWatcher,
	// sockwatch.go): by key, which their events carry; freeWatch lists the
	// free keys, firing the watches that resolve found ready. watched and
	// freeWatch change under mu.
	watched   []*sockWatch
	freeWatch []int
	firing    []*sockWatch
	// resumed are the suspended requests resumed (Suspended.Resume), in
	// order, to serve after the current batch; only the loop's goroutine
	// touches it.
	resumed []*Suspended

	events [loopEvents]unix.EpollEvent
	batch  [loopEvents]*conn // the connections of events[next:ready]
	bufs   [][]byte          // free buffers (takeBuffers, giveBuffers)
	next   int
	ready  int

	sweepAt  time.Duration // next timeout sweep, on the server's clock
	waitDL   time.Duration // the deadline set on file, on the server's clock
	timedOut bool          // the last wait ended at the deadline: sweep
	polls    int           // pollReady calls in this wait
	failed   bool          // the last epoll_wait failed: resolve completes no wait (Looked)
	yielded  time.Duration // a direct loop's last yield, on the server's clock
	waitFn   func(uintptr) bool

	// For the watchdog (Server.watchLoops): turns counts waits, parked
	// is set while the loop waits for the poller; seen and stalled belong
	// to the watchdog. turns is also the loop's wait epoch (Epoch): it is
	// bumped before each wait fetches events (epoll_wait), and looked
	// (Looked) is set to it once every event that wait fetched has been
	// dispatched, unless the wait filled the event buffer (see resolve).
	turns   atomic.Uint64
	looked  atomic.Uint64
	parked  atomic.Bool
	seen    uint64
	stalled bool
}

// startLoops makes the event loops, as many and waiting as loopLayout says
// for GOMAXPROCS (see procs.go); if epoll is not available, the server
// keeps a goroutine per connection.
func (s *Server) startLoops() {
	n, direct := loopLayout(runtime.GOMAXPROCS(0))
	loops := make([]*eventLoop, 0, n)
	for range n {
		l, err := newEventLoop(s, direct)
		if err != nil {
			s.logger.Warn("event loop unavailable; serving a goroutine per connection", "error", err)
			for _, l := range loops {
				l.closeFds()
			}
			return
		}
		loops = append(loops, l)
	}
	s.rotate = s.Processes != 1 || n > 1
	s.mu.Lock()
	s.evloops = loops
	s.mu.Unlock()
	for _, l := range loops {
		go l.run()
	}
	spareThreads(loopSpareThreads)
}

// loopSpareThreads is how many threads a Server with event loops makes up
// front: each direct loop sleeps in epoll_wait holding a thread, and the
// runtime then needs others for everything else. Made at start, they are
// there (Go keeps idle threads) when a task limit would refuse them later,
// and a supervisor that counts a worker's threads at start counts them.
const loopSpareThreads = 2

// spareThreads makes the runtime start n threads and keep them idle.
func spareThreads(n int) {
	var ready, release sync.WaitGroup
	ready.Add(n)
	release.Add(1)
	for range n {
		go func() {
			runtime.LockOSThread() // a thread of its own until released
			ready.Done()
			release.Wait()
			runtime.UnlockOSThread()
		}()
	}
	ready.Wait()
	release.Done()
}

func newEventLoop(s *Server, direct bool) (*eventLoop, error) {
	l := &eventLoop{s: s, direct: direct, epfd: -1, wake: -1}
	var err error
	if direct {
		if l.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
			return nil, fmt.Errorf("protocol: epoll_create1: %w", err)
		}
	} else {
		if l.epfd, l.file, l.rc, err = epoll.New("epoll"); err != nil {
			return nil, fmt.Errorf("protocol: %w", err)
		}
		l.waitFn = l.pollReady
	}
	if l.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		l.closeFds()
		return nil, fmt.Errorf("protocol: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(l.wake), Pad: evWake}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, l.wake, &ev); err != nil {
		l.closeFds()
		return nil, fmt.Errorf("protocol: epoll_ctl: %w", err)
	}
	l.sweepAt = s.coarseNow() + time.Second
	return l, nil
}

// closeFds closes the epoll instance and the wake eventfd of a loop that
// never ran.
func (l *eventLoop) closeFds() {
	l.closeEpoll()
	if l.wake >= 0 {
		unix.Close(l.wake)
		l.wake = -1
	}
}

// closeEpoll closes the loop's epoll instance.
func (l *eventLoop) closeEpoll() {
	switch {
	case l.file != nil:
		l.file.Close()
	case l.epfd >= 0:
		unix.Close(l.epfd)
	}
	l.epfd = -1
}

// add registers c's socket with the loop; it reports false when the loop
// has ended.
func (l *eventLoop) add(t *loopTransport) bool {
	c, fd := t.c, t.fd
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	if fd >= len(l.conns) {
		n := make([]*conn, max(2*len(l.conns), fd+64))
		copy(n, l.conns)
		l.conns = n
	}
	l.conns[fd] = c
	t.l = l
	c.home = l
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
	if err := rawEpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.conns[fd] = nil
		t.l = nil
		return false
	}
	return true
}

// drop closes c, which is on the loop, and pools it.
func (l *eventLoop) drop(c *conn, t *loopTransport) {
	t.forget()
	c.release()
}

// run is the loop. It returns when the loop ends, or when the calling
// goroutine stays with a connection that left the loop mid-request (a new
// goroutine then runs the loop).
func (l *eventLoop) run() {
	for {
		for len(l.pend) > 0 {
			a := l.pend[len(l.pend)-1]
			l.pend = l.pend[:len(l.pend)-1]
			l.accept(a)
		}
		for l.next < l.ready {
			i := l.next
			l.next++
			c := l.batch[i]
			l.batch[i] = nil
			if c != nil && l.serve(c) {
				return
			}
		}
		for len(l.resumed) > 0 {
			r := l.resumed[0]
			n := copy(l.resumed, l.resumed[1:]) // keeps the array: no allocation per request
			l.resumed[n] = nil
			l.resumed = l.resumed[:n]
			if l.serveResumed(r) {
				return
			}
		}
		if l.paused.Load() > 0 {
			l.resumeAccepts()
		}
		if l.timedOut || l.s.coarseNow() >= l.sweepAt || l.s.draining.Load() {
			l.timedOut = false
			if l.sweep() {
				return
			}
		}
		l.wait()
	}
}

// serve handles the readiness of c, reporting whether the calling goroutine
// now belongs to c.
func (l *eventLoop) serve(c *conn) bool {
	t := &c.lt
	if t.lingering {
		if t.discard(c.rbuf) != lingerWait {
			l.drop(c, t)
		}
		return false
	}
	if c.susp != nil {
		// Its request is suspended: what the client sends meanwhile is
		// read once it is resumed (serveResumed reads without waiting
		// for another event).
		t.missed = true
		return false
	}
	l.takeBuffers(c)
	t.drained = false // an event: there is something to read
	return l.served(c, t, c.turn())
}

// served does what a turn of c on the loop ended with, act, reporting
// whether the calling goroutine now belongs to c (it left the loop in its
// turn).
func (l *eventLoop) served(c *conn, t *loopTransport, act int) bool {
	if c.t != t {
		// The connection left the loop in its turn (offLoop): a new
		// goroutine runs the loop, and this one stays with c.
		c.serveNet(c.t.(*netTransport), act)
		return true
	}
	switch act {
	case actWait:
		// Wait for the next event; between requests, without buffers.
		if c.r == c.w && len(c.wbuf) == 0 {
			l.giveBuffers(c)
		}
	case actSuspend:
		// Resume serves it on (serveResumed).
	case actClose:
		l.drop(c, t)
	case actLinger:
		switch t.linger(c) {
		case lingerDone:
			l.drop(c, t)
		case lingerOff:
			t.leave()
			go c.handOff(t, actLinger)
		}
	default: // actOutside
		t.leave()
		go c.handOff(t, act)
	}
	return false
}

// maxFreeBuffers bounds a loop's free buffers. A loop serves one
// connection at a time, so a few are enough to serve idle connections
// without allocating.
const maxFreeBuffers = 16

// takeBuffers gives c, about to be served on the loop, the read and write
// buffers it gave back when it went idle.
func (l *eventLoop) takeBuffers(c *conn) {
	if c.rbuf == nil {
		c.rbuf = l.buffer()
	}
	if c.wbuf == nil {
		c.wbuf = l.buffer()[:0]
	}
}

func (l *eventLoop) buffer() []byte {
	if n := len(l.bufs); n > 0 {
		b := l.bufs[n-1]
		l.bufs[n-1] = nil
		l.bufs = l.bufs[:n-1]
		return b
	}
	return newBuffer()
}

// giveBuffers takes the buffers of c, which waits for its next request
// with nothing buffered: an idle connection costs only its fixed state
// (like nginx's, whose idle keep-alive connections free their buffers).
func (l *eventLoop) giveBuffers(c *conn) {
	for _, b := range [2][]byte{c.rbuf, c.wbuf[:cap(c.wbuf)]} {
		switch {
		case len(b) != readBufferSize:
		case len(l.bufs) < maxFreeBuffers:
			l.bufs = append(l.bufs, b)
		default:
			bufPool.Put((*[readBufferSize]byte)(b))
		}
	}
	c.rbuf, c.wbuf = nil, nil
	c.r, c.w, c.scan, c.hdrEnd = 0, 0, 0, 0
	c.req.reset() // its fields alias the read buffer
}

// Outcomes of linger and discard.
const (
	lingerDone = iota // close the connection now
	lingerWait        // keep lingering on the loop
	lingerOff         // linger off the loop (the response did not fit the socket)
)

// linger is closeLinger for a connection on its loop: it sends the last
// response, half-closes, and discards what the client still sends until
// EOF, maxLinger bytes or lingerTimeout (the sweep), so that the close does
// not reset the connection before the client has read the response. A
// client that asked to close and has sent nothing more is closed at once:
// close(2) then sends a FIN, not a reset.
func (t *loopTransport) linger(c *conn) int {
	if c.werr != nil {
		return lingerDone
	}
	// Sent whole, the response is followed at once by a FIN (close(2)
	// or the half-close below), which goes in its last segment (MSG_MORE;
	// see closeNow).
	if p := sendNow(t.fd, c.wbuf, unix.MSG_MORE); len(p) > 0 {
		c.wbuf = c.wbuf[:copy(c.wbuf, p)]
		return lingerOff
	}
	c.wbuf = c.wbuf[:0]
	quiet := c.req.Close && !c.srv.draining.Load() && c.r == c.w
	t.lingered = 0
	if quiet {
		// Nothing more was sent: unless something is there now, close(2)
		// alone ends the connection with a FIN.
		if c.closesQuietly(t.drained) {
			return lingerDone
		}
		if st := t.discard(c.rbuf); st != lingerWait || t.lingered == 0 {
			return lingerDone
		}
	}
	unix.Shutdown(t.fd, unix.SHUT_WR)
	st := t.discard(c.rbuf)
	if st == lingerWait {
		t.lingering = true
		c.rdl = time.Since(c.srv.epoch) + lingerTimeout
		if l := t.l; l != nil {
			l.sweepBy(c.rdl) // sweep when the linger ends, not a second later
		}
	}
	return st
}

// discard reads and drops what a lingering connection's client sends.
func (t *loopTransport) discard(buf []byte) int {
	for t.lingered < maxLinger {
		n, err := rawRead(t.fd, buf)
		switch {
		case n > 0:
			t.lingered += n
		case err == syscall.EAGAIN:
			return lingerWait
		case err == syscall.EINTR:
		default:
			return lingerDone // EOF, or the connection broke
		}
	}
	return lingerDone
}

// handOff serves c, whose socket t has left its loop (or never joined
// one), on the calling goroutine.
func (c *conn) handOff(t *loopTransport, act int) {
	c.serveNet(t.attach(c), act)
}

// sweepTick is the granularity of the deadlines a loop's sweep enforces
// early, between its once-a-second rounds: a request head's (its 408) and
// a linger's end. Rounding them up to it bounds the extra sweeps to ten a
// second however many connections are due.
const sweepTick = 100 * time.Millisecond

// sweepBy makes the loop sweep no later than dl (on the server's clock),
// rounded up to sweepTick: a deadline that must not wait for the next
// round. Only the loop's goroutine calls it (in a turn).
func (l *eventLoop) sweepBy(dl time.Duration) {
	if dl = (dl + sweepTick - 1) / sweepTick * sweepTick; dl < l.sweepAt {
		l.sweepAt = dl
	}
}

// sweep hands the connections whose read deadline has passed to goroutines
// of their own, where the deadline takes effect (408 or close); under
// Shutdown it hands over all of them and ends the loop, reporting true.
// The next sweep is a second away, or sooner for a head or a linger due
// before then (sweepBy): the deadlines of idle connections may be a second
// late, a 408's only by sweepTick.
func (l *eventLoop) sweep() bool {
	now := time.Since(l.s.epoch)
	l.sweepAt = now + time.Second
	draining := l.s.draining.Load()
	var out, susp []*conn
	l.mu.Lock()
	for _, c := range l.conns {
		switch {
		case c == nil:
		case c.susp != nil:
			// Its owner answers for it (Suspend's wake), draining or not.
			susp = append(susp, c)
		case draining || c.rdl != 0 && c.rdl <= now:
			out = append(out, c)
		case c.rdl > now && (c.partial || c.lt.lingering):
			l.sweepBy(c.rdl)
		}
	}
	if draining {
		l.closed = true
	}
	l.mu.Unlock()
	for _, c := range susp {
		if s := c.susp; draining && !s.queued {
			s.wake(true) // its Resume goes to a goroutine: the loop has ended
		} else if !draining {
			l.sweepSuspended(s, now)
		}
	}
	if draining {
		// Resumed but not served yet (a wake above, or just before).
		for _, s := range l.resumed {
			go s.c.resumeOff(s)
		}
		clear(l.resumed)
		l.resumed = l.resumed[:0]
	}
	for _, c := range out {
		t := &c.lt
		switch {
		case t.lingering && !draining:
			l.drop(c, t) // its linger is over
		case t.lingering:
			t.leave()
			go c.handOff(t, actLinger)
		default:
			t.leave()
			go c.handOff(t, actNext)
		}
	}
	if draining {
		l.end()
	}
	return draining
}

// end closes the loop, which has stopped serving: its epoll instance (so
// that the kernel no longer picks it for a listener's wake-up), its
// references to the listeners, and its wake eventfd.
func (l *eventLoop) end() {
	// Events still queued belong to connections that just left.
	l.next, l.ready = 0, 0
	clear(l.batch[:])
	l.pend = l.pend[:0]
	l.mu.Lock() // l.closed is set: nothing else touches the epoll now
	l.closeEpoll()
	accepts := l.accepts
	l.accepts = nil
	for _, a := range accepts {
		l.unpause(a)
		a.gone = true
	}
	l.mu.Unlock()
	for _, a := range accepts {
		a.ll.release()
	}
	l.endWatches()
	if h := testHookLoopEnding.Load(); h != nil {
		(*h)(l.s)
	}
	// Server.wakeLoops writes to the eventfd under s.mu: a closed number
	// may be reused at once by the next socket the process opens, such as
	// another client's connection, which would then receive those eight
	// bytes.
	l.s.mu.Lock()
	unix.Close(l.wake)
	l.wake = -1
	l.s.mu.Unlock()
}

// testHookLoopEnding, when set by a test, runs when a loop has ended,
// before it closes its wake eventfd.
var testHookLoopEnding atomic.Pointer[func(*Server)]

// wait fetches the next events, waiting at most until the next sweep when
// there are none: in the kernel (direct) or on the runtime's poller.
func (l *eventLoop) wait() {
	if len(l.resumed) > 0 {
		// Requests resumed by the sweep (Suspend's wake): serve them
		// first, with whatever events are there already.
		l.turns.Add(1)
		l.pollReady(0)
		l.resolve()
		return
	}
	if l.direct {
		l.waitKernel()
		return
	}
	if l.waitDL != l.sweepAt {
		l.waitDL = l.sweepAt
		l.file.SetReadDeadline(l.s.epoch.Add(l.sweepAt))
	}
	if l.s.draining.Load() {
		return // Shutdown's wake-up may have come before the deadline above
	}
	// Read calls waitFn (epoll_wait without a timeout) before it parks:
	// events that are already there come without a wait.
	l.polls = 0
	l.turns.Add(1)
	l.parked.Store(true)
	err := l.rc.Read(l.waitFn)
	l.parked.Store(false)
	if err != nil {
		l.timedOut = true
		return
	}
	if l.polls == 1 {
		// A busy loop never parks: yield between batches, so that the
		// runtime sees it make progress (else sysmon preempts it, and
		// takes its P away in the middle of syscalls) and the goroutines
		// of connections that left the loop get their turn. Nor does
		// its deadline above strike: look at the clock here instead.
		if time.Since(l.s.epoch) >= l.sweepAt {
			l.timedOut = true
		}
		runtime.Gosched()
	}
	l.resolve()
}

// yieldEvery is how often a direct loop that never waits yields its P:
// under sysmon's 10 ms, after which it would preempt the loop with a
// signal. Each yield wakes a thread for the idle P (futex calls, and on a
// one-CPU share a context switch each way) and moves the loop to it: at
// 1 ms that was about half a futex call per churned connection.
const yieldEvery = 5 * time.Millisecond

// pollBatch is how many events a direct loop's last fetch must have brought
// for its next wait to look without a timeout first (pollReady): a loop
// that took that long over a batch likely finds the next one there
// already, and then fetches it without the runtime's system call
// bookkeeping. After a smaller batch it waits in the kernel at once: a look
// that finds nothing costs a system call (about 1 µs on a virtual machine)
// where the bookkeeping it would save costs a third of that, and with
// connections churning at well under one CPU's worth most looks found
// nothing (0.7 empty epoll_wait a connection, bench/README.md).
const pollBatch = 4

// waitKernel is wait for a direct loop: epoll_wait without a timeout first
// when the last batch was large (pollBatch), else at once, or if that
// found nothing, in the kernel until the next sweep. Its P stays with it
// meanwhile; the one left over runs the other goroutines (see startLoops).
func (l *eventLoop) waitKernel() {
	if l.s.draining.Load() {
		return
	}
	l.turns.Add(1)
	if l.ready >= pollBatch && l.pollReady(0) {
		// A busy loop yields now and then: else sysmon preempts it
		// after 10 ms, and may take its P away in the middle of a
		// batch. Not after every batch, as a loop in the poller does:
		// here a P is idle, and a yield wakes a thread for it, which
		// would take the loop's core for nothing.
		l.busy(time.Since(l.s.epoch))
		l.resolve()
		return
	}
	now := time.Since(l.s.epoch)
	left := l.sweepAt - now
	if left <= 0 {
		l.timedOut = true
		return
	}
	l.parked.Store(true)
	n, err := unix.EpollWait(l.epfd, l.events[:], int((left+time.Millisecond-1)/time.Millisecond))
	l.parked.Store(false)
	l.next, l.ready, l.failed = 0, max(n, 0), err != nil
	switch {
	case err == unix.EINTR:
	case err != nil || n == 0:
		l.timedOut = true
	default:
		// sysmon counts the loop's time from its last turn in the
		// scheduler, across waits in the kernel that it does not take
		// the P from (under 10 ms, a P idle): a loop whose waits end
		// soon must yield now and then too.
		l.busy(now)
		l.resolve()
	}
}

// busy yields a direct loop's P if it has not for yieldEvery (now is the
// time on the server's clock), and notes a sweep that is due.
func (l *eventLoop) busy(now time.Duration) {
	if now-l.yielded < yieldEvery {
		return
	}
	l.yielded = now
	if now >= l.sweepAt {
		l.timedOut = true // a busy loop's sweeps are on time too
	}
	runtime.Gosched()
}

// pollReady is epoll_wait without a timeout, made without the runtime's
// syscall bookkeeping; as a RawConn.Read callback it reports whether events
// came.
func (l *eventLoop) pollReady(uintptr) bool {
	l.polls++
	for {
		r, _, e := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(l.epfd),
			uintptr(unsafe.Pointer(&l.events[0])), loopEvents, 0, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		l.next, l.ready, l.failed = 0, int(r), e != 0
		if e != 0 {
			l.ready = 0
		}
		return l.ready > 0
	}
}

// resolve looks up the connections of the events just fetched, and the
// listeners to accept on.
func (l *eventLoop) resolve() {
	l.mu.Lock()
	for i := range l.ready {
		ev := &l.events[i]
		switch kind := uint32(ev.Pad); {
		case kind == evConn:
			if fd := int(ev.Fd); fd < len(l.conns) {
				l.batch[i] = l.conns[fd]
			}
		case kind == evSocket:
			if k := int(ev.Fd); k < len(l.watched) && l.watched[k] != nil {
				l.firing = append(l.firing, l.watched[k])
			}
		case kind == evWake:
			var b [8]byte
			unix.Read(l.wake, b[:]) // the loop looks at what changed on every turn
		default:
			if a := l.acceptFor(kind - evListener); a != nil {
				l.pend = append(l.pend, a)
			}
		}
	}
	l.mu.Unlock()
	if len(l.firing) > 0 {
		l.fireWatches()
	}
	if l.ready < loopEvents && !l.failed {
		// Every event of wait number turns is dispatched: the socket
		// watchers' now (fireWatches), the connections' and listeners'
		// in the batch to come. A wait that filled the buffer may have
		// left ready events in the kernel, which edge-triggered
		// registrations report only once: it completes nothing.
		l.looked.Store(l.turns.Load())
	}
}

// Epoch is the number of the loop's latest wait for events: each wait is
// numbered, in order, before it fetches them. Safe for concurrent use.
func (l *eventLoop) Epoch() uint64 { return l.turns.Load() }

// Looked is the number of the latest wait of the loop whose events have
// all been fetched and dispatched (the ready calls of its socket watchers
// have returned): an event of a watched socket that happened before that
// wait began has reached its watcher. 0 before any. Safe for concurrent
// use.
func (l *eventLoop) Looked() uint64 { return l.looked.Load() }

// watchLoops, called every second, warns about each event loop that has
// not finished a batch since the last call: a LoopSafe handler is blocking
// without WillBlock, and every other connection of its loop waits.
func (s *Server) watchLoops() {
	s.mu.Lock()
	loops := s.evloops
	s.mu.Unlock()
	for i, l := range loops {
		t := l.turns.Load()
		stuck := t == l.seen && !l.parked.Load()
		if stuck && !l.stalled {
			s.logger.Warn("event loop stalled for a second: a handler on it may be blocking the loop's other connections (a handler that waits must call ResponseWriter.WillBlock first), or the worker is starved of CPU",
				"loop", i)
		}
		l.stalled = stuck
		l.seen = t
	}
}

// wakeLoops makes every loop wake up and look at the server's state:
// Shutdown and Close call it after setting draining, and a connection that
// closes when a loop waits for a free connection slot. s.mu is held.
func (s *Server) wakeLoops() {
	one := [8]byte{1}
	for _, l := range s.evloops {
		if l.wake >= 0 {
			unix.Write(l.wake, one[:])
		}
	}
}
