package protocol

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Accepting on the event loops.
//
// Every worker process shares the listening sockets, so a new connection
// must not wake them all (the thundering herd: N-1 of them would call
// accept4 for nothing). Each event loop therefore holds every listener of
// its Server in its own epoll instance, with EPOLLEXCLUSIVE, next to its
// connections, and accepts there, the way an nginx worker does: the kernel
// wakes one waiting loop per connection, and the loop that accepted serves
// the connection, on its own thread, with no hand-off. EPOLLEXCLUSIVE only
// counts a thread that waits in epoll_wait on that very instance, so this
// needs loops that wait in the kernel (eventLoop.direct). A loop nested in
// the runtime's poller (GOMAXPROCS=1) is given its connections by Serve's
// own acceptor instead (serveAcceptor).
//
// The kernel wakes the waiter that registered first, so every rotateEvery
// accepts a loop registers the listener again, which puts it last: waiting
// loops take connections in turns of a few, and the workers' shares stay
// even. (Two epoll_ctl calls after every accept would be a third of a
// churning connection's system calls.) A process that is the listeners'
// only one (Server.Processes 1) with one loop has no one to take turns
// with, and does not rotate.
//
// A loop woken for a connection must take it: with EPOLLEXCLUSIVE no other
// waiter was woken for it, and it would wait in the queue until the next
// connection arrives. So a loop accepts whenever it sees its listener
// ready, even once the server is done, and a listener stays registered in
// a loop until that loop has ended (a loop that has ended waits no more,
// so the kernel no longer picks it).
//
// The loops accept on a duplicate of the net.Listener's descriptor (lfd).
// Each loop holding the listener, and Serve, hold a reference to it; the
// last one to let go closes lfd, so no loop ever calls accept4 on a number
// that may already belong to another socket. Serve closes a TCP
// net.Listener at once: the duplicate keeps the socket, and the runtime's
// poller, which watches the net.Listener's descriptor, would otherwise
// wake a thread in every process for every connection.

// loopListener is a listening socket its Server's event loops accept on.
type loopListener struct {
	s     *Server
	id    uint32 // the listener's epoll events carry it (evListener + id)
	lfd   int    // the loops' duplicate of the listening socket
	laddr net.Addr
	// fixedLocal: the listener is bound to one address, which is then
	// every accepted socket's local address (no getsockname(2)).
	fixedLocal bool
	proxy      ListenOptions
	base       context.Context
	// opts says whether accepted sockets inherit the listener's socket
	// options (tcpOptions): optsInherited, or how many accepted sockets
	// were found without them (see setOptions).
	opts atomic.Int32
	refs atomic.Int32 // Serve and each loop holding it; the last closes lfd
	// wake is serveAcceptor's eventfd (-1: none), written by Server.stop;
	// both under s.mu.
	wake int
	// failed carries an accept error that ends Serve (the listener is
	// unusable); buffered, the first one only.
	failed chan error
}

// Kinds of epoll events in an event loop (EpollEvent.Pad): a connection's
// socket (Fd), the loop's wake eventfd, a socket watched for another owner
// (evSocket, its key in Fd: sockwatch.go), or a listener (evListener + its
// id).
const (
	evConn = iota
	evWake
	evSocket
	evListener
)

// rotateEvery is how many connections a loop takes from a listener before
// it goes to the back of the listener's waiters.
const rotateEvery = 8

// Values of loopListener.opts besides counts below optsTries.
const (
	optsTries     = 16 // sockets without the options: set them on each
	optsInherited = -1 // set on the listener, inherited by accepted sockets
)

// newLoopListener returns nil when ln is not a socket the loops can accept
// on; Serve then uses ln.Accept.
func newLoopListener(s *Server, ln net.Listener, o ListenOptions, base context.Context) *loopListener {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return nil
	}
	lrc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	ll := &loopListener{s: s, lfd: -1, wake: -1, laddr: ln.Addr(), proxy: o, base: base, failed: make(chan error, 1)}
	tcp := ll.laddr.Network() != "unix"
	err = lrc.Control(func(fd uintptr) {
		ll.lfd, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
		if err == nil && tcp {
			// Linux gives accepted sockets the listener's options
			// (nginx's so_keepalive relies on it): set them once here;
			// the first accepts check that they came along.
			tcpOptions(int(fd))
		}
	})
	if err != nil || ll.lfd < 0 {
		return nil
	}
	// O_NONBLOCK belongs to the socket, which other processes share: a
	// loop must never sleep in accept4 because one of them cleared it.
	unix.SetNonblock(ll.lfd, true)
	switch la := ll.laddr.(type) {
	case *net.TCPAddr:
		ll.fixedLocal = !la.IP.IsUnspecified()
	case *net.UnixAddr:
		ll.fixedLocal = true
	}
	if !tcp {
		ll.opts.Store(optsInherited) // none to set
	}
	ll.id = s.listenerIDs.Add(1)
	ll.refs.Store(1) // Serve's
	return ll
}

// release drops a reference; the last one closes the descriptor and takes
// the listener off the Server's books.
func (ll *loopListener) release() {
	if ll.refs.Add(-1) != 0 {
		return
	}
	unix.Close(ll.lfd)
	s := ll.s
	s.mu.Lock()
	delete(s.loopListeners, ll)
	s.mu.Unlock()
}

// fail reports an error that ends Serve.
func (ll *loopListener) fail(err error) {
	select {
	case ll.failed <- err:
	default:
	}
}

// loopAccept is a loop's state for one of the listeners it accepts on.
type loopAccept struct {
	ll       *loopListener
	ev       unix.EpollEvent
	accepted uint          // connections taken, for rotateEvery
	gone     bool          // removed from the loop (its reference is dropped)
	paused   bool          // not registered: the server is full, or backoff
	until    time.Duration // paused after an error until then (server clock); 0: until a connection slot is free
	backoff  time.Duration // after accept errors that resources ran out
}

// addListener registers ll with the loop; it reports false when the loop
// has ended.
func (l *eventLoop) addListener(ll *loopListener) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	a := &loopAccept{ll: ll}
	a.ev = unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: int32(ll.lfd), Pad: int32(evListener + ll.id)}
	if unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, ll.lfd, &a.ev) != nil {
		// EPOLLEXCLUSIVE needs Linux 4.5: without it, every process wakes.
		a.ev.Events = unix.EPOLLIN
		if unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, ll.lfd, &a.ev) != nil {
			return false
		}
	}
	ll.refs.Add(1)
	l.accepts = append(l.accepts, a)
	return true
}

// removeListener takes ll off the loop, unless the loop has ended (it then
// let go of it already).
func (l *eventLoop) removeListener(ll *loopListener) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	for i, a := range l.accepts {
		if a.ll == ll {
			if !a.paused {
				unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, ll.lfd, nil)
			}
			l.accepts = append(l.accepts[:i], l.accepts[i+1:]...)
			l.unpause(a)
			a.gone = true
			ll.release()
			return
		}
	}
}

// acceptFor returns the loop's state for the listener with that id; l.mu
// must be held.
func (l *eventLoop) acceptFor(id uint32) *loopAccept {
	for _, a := range l.accepts {
		if a.ll.id == id {
			return a
		}
	}
	return nil
}

// accept takes one connection from a's listener, which the loop's epoll
// reported ready (level-triggered: one still queued is reported again),
// and adds it to the loop. From accept4 until the connection is counted it
// holds s.acceptMu for reading (see Shutdown).
func (l *eventLoop) accept(a *loopAccept) {
	s, ll := l.s, a.ll
	// Under l.mu: removeListener may let go of the listener (and its
	// descriptor) at any time otherwise.
	l.mu.Lock()
	if a.gone || a.paused {
		l.mu.Unlock()
		return
	}
	select {
	case s.sem <- struct{}{}:
	default:
		l.pause(a, 0) // MaxConnections: until a connection closes
		l.mu.Unlock()
		return
	}
	s.acceptMu.RLock()
	fd, rlen, err := accept4(ll.lfd, &l.rsa)
	if err != nil {
		s.acceptMu.RUnlock()
		<-s.sem
		l.acceptFailed(a, err)
		l.mu.Unlock()
		return
	}
	a.backoff = 0
	// To the back of the listener's queue of waiters (see accept.go),
	// every rotateEvery accepts.
	a.accepted++
	if a.ev.Events&unix.EPOLLEXCLUSIVE != 0 && a.accepted%rotateEvery == 0 && s.rotate {
		rawEpollCtl(l.epfd, unix.EPOLL_CTL_DEL, ll.lfd, nil)
		rawEpollCtl(l.epfd, unix.EPOLL_CTL_ADD, ll.lfd, &a.ev)
		s.rotations.Add(1)
	}
	l.mu.Unlock()
	if c := ll.admit(fd, rlen, &l.rsa); c != nil {
		c.enterIdle() // the read-header timeout runs from now
		if !l.add(&c.lt) {
			go c.handOff(&c.lt, actNext) // the loop has ended
		}
	}
}

// admit puts fd, a socket just accepted from ll (its peer's address rlen
// bytes of rsa), on the Server's books as a conn and returns it, to be
// served on a loop; nil if it was closed at once (Close raced with the
// accept, or a PROXY-protocol peer is not trusted). The caller took
// s.acceptMu for reading before accept4; admit releases it once the
// connection is counted (see Shutdown).
func (ll *loopListener) admit(fd int, rlen uint32, rsa *unix.RawSockaddrAny) *conn {
	s := ll.s
	network := ll.laddr.Network()
	remote := rawSockaddrAddr(rsa, rlen, network)
	ll.setOptions(fd)
	laddr := ll.laddr
	if !ll.fixedLocal {
		if n, err := getsockname(fd, rsa); err == nil {
			laddr = rawSockaddrAddr(rsa, n, network)
		}
	}
	c := s.pool.Get().(*conn)
	c.initRaw(fd, remote, laddr)
	s.mu.Lock()
	s.conns[c] = struct{}{}
	closed := s.closed
	s.mu.Unlock()
	s.acceptMu.RUnlock()
	s.open.Add(1)
	s.connNew(c, ll.base) // hook: ConnContext, ConnState (connstate.go)
	c.proxy, c.trusted = ll.proxy.ProxyProtocol, ll.proxy.Trusted
	c.req.TrustedPeer = ll.proxy.trusts(c.req.RemoteAddr) // the peer's; a PROXY header's client is judged again (setClient)
	c.h2 = ll.proxy.HTTP2 && s.HandOff != nil             // hook: HTTP/2 (handoff.go)
	switch {
	case closed: // Close raced with this accept
		c.release()
		return nil
	case c.proxy && !ll.proxy.trusts(c.req.RemoteAddr):
		s.proxyLogs.refused(s.logger, c.req.RemoteAddr)
		c.release()
		return nil
	}
	return c
}

// fatalAccept reports whether accept4's error means the listener is
// unusable (shut down, or not listening), rather than a connection that
// failed or resources that ran out for a moment.
func fatalAccept(err error) bool {
	switch err {
	case unix.EBADF, unix.EINVAL, unix.ENOTSOCK, unix.EFAULT:
		return true
	}
	return false
}

// acceptFailed handles accept4's error on a's listener; l.mu is held.
func (l *eventLoop) acceptFailed(a *loopAccept, err error) {
	s := l.s
	switch {
	case err == unix.EAGAIN:
		s.acceptMisses.Add(1) // woken for nothing: another process took it
	case fatalAccept(err):
		l.pause(a, time.Since(s.epoch)+time.Second)
		a.ll.fail(os.NewSyscallError("accept4", err))
	default:
		// Out of descriptors or memory (the connection stays queued), or
		// a network error the kernel passes on for a connection that
		// failed: back off rather than spin, as net/http does.
		a.backoff = nextBackoff(a.backoff)
		s.logger.Warn("accept failed; retrying", "error", os.NewSyscallError("accept4", err), "delay", a.backoff)
		l.pause(a, time.Since(s.epoch)+a.backoff)
	}
}

// nextBackoff is the wait after an accept error that follows one of d:
// 5 ms, doubling up to a second.
func nextBackoff(d time.Duration) time.Duration {
	return min(max(2*d, 5*time.Millisecond), time.Second)
}

// pause takes a's listener out of the loop's epoll until the time until,
// or, if until is 0, until a connection slot is free (resumeAccepts); l.mu
// is held.
func (l *eventLoop) pause(a *loopAccept, until time.Duration) {
	if a.paused {
		return
	}
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, a.ll.lfd, nil)
	a.paused, a.until = true, until
	l.paused.Add(1)
	if until == 0 {
		l.s.acceptWaiting.Add(1)
	} else if until < l.sweepAt {
		l.sweepAt = until
	}
}

// unpause forgets that a is paused (it is registered again, or gone); l.mu
// is held.
func (l *eventLoop) unpause(a *loopAccept) {
	if !a.paused {
		return
	}
	if a.until == 0 {
		l.s.acceptWaiting.Add(-1)
	}
	a.paused = false
	l.paused.Add(-1)
}

// resumeAccepts registers the paused listeners whose pause is over again.
func (l *eventLoop) resumeAccepts() {
	s := l.s
	now := time.Since(s.epoch)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.accepts {
		if !a.paused {
			continue
		}
		if a.until == 0 && len(s.sem) < cap(s.sem) || a.until != 0 && a.until <= now {
			l.unpause(a)
			unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, a.ll.lfd, &a.ev)
		} else if a.until != 0 && a.until < l.sweepAt {
			l.sweepAt = a.until
		}
	}
}

// accept4 is accept4(2) on lfd, the peer's address into rsa (its length
// returned), retrying EINTR and ECONNABORTED. The socket is made
// nonblocking and close-on-exec.
func accept4(lfd int, rsa *unix.RawSockaddrAny) (int, uint32, error) {
	for {
		l := uint32(unix.SizeofSockaddrAny)
		r, _, e := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(rsa)), uintptr(unsafe.Pointer(&l)),
			unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
		if e == 0 {
			return int(r), l, nil
		}
		if e != unix.EINTR && e != unix.ECONNABORTED {
			return -1, 0, e
		}
	}
}

// setOptions gives an accepted TCP socket tcpOptions, unless it inherited
// them from the listener. A socket is made from the listener when its
// handshake completes, so those already queued when the options were set
// do not have them: the loops look until one does (then all later ones
// do), or give up after optsTries sockets without them.
func (ll *loopListener) setOptions(fd int) {
	n := ll.opts.Load()
	if n == optsInherited {
		return
	}
	if n < optsTries {
		nodelay, err1 := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY)
		idle, err2 := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		ka, err3 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		if err1 == nil && err2 == nil && err3 == nil && nodelay == 1 && ka == 1 && idle == keepAliveIdle {
			ll.opts.Store(optsInherited)
			return
		}
		ll.opts.CompareAndSwap(n, n+1)
	}
	tcpOptions(fd)
}

// getsockname is getsockname(2) into rsa; it returns the address's length.
func getsockname(fd int, rsa *unix.RawSockaddrAny) (uint32, error) {
	l := uint32(unix.SizeofSockaddrAny)
	_, _, e := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(rsa)), uintptr(unsafe.Pointer(&l)))
	if e != 0 {
		return 0, e
	}
	return l, nil
}

// tcpOptions gives an accepted TCP socket the options Go's Accept would:
// no Nagle delay (a response's last partial segment must not wait for the
// client's delayed ACK) and keep-alive probes after 15 s idle.
func tcpOptions(fd int) {
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, keepAliveIdle)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 15)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 9)
}

// keepAliveIdle is the seconds of silence before TCP keep-alive probes.
const keepAliveIdle = 15

// serveAcceptor is Serve's accept loop for loops that wait in the
// runtime's poller (GOMAXPROCS=1; see startLoops), where EPOLLEXCLUSIVE
// does not work: the kernel wakes an exclusive waiter only if a thread
// waits in epoll_wait on that very instance, and a nested one has none, so
// every process sharing the listener would wake. Serve's goroutine waits
// for the listener itself instead, in epoll_wait in the kernel, on an
// epoll of its own that holds the listener (EPOLLEXCLUSIVE) and an eventfd
// for stop (ll.wake), and hands each connection to a loop. It holds an OS
// thread while it waits. Like a loop, it takes the connection it was woken
// for even once the server is done (see accept.go), and re-registers every
// rotateEvery accepts.
func (s *Server) serveAcceptor(ll *loopListener) error {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("protocol: epoll_create1: %w", err)
	}
	defer unix.Close(ep) // before ll's release closes lfd (deferred first)
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("protocol: eventfd: %w", err)
	}
	s.mu.Lock()
	ll.wake = wake
	done := s.isDone()
	s.mu.Unlock()
	defer func() {
		// Server.stop writes to the eventfd under s.mu: a closed number
		// may be reused at once by another client's socket.
		if h := testHookAcceptorClosing.Load(); h != nil {
			(*h)(s)
		}
		s.mu.Lock()
		unix.Close(ll.wake)
		ll.wake = -1
		s.mu.Unlock()
	}()
	if done {
		return ErrServerClosed
	}
	lev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: int32(ll.lfd)}
	wev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &wev); err != nil {
		return fmt.Errorf("protocol: epoll_ctl: %w", err)
	}
	if unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, ll.lfd, &lev) != nil {
		lev.Events = unix.EPOLLIN // before Linux 4.5: every process wakes
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, ll.lfd, &lev); err != nil {
			return fmt.Errorf("protocol: epoll_ctl: %w", err)
		}
	}
	var events [2]unix.EpollEvent
	var rsa unix.RawSockaddrAny
	var accepted uint
	var backoff time.Duration
	stopped := false
	for {
		select {
		case s.sem <- struct{}{}:
		case <-s.done:
			return ErrServerClosed
		}
		n, err := unix.EpollWait(ep, events[:], -1)
		if err == unix.EINTR {
			<-s.sem
			continue
		}
		if err != nil {
			<-s.sem
			return fmt.Errorf("protocol: epoll_wait: %w", err)
		}
		ready := false
		for _, ev := range events[:n] {
			if int(ev.Fd) == wake {
				stopped = true // after this accept, if any
			} else {
				ready = true
			}
		}
		if !ready {
			<-s.sem
			return ErrServerClosed
		}
		s.acceptMu.RLock()
		fd, rlen, err := accept4(ll.lfd, &rsa)
		if err != nil {
			s.acceptMu.RUnlock()
			<-s.sem
			switch {
			case stopped:
				return ErrServerClosed
			case err == unix.EAGAIN:
				s.acceptMisses.Add(1) // another process took it
				continue
			case fatalAccept(err):
				return fmt.Errorf("protocol: accept: %w", os.NewSyscallError("accept4", err))
			}
			if !s.acceptBackoff(os.NewSyscallError("accept4", err), &backoff) {
				return ErrServerClosed
			}
			continue
		}
		backoff = 0
		accepted++
		if lev.Events&unix.EPOLLEXCLUSIVE != 0 && accepted%rotateEvery == 0 && s.rotate {
			unix.EpollCtl(ep, unix.EPOLL_CTL_DEL, ll.lfd, nil)
			unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, ll.lfd, &lev)
			s.rotations.Add(1)
		}
		if c := ll.admit(fd, rlen, &rsa); c != nil {
			l := s.pickLoop()
			if l != nil {
				c.enterIdle() // the read-header timeout runs from now
			}
			if l == nil || !l.add(&c.lt) {
				go c.handOff(&c.lt, actNext)
			}
		}
		if stopped {
			return ErrServerClosed
		}
	}
}

// testHookAcceptorClosing, when set by a test, runs when serveAcceptor is
// done, before it closes its wake eventfd.
var testHookAcceptorClosing atomic.Pointer[func(*Server)]
