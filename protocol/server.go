package protocol

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// DefaultIdleGrace is Server.IdleGrace when it is zero.
const DefaultIdleGrace = time.Second

// Stats are a Server's counters, read atomically.
type Stats struct {
	Requests  uint64 // responses completed since start
	OpenConns int64
	// Status counts responses by status class: Status[0] 1xx, Status[1]
	// 2xx, ... Status[4] 5xx (the shape of metrics.Classes, which the
	// worker's heartbeat and the master's metrics carry).
	Status [5]uint64
}

// Server serves a Handler on listeners. Its exported fields must be set
// before the first call to Serve and not changed afterwards.
type Server struct {
	Handler Handler
	Limits  Limits
	Logger  hclog.Logger
	Log     LogFunc // optional, called after each request
	// OnRequestDone is called after each completed response; the worker uses it
	// for max_requests. Optional.
	OnRequestDone func()
	// IdleGrace is how long, once Shutdown has begun, a keep-alive
	// connection may stay idle before it is closed; a request that arrives
	// within it is answered (with Connection: close). A connection that
	// has not carried a request yet is not cut by it: it keeps
	// Limits.ReadHeaderTimeout. Zero means DefaultIdleGrace.
	IdleGrace time.Duration
	// HandOff takes the connections of listeners served with
	// ListenOptions.HTTP2 that turn out to speak HTTP/2 (handoff.go).
	HandOff func(HandOff)

	// BaseContext, ConnContext and ConnState are net/http.Server's hooks
	// (see connstate.go): the base context of connections accepted on ln
	// (nil: context.Background()), a connection's context derived from it
	// when it is accepted, and a function told of every connection state
	// change. FromHTTP handlers' request contexts derive from the
	// connection's context. ConnState runs on the goroutine serving the
	// connection (an event loop's, for LoopSafe handlers): keep it short.
	BaseContext func(ln net.Listener) context.Context
	ConnContext func(ctx context.Context, c ConnInfo) context.Context
	ConnState   func(c ConnInfo, state http.ConnState)

	// Processes is how many processes accept on the same listening
	// sockets (forkd's workers); 0 means not known. With 1, and one event
	// loop, no other waiter shares a listener's wake-ups, and the loop
	// does not go to the back of its waiters every few accepts (two
	// epoll_ctl calls; see accept.go).
	Processes int

	noRaw    bool        // tests: serve sockets like other connections (no serveTurns)
	released func()      // tests: called when a connection is closed and pooled
	hk       serverHooks // hook: connection hooks and client-gone detection (connstate.go)

	loopOnce sync.Once
	loopSafe bool         // Handler is LoopSafe: its requests are served on the loops
	acceptMu sync.RWMutex // see Shutdown
	evloops  []*eventLoop // nil: a goroutine per connection
	nextLoop atomic.Uint32
	// acceptMisses counts wake-ups of a loop for a listener that found no
	// connection (another process took it): the herd EPOLLEXCLUSIVE avoids.
	acceptMisses atomic.Uint64
	// acceptWaiting counts loops' listeners paused until a connection
	// slot is free (MaxConnections): forget wakes the loops then.
	acceptWaiting atomic.Int32
	listenerIDs   atomic.Uint32 // loopListener.id, which the loops' events carry
	// rotate: the loops (or Serve's acceptor) share the listeners' wake-ups
	// with other waiters, and take turns (rotateEvery); set by startLoops
	// before any loop runs. rotations counts the turns given up.
	rotate    bool
	rotations atomic.Uint64

	initOnce  sync.Once
	lim       Limits // Limits with defaults filled in
	maxHead   int    // the read buffer's largest size for a request head
	idleGrace time.Duration
	logger    hclog.Logger
	epoch     time.Time
	clock     atomic.Int64 // time since epoch, updated every second
	date      atomic.Pointer[dateLine]
	sem       chan struct{} // one token per open connection
	done      chan struct{} // closed by Shutdown and Close
	stopOnce  sync.Once
	draining  atomic.Bool
	pool      sync.Pool
	proxyLogs *proxyLogs

	mu        sync.Mutex
	listeners map[*net.Listener]struct{}
	// loopListeners are the listeners the event loops accept on, until
	// the last loop holding one has let it go (loopListener.release).
	loopListeners map[*loopListener]struct{}
	conns         map[*conn]struct{}
	closed        bool // Close was called

	requests atomic.Uint64
	status   [5]atomic.Uint64 // by class, as Stats.Status
	open     atomic.Int64
}

// dateLine is a complete "Date: ...\r\n" field line (RFC 9110 §6.6.1).
type dateLine [37]byte

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.lim = withDefaults(s.Limits)
		s.maxHead = s.lim.RequestLine + s.lim.HeaderBytes + 2*maxEmptyLines + 4
		s.idleGrace = s.IdleGrace
		if s.idleGrace <= 0 {
			s.idleGrace = DefaultIdleGrace
		}
		s.logger = s.Logger
		if s.logger == nil {
			s.logger = hclog.NewNullLogger()
		}
		s.epoch = time.Now()
		s.tick(s.epoch)
		s.sem = make(chan struct{}, s.lim.MaxConnections)
		s.done = make(chan struct{})
		s.listeners = make(map[*net.Listener]struct{})
		s.loopListeners = make(map[*loopListener]struct{})
		s.conns = make(map[*conn]struct{})
		s.pool.New = func() any { return newConn(s) }
		s.proxyLogs = newProxyLogs()
		go s.runClock()
	})
}

// withDefaults fills the zero fields of l from DefaultLimits.
func withDefaults(l Limits) Limits {
	d := DefaultLimits()
	if l.RequestLine <= 0 {
		l.RequestLine = d.RequestLine
	}
	if l.HeaderBytes <= 0 {
		l.HeaderBytes = d.HeaderBytes
	}
	if l.HeaderCount <= 0 {
		l.HeaderCount = d.HeaderCount
	}
	if l.BodyBytes <= 0 {
		l.BodyBytes = d.BodyBytes
	}
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = d.ReadHeaderTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = d.IdleTimeout
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = d.WriteTimeout
	}
	if l.MaxConnections <= 0 {
		l.MaxConnections = d.MaxConnections
	}
	return l
}

// runClock updates the cached Date line and the coarse clock at every
// second boundary until the server stops.
func (s *Server) runClock() {
	t := time.NewTimer(time.Second - time.Duration(time.Now().Nanosecond()))
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			s.tick(now)
			s.watchLoops()
			t.Reset(time.Second - time.Duration(now.Nanosecond()))
		}
	}
}

func (s *Server) tick(now time.Time) {
	s.clock.Store(int64(now.Sub(s.epoch)))
	l := new(dateLine)
	copy(l[:], "Date: ")
	now.UTC().AppendFormat(l[6:6], http.TimeFormat)
	copy(l[35:], "\r\n")
	s.date.Store(l)
}

func (s *Server) dateLine() []byte         { return s.date.Load()[:] }
func (s *Server) coarseNow() time.Duration { return time.Duration(s.clock.Load()) }

// Serve accepts connections on ln until Shutdown or Close; it returns
// ErrServerClosed after a Shutdown/Close. Several Serve calls may run at once
// on one Server. When MaxConnections are open, Serve stops accepting until
// one closes. Serve closes ln when it returns.
func (s *Server) Serve(ln net.Listener) error { return s.ServeWith(ln, ListenOptions{}) }

// ServeWith is Serve with per-listener options. With o.ProxyProtocol, ln
// must be a socket listener (TCP or unix); a layer that reads connections
// itself, such as TLS, goes on top of NewProxyListener instead.
func (s *Server) ServeWith(ln net.Listener, o ListenOptions) error {
	if s.Handler == nil {
		return errors.New("protocol: Server.Handler is nil")
	}
	if _, ok := ln.(syscall.Conn); o.ProxyProtocol && !ok {
		ln.Close()
		return errors.New("protocol: ProxyProtocol needs a socket listener; put layers over NewProxyListener")
	}
	s.init()
	s.loopOnce.Do(func() {
		// Every server runs event loops: a LoopSafe handler is served on
		// them, and the connections of any other wait on them between
		// requests (a handler that is not LoopSafe leaves the loop before
		// it runs, and its connection goes back once idle: backToLoop).
		ls, ok := s.Handler.(LoopSafe)
		s.loopSafe = ok && ls.LoopSafe()
		if !s.noRaw {
			s.startLoops()
		}
	})
	base := s.baseContext(ln) // hook: Server.BaseContext (connstate.go)
	// With event loops, sockets are accepted raw, on the loops (accept.go):
	// a net.Conn would register each one with the runtime's poller too,
	// which would then do all of the loops' readiness work a second time.
	var ll *loopListener
	if s.hasLoops() {
		ll = newLoopListener(s, ln, o, base)
	}
	s.mu.Lock()
	if s.isDone() {
		s.mu.Unlock()
		if ll != nil {
			ll.release()
		}
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[&ln] = struct{}{}
	if ll != nil {
		s.loopListeners[ll] = struct{}{}
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, &ln)
		s.mu.Unlock()
		ln.Close()
	}()
	if ll != nil {
		return s.serveLoops(ln, ll)
	}

	var backoff time.Duration
	for {
		select {
		case s.sem <- struct{}{}:
		case <-s.done:
			return ErrServerClosed
		}
		// Held from Accept until the connection is counted, as on the
		// loops (see Shutdown); Shutdown closes ln, which ends a blocked
		// Accept and so releases it.
		var nc net.Conn
		var err error
		s.acceptMu.RLock()
		if s.isDone() {
			err = ErrServerClosed
		} else {
			nc, err = ln.Accept()
		}
		if err != nil {
			s.acceptMu.RUnlock()
			<-s.sem
			if s.isDone() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("protocol: accept: %w", err)
			}
			// EMFILE and friends: back off rather than spin, as net/http does.
			if !s.acceptBackoff(err, &backoff) {
				return ErrServerClosed
			}
			continue
		}
		backoff = 0
		c := s.pool.Get().(*conn)
		c.init(nc)
		s.mu.Lock()
		s.conns[c] = struct{}{}
		closed := s.closed
		s.mu.Unlock()
		s.acceptMu.RUnlock() // taken for this accept, above
		s.open.Add(1)
		s.connNew(c, base) // hook: ConnContext, ConnState (connstate.go)
		c.proxy, c.trusted = o.ProxyProtocol, o.Trusted
		c.req.TrustedPeer = o.trusts(c.req.RemoteAddr) // the peer's; a PROXY header's client is judged again (setClient)
		c.h2 = o.HTTP2 && s.HandOff != nil             // hook: HTTP/2 (handoff.go)
		switch {
		case closed: // Close raced with this accept
			go c.release()
		case c.proxy && !o.trusts(c.req.RemoteAddr):
			s.proxyLogs.refused(s.logger, c.req.RemoteAddr)
			c.release()
		default:
			go c.serve()
		}
	}
}

// serveLoops is Serve for a listener the event loops accept on: it
// registers ll with every loop and waits until the server is done or the
// listener fails. The loops let go of ll when they end (see accept.go).
func (s *Server) serveLoops(ln net.Listener, ll *loopListener) error {
	if _, ok := ln.(*net.TCPListener); ok {
		// The loops accept on ll's duplicate; the runtime's poller,
		// which watches ln's descriptor, would wake a thread for every
		// connection. (A unix listener may remove its socket file when
		// closed: it stays open until Serve returns.)
		ln.Close()
	}
	s.mu.Lock()
	loops := s.evloops
	s.mu.Unlock()
	if !loops[0].direct {
		defer ll.release()
		return s.serveAcceptor(ll)
	}
	for _, l := range loops {
		l.addListener(ll)
	}
	select {
	case <-s.done:
		ll.release()
		return ErrServerClosed
	case err := <-ll.failed:
		for _, l := range loops {
			l.removeListener(ll)
		}
		ll.release()
		if s.isDone() {
			return ErrServerClosed
		}
		return fmt.Errorf("protocol: accept: %w", err)
	}
}

// acceptBackoff logs err, an accept error that is not the listener's end,
// and waits before the next accept: *backoff, doubled from the last wait
// (nextBackoff). It reports false if the server is done meanwhile.
func (s *Server) acceptBackoff(err error, backoff *time.Duration) bool {
	*backoff = nextBackoff(*backoff)
	s.logger.Warn("accept failed; retrying", "error", err, "delay", *backoff)
	t := time.NewTimer(*backoff)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.done:
		return false
	}
}

// hasLoops reports whether the server runs event loops.
func (s *Server) hasLoops() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.evloops) > 0
}

// rawSockaddrAddr converts an accepted socket's address, l bytes of rsa,
// for Request.RemoteAddr and LocalAddr. An IP address and its net.Addr are
// one allocation.
func rawSockaddrAddr(rsa *unix.RawSockaddrAny, l uint32, network string) net.Addr {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		pp := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		a := new(tcpAddr)
		a.ip = [16]byte{10: 0xff, 11: 0xff}
		copy(a.ip[12:], pp.Addr[:])
		a.TCPAddr = net.TCPAddr{IP: a.ip[:], Port: port(pp.Port)}
		return &a.TCPAddr
	case unix.AF_INET6:
		pp := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		a := new(tcpAddr)
		a.ip = pp.Addr
		a.TCPAddr = net.TCPAddr{IP: a.ip[:], Port: port(pp.Port)}
		if pp.Scope_id != 0 {
			if ifi, err := net.InterfaceByIndex(int(pp.Scope_id)); err == nil {
				a.Zone = ifi.Name
			}
		}
		return &a.TCPAddr
	case unix.AF_UNIX:
		pp := (*unix.RawSockaddrUnix)(unsafe.Pointer(rsa))
		const off = unsafe.Offsetof(pp.Path)
		var name []byte
		if l > uint32(off) {
			n := min(int(l-uint32(off)), len(pp.Path))
			name = unsafe.Slice((*byte)(unsafe.Pointer(&pp.Path[0])), n)
			if name[0] == 0 {
				name[0] = '@' // abstract
			} else if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
		}
		return &net.UnixAddr{Name: string(name), Net: network}
	}
	if network == "unix" {
		return &net.UnixAddr{Net: network}
	}
	return &net.TCPAddr{}
}

// tcpAddr is a net.TCPAddr with room for its IP.
type tcpAddr struct {
	net.TCPAddr
	ip [16]byte
}

// port converts a port in network byte order.
func port(p uint16) int {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return int(b[0])<<8 | int(b[1])
}

// pickLoop returns the next event loop in turn, nil if there are none.
func (s *Server) pickLoop() *eventLoop {
	s.mu.Lock()
	loops := s.evloops
	s.mu.Unlock()
	if len(loops) == 0 {
		return nil
	}
	return loops[int(s.nextLoop.Add(1))%len(loops)]
}

// forget removes c from the server's books.
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.open.Add(-1)
	<-s.sem
	if s.acceptWaiting.Load() > 0 {
		// A loop stopped accepting for want of a connection slot.
		s.mu.Lock()
		s.wakeLoops()
		s.mu.Unlock()
	}
}

func (s *Server) isDone() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// stop closes done and the listeners; s.mu must be held.
//
// Listeners are closed on their own goroutines: a listening socket shared
// with other processes can be switched to blocking mode by one of them (Go's
// os.File.Fd does that), and a Close then waits for an accept(2) sleeping in
// the kernel. Shutdown must not hang on that, nor hold s.mu meanwhile.
func (s *Server) stop() {
	s.stopOnce.Do(func() { close(s.done) })
	for ln := range s.listeners {
		go (*ln).Close()
	}
	one := [8]byte{1}
	for ll := range s.loopListeners {
		if ll.wake >= 0 {
			unix.Write(ll.wake, one[:]) // serveAcceptor
		}
	}
}

// Shutdown stops accepting, lets in-flight requests finish (their responses
// get Connection: close), closes connections that stay idle past a short grace,
// and returns when all are gone or ctx ends (then it closes the rest).
//
// An idle keep-alive connection is not cut at once: a client may be sending
// its next request just then. It gets IdleGrace to send one, which is
// answered with Connection: close. A connection that has not carried a
// request yet keeps its ReadHeaderTimeout (counted from accept) for its
// first one, also answered with Connection: close: it is new, not idle,
// and a TLS handshake may just have taken it that long. ctx bounds both.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	defer s.stopWatcher() // hook: client-gone detection ends (closewatch.go)
	s.draining.Store(true)
	dl := time.Now().Add(s.idleGrace)
	s.mu.Lock()
	s.stop()
	for c := range s.conns {
		c.drainIdle(dl)
	}
	s.wakeLoops()
	s.mu.Unlock()

	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	barrier := false
	// An acceptor asleep in a blocking accept(2) (see stop) would hold the
	// barrier until a client comes: give up on it after a while.
	giveUp := time.Now().Add(time.Second)
	for {
		// Accept loops are not waited for: one may sleep in a blocking
		// accept(2) (see stop); once done is closed it serves nothing new.
		// But a socket just taken from the kernel is not in s.conns yet:
		// the loops and accept loops hold acceptMu from accept4 until it
		// is, so once Shutdown has had it once, every accepted connection
		// is counted.
		if !barrier && s.acceptMu.TryLock() {
			s.acceptMu.Unlock()
			barrier = true
		}
		// The loops' listeners are waited for: a loop lets go of them
		// when it ends (wakeLoops), after taking a connection it was
		// woken for (see accept.go).
		s.mu.Lock()
		left := len(s.conns) + len(s.loopListeners)
		s.mu.Unlock()
		if left == 0 && (barrier || time.Now().After(giveUp)) {
			return nil
		}
		select {
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close closes listeners and every connection now.
func (s *Server) Close() error {
	s.init()
	s.stopWatcher() // hook: client-gone detection ends (closewatch.go); before s.mu
	s.draining.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.stop()
	s.wakeLoops()
	for c := range s.conns {
		// A connection's Close waits for a read callback in progress
		// (serveTurns), which may be running a handler: close them on
		// their own goroutines so that Close neither waits for handlers
		// nor holds s.mu while a hijacking handler needs it.
		if t, ok := c.t.(*netTransport); ok && t.nc != nil {
			go t.nc.Close()
		} else if ok && t.raw >= 0 {
			// Held (leaveLoop): its goroutine uses the number without a
			// lock, so it is shut down, not closed; that goroutine
			// closes it (netTransport.close, unhold), under s.mu.
			unix.Shutdown(t.raw, unix.SHUT_RDWR)
		} // else an event loop holds it; wakeLoops has it closed
	}
	return nil
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Requests:  s.requests.Load(),
		OpenConns: s.open.Load(),
	}
	for i := range s.status {
		st.Status[i] = s.status[i].Load()
	}
	return st
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = http.ErrServerClosed
