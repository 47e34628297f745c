package protocol

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

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
// it could wait: a body that is not buffered yet, a response the socket
// does not take at once, a handler that calls WillBlock or Hijack, a
// timeout or Shutdown. If that happens while its handler runs, the
// goroutine running the loop stays with the connection and a new goroutine
// carries on with the loop's remaining events, so the other connections
// never wait for one that blocks. A connection that left never returns.
//
// Only the goroutine currently running the loop touches the events and
// removes connections; the accept loop adds them under mu.
type eventLoop struct {
	s    *Server
	epfd int
	file *os.File // epfd, registered with the runtime's poller for waiting
	rc   syscall.RawConn

	mu     sync.Mutex
	conns  []*conn // by descriptor
	closed bool    // the loop ended: add must not register more

	events [loopEvents]unix.EpollEvent
	batch  [loopEvents]*conn // the connections of events[next:ready]
	next   int
	ready  int

	sweepAt  time.Duration // next timeout sweep, on the server's clock
	waitDL   time.Duration // the deadline set on file, on the server's clock
	timedOut bool          // the last wait ended at the deadline: sweep
	polls    int           // pollReady calls in this wait
	waitFn   func(uintptr) bool

	// For the watchdog (Server.watchLoops): turns counts waits, parked
	// is set while the loop waits for the poller; seen and stalled belong
	// to the watchdog.
	turns   atomic.Uint64
	parked  atomic.Bool
	seen    uint64
	stalled bool
}

// startLoops makes one event loop per GOMAXPROCS; if epoll is not
// available, the server keeps a goroutine per connection.
func (s *Server) startLoops() {
	n := runtime.GOMAXPROCS(0)
	loops := make([]*eventLoop, 0, n)
	for range n {
		l, err := newEventLoop(s)
		if err != nil {
			s.logger.Warn("event loop unavailable; serving a goroutine per connection", "error", err)
			for _, l := range loops {
				l.file.Close()
			}
			return
		}
		loops = append(loops, l)
	}
	s.mu.Lock()
	s.evloops = loops
	s.mu.Unlock()
	for _, l := range loops {
		go l.run()
	}
	spareThreads(acceptorSpareThreads)
}

// acceptorSpareThreads is how many threads a Server with event loops makes
// up front: each raw acceptor sleeps in epoll_wait holding a thread, and the
// runtime then needs another to run the loops. Made at start, they are
// there (Go keeps idle threads) when a task limit would refuse them later,
// and a supervisor that counts a worker's threads at start counts them.
const acceptorSpareThreads = 2

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

func newEventLoop(s *Server) (*eventLoop, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("protocol: epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("protocol: epoll nonblocking: %w", err)
	}
	l := &eventLoop{s: s, epfd: fd, file: os.NewFile(uintptr(fd), "epoll")}
	rc, err := l.file.SyscallConn()
	if err != nil {
		l.file.Close()
		return nil, fmt.Errorf("protocol: epoll: %w", err)
	}
	l.rc = rc
	l.waitFn = l.pollReady
	l.sweepAt = s.coarseNow() + time.Second
	return l, nil
}

// add registers c, accepted raw, with the loop; it reports false when the
// loop has ended.
func (l *eventLoop) add(c *conn) bool {
	fd := c.rawFd
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
	c.loop = l
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.conns[fd] = nil
		c.loop = nil
		return false
	}
	return true
}

// remove takes c off the loop.
func (l *eventLoop) remove(c *conn) {
	if c.loop != l {
		return
	}
	l.mu.Lock()
	l.conns[c.rawFd] = nil
	l.mu.Unlock()
	// The descriptor is still open (attach replaces it only after this),
	// so this cannot hit a reused number.
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, c.rawFd, nil)
	c.loop = nil
}

// run is the loop. It returns when the loop ends, or when the calling
// goroutine stays with a connection that left the loop mid-request (a new
// goroutine then runs the loop).
func (l *eventLoop) run() {
	for {
		for l.next < l.ready {
			i := l.next
			l.next++
			c := l.batch[i]
			l.batch[i] = nil
			if c != nil && c.loop == l && l.serve(c) {
				return
			}
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
	if c.lingering {
		if c.discard() != lingerWait {
			l.remove(c)
			c.release()
		}
		return false
	}
	c.onLoop = true
	c.skipRead = false // an event: there is something to read
	c.loopRet = false
	// A loop's connections are raw sockets (see rawAcceptor) that only the
	// loop closes, so the descriptor needs no reference held.
	c.loopFn(uintptr(c.rawFd))
	c.onLoop = false
	done := c.loopRet
	if c.moved {
		c.moved = false
		act := actNext
		if done {
			act = c.act
		}
		c.serveFrom(act)
		return true
	}
	switch {
	case !done:
		// Wait for the next event.
	case c.act == actClose:
		l.remove(c)
		c.release()
	case c.act == actLinger:
		switch c.lingerOnLoop() {
		case lingerDone:
			l.remove(c)
			c.release()
		case lingerOff:
			l.remove(c)
			go c.handOff(actLinger)
		}
	default:
		l.remove(c)
		go c.handOff(c.act)
	}
	return false
}

// Outcomes of lingerOnLoop and discard.
const (
	lingerDone = iota // close the connection now
	lingerWait        // keep lingering on the loop
	lingerOff         // linger off the loop (the response did not fit the socket)
)

// lingerOnLoop is closeLinger for a connection on its loop: it sends the
// last response, half-closes, and discards what the client still sends
// until EOF, maxLinger bytes or lingerTimeout (the sweep), so that the close
// does not reset the connection before the client has read the response. A
// client that asked to close and has sent nothing more is closed at once:
// close(2) then sends a FIN, not a reset.
func (c *conn) lingerOnLoop() int {
	if c.werr != nil {
		return lingerDone
	}
	if p := sendNow(c.rawFd, c.wbuf); len(p) > 0 {
		c.wbuf = c.wbuf[:copy(c.wbuf, p)]
		return lingerOff
	}
	c.wbuf = c.wbuf[:0]
	unix.Shutdown(c.rawFd, unix.SHUT_WR)
	quiet := c.req.Close && !c.srv.draining.Load() && c.r == c.w
	c.lingered = 0
	st := c.discard()
	if st == lingerWait && quiet && c.lingered == 0 {
		return lingerDone
	}
	if st == lingerWait {
		c.lingering = true
		c.rdl = time.Since(c.srv.epoch) + lingerTimeout
		if l := c.loop; l != nil && c.rdl < l.sweepAt {
			l.sweepAt = c.rdl // sweep when the linger ends, not a second later
		}
	}
	return st
}

// discard reads and drops what a lingering connection's client sends.
func (c *conn) discard() int {
	for c.lingered < maxLinger {
		n, err := rawRead(c.rawFd, c.rbuf)
		switch {
		case n > 0:
			c.lingered += n
		case err == syscall.EAGAIN:
			return lingerWait
		case err == syscall.EINTR:
		default:
			return lingerDone // EOF, or the connection broke
		}
	}
	return lingerDone
}

// handOff serves c, which left its loop, on the calling goroutine.
func (c *conn) handOff(act int) {
	c.attach()
	c.serveFrom(act)
}

// attach gives a connection accepted for an event loop the net.Conn that
// serving it off the loop needs. It takes over the socket (the raw
// descriptor is replaced by the net.Conn's), so c must be off its loop.
// On failure c.werr is set and serveFrom only releases c.
func (c *conn) attach() {
	if c.nc != nil || c.rawFd < 0 {
		return
	}
	f := os.NewFile(uintptr(c.rawFd), "")
	nc, err := net.FileConn(f) // a duplicate; f's descriptor closes below
	f.Close()
	c.rawFd = -1
	if err != nil {
		c.werr = fmt.Errorf("protocol: leaving the event loop: %w", err)
		c.srv.logger.Warn("connection lost leaving the event loop", "remote", c.req.RemoteAddr, "error", err)
		return
	}
	rc, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		nc.Close()
		c.werr = fmt.Errorf("protocol: leaving the event loop: %w", err)
		return
	}
	// Inside onReadable, the raw descriptor it was given is gone. The new
	// one is never used raw outside rc's callbacks: Close or Shutdown may
	// close nc at any time, and its number may then be reused at once by
	// any socket this process opens, which must never receive this
	// client's bytes. So onReadable stops using a raw descriptor (it
	// returns after this request), and every write goes through rc.
	c.fd = -1
	c.inRaw = false // the handler no longer runs in a loop's turn
	s := c.srv
	s.mu.Lock()
	c.nc, c.rc = nc, rc
	closed := s.closed
	s.mu.Unlock()
	if closed {
		nc.Close() // Close has passed over c while it had no net.Conn
	}
	if c.rdl != 0 {
		// The deadline the loop's sweep kept for it.
		nc.SetReadDeadline(s.epoch.Add(c.rdl))
	}
}

// leaveLoop moves c, which is being served on its loop, to the calling
// goroutine before it waits; the loop goes on in a new goroutine.
func (c *conn) leaveLoop() {
	l := c.loop
	if l == nil || !c.onLoop {
		return
	}
	l.remove(c)
	c.onLoop = false
	c.moved = true
	go l.run()
	c.attach()
}

// sweep hands the connections whose read deadline has passed to goroutines
// of their own, where the deadline takes effect (408 or close); under
// Shutdown it hands over all of them and ends the loop, reporting true.
func (l *eventLoop) sweep() bool {
	now := time.Since(l.s.epoch)
	l.sweepAt = now + time.Second
	draining := l.s.draining.Load()
	var out []*conn
	l.mu.Lock()
	for _, c := range l.conns {
		if c != nil && (draining || c.rdl != 0 && c.rdl <= now) {
			out = append(out, c)
		}
	}
	if draining {
		l.closed = true
	}
	l.mu.Unlock()
	for _, c := range out {
		l.remove(c)
		switch {
		case c.lingering && !draining:
			c.release() // its linger is over
		case c.lingering:
			go c.handOff(actLinger)
		default:
			go c.handOff(actNext)
		}
	}
	if draining {
		// Events still queued belong to connections that just left.
		l.next, l.ready = 0, 0
		clear(l.batch[:])
		l.file.Close()
	}
	return draining
}

// wait fetches the next events, waiting on the runtime's poller (not in
// the kernel) when there are none, and at most until the next sweep.
func (l *eventLoop) wait() {
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
		// of connections that left the loop get their turn.
		runtime.Gosched()
	}
	l.resolve()
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
		l.next, l.ready = 0, int(r)
		if e != 0 {
			l.ready = 0
		}
		return l.ready > 0
	}
}

// resolve looks up the connections of the events just fetched.
func (l *eventLoop) resolve() {
	l.mu.Lock()
	for i := range l.ready {
		if fd := int(l.events[i].Fd); fd < len(l.conns) {
			l.batch[i] = l.conns[fd]
		}
	}
	l.mu.Unlock()
}

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

// wakeLoops makes every loop sweep now; Shutdown and Close call it, with
// s.mu held, after setting draining.
func (s *Server) wakeLoops() {
	for _, l := range s.evloops {
		l.file.SetReadDeadline(time.Unix(1, 0))
	}
}

// rawAcceptor accepts sockets for the event loops without giving them a
// net.Conn. Every worker process shares the listening socket, so it must
// not wake them all for each connection (the thundering herd: N-1 of them
// would call accept4 for nothing). The acceptor therefore sleeps in
// epoll_wait(2) itself, in the kernel, on an epoll instance of its own that
// holds the listener with EPOLLEXCLUSIVE and an eventfd for stop: the
// kernel wakes one such waiter per connection. (EPOLLEXCLUSIVE only counts
// a thread waiting in epoll_wait on that very instance; an instance nested
// in the runtime's poller, as a RawConn would be, is woken with the rest.)
// The waiting goroutine holds an OS thread while it sleeps; that is one
// thread per Serve call.
//
// The kernel wakes the waiter that registered first, so after each accept
// the acceptor registers the listener again, which puts it last: waiting
// acceptors take connections in turn, and the workers' shares stay even.
type rawAcceptor struct {
	s     *Server
	lrc   syscall.RawConn // the listener's, for its descriptor
	laddr net.Addr
	ep    int // epoll: the listener and wakefd
	wake  int // eventfd, readable once stop was called
	lev   unix.EpollEvent

	events  [2]unix.EpollEvent
	stopped bool // stop was seen: accept returns errWoken from now on
	fd      int  // what the last accept4 returned
	sa      unix.Sockaddr
	err     error
	acc     func(uintptr) // accept4 on the listener, made once
}

// acceptorRecheck is how often, in milliseconds, a waiting acceptor tries
// accept4 without having been woken (see accept).
const acceptorRecheck = 250

// errWoken is accept's answer once wake was called.
var errWoken = errors.New("protocol: acceptor stopped")

// newRawAcceptor returns nil when ln is not a socket the acceptor can watch;
// Serve then uses ln.Accept.
func newRawAcceptor(s *Server, ln net.Listener) *rawAcceptor {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return nil
	}
	lrc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	lfd := -1
	if lrc.Control(func(fd uintptr) { lfd = int(fd) }) != nil {
		return nil
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(ep)
		return nil
	}
	a := &rawAcceptor{s: s, lrc: lrc, laddr: ln.Addr(), ep: ep, wake: wake}
	// Level-triggered: a connection still queued after an accept wakes a
	// waiter again.
	a.lev = unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: int32(lfd)}
	wev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}
	if unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &wev) != nil {
		a.close()
		return nil
	}
	if unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, lfd, &a.lev) != nil {
		// EPOLLEXCLUSIVE needs Linux 4.5: without it, every worker wakes.
		a.lev.Events = unix.EPOLLIN
		if unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, lfd, &a.lev) != nil {
			a.close()
			return nil
		}
	}
	a.acc = func(lfd uintptr) {
		// Held from accept4 until Serve has counted the connection; see
		// Shutdown. It accepts even once the server is done: a waiter the
		// kernel woke for a connection must take it, since with
		// EPOLLEXCLUSIVE no other worker was woken for it (it would wait
		// in the queue until the next connection arrives).
		s.acceptMu.RLock()
		for {
			a.fd, a.sa, a.err = unix.Accept4(int(lfd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			if a.err != unix.EINTR && a.err != unix.ECONNABORTED {
				break
			}
		}
		if a.err != nil {
			s.acceptMu.RUnlock()
			return
		}
		// To the back of the listener's queue of waiters (see rawAcceptor).
		if a.lev.Events&unix.EPOLLEXCLUSIVE != 0 {
			unix.EpollCtl(a.ep, unix.EPOLL_CTL_DEL, int(lfd), nil)
			unix.EpollCtl(a.ep, unix.EPOLL_CTL_ADD, int(lfd), &a.lev)
		}
	}
	return a
}

// accept returns the next connection, as a pooled conn holding the raw
// socket. It waits in epoll_wait, which blocks the calling goroutine's
// thread.
func (a *rawAcceptor) accept() (*conn, error) {
	for {
		if a.stopped {
			return nil, errWoken
		}
		n, err := unix.EpollWait(a.ep, a.events[:], acceptorRecheck)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, os.NewSyscallError("epoll_wait", err)
		}
		// A wake-up given to another waiter that did not take its
		// connection (seen when a worker shuts down) would strand that
		// connection until the next one arrives: every acceptorRecheck an
		// idle acceptor looks at the queue itself.
		ready := n == 0
		for _, ev := range a.events[:n] {
			if int(ev.Fd) == a.wake {
				a.stopped = true // after this accept, if any
			} else {
				ready = true
			}
		}
		if !ready {
			return nil, errWoken
		}
		// Control holds the listener open while accept4 runs, so a
		// concurrent Close cannot free its number.
		if err := a.lrc.Control(a.acc); err != nil {
			return nil, err // the listener was closed
		}
		if a.err == unix.EAGAIN {
			if n > 0 {
				a.s.acceptMisses.Add(1) // woken for nothing: another process took it
			}
			continue
		}
		if a.err != nil {
			if errno, ok := a.err.(syscall.Errno); ok {
				return nil, os.NewSyscallError("accept4", errno)
			}
			return nil, a.err // closed
		}
		break
	}
	network := a.laddr.Network()
	if network != "unix" {
		tcpOptions(a.fd)
	}
	laddr := a.laddr
	if lsa, err := unix.Getsockname(a.fd); err == nil {
		laddr = sockaddrAddr(lsa, network)
	}
	c := a.s.pool.Get().(*conn)
	c.initRaw(a.fd, sockaddrAddr(a.sa, network), laddr)
	return c, nil
}

// stop makes a waiting accept return, now and for good; Server.stop calls
// it, with s.mu held.
func (a *rawAcceptor) stop() {
	var one = [8]byte{1}
	unix.Write(a.wake, one[:])
}

// close releases the acceptor; Serve calls it when accept no longer runs.
func (a *rawAcceptor) close() {
	if a != nil {
		unix.Close(a.ep)
		unix.Close(a.wake)
	}
}

// tcpOptions gives an accepted TCP socket the options Go's Accept would:
// no Nagle delay (a response's last partial segment must not wait for the
// client's delayed ACK) and keep-alive probes after 15 s idle.
func tcpOptions(fd int) {
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 15)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 15)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 9)
}
