// Package upstream is forkd's HTTP/1.1 client for the reverse proxy: a pool
// of keep-alive connections to one upstream, and on each connection one
// exchange at a time, written and read with the protocol package's wire
// syntax (protocol/internal/wire) rather than net/http.
//
// It is as strict with responses as the server is with requests: a head
// that two parsers could frame differently (Content-Length with
// Transfer-Encoding, a repeated or malformed Content-Length, a transfer
// coding other than one "chunked") is ErrBadResponse, and its connection is
// closed, never pooled. Bodies stream through fixed buffers both ways, so
// memory does not grow with their size.
//
// # Who owns a connection
//
// A Conn belongs to the Pool while it is idle, and to the caller of Get or
// Dial from then until it calls Release (which hands it back to the pool
// when the exchange left it reusable, and closes it otherwise), Close or
// Tunnel. Only the owner reads, writes or sets deadlines on it. While a
// Conn is idle, whoever holds Pool.mu acts for the pool: the goroutine that
// takes it out of the idle list (Get, the pruning timer, the idle watch,
// the event loop watching it, Close) owns it from then on, and no one else
// touches it. An owner may serve its exchange on the event loop that
// watches the socket (loop.go: SendNow, OnReady, ReadHeadNow, BodyNow):
// the loop's events for the socket then go to that one exchange, until
// OnReady(nil), which the owner calls before it hands the connection back
// (Release, put and Close forget it too).
//
// # Idle connections never carry bytes to the next request
//
// An upstream may send bytes after a complete response: a body on a HEAD
// answer or after a 204 or 304, more than its Content-Length, a second
// response. Were the connection reused, the next request, from whichever
// client, would read them as its response, and every response after would
// be one late. So a connection is not reused with a byte unread (nginx's
// upstream keepalive module keeps every cached connection's read event
// armed for this, and its ngx_http_upstream_keepalive_close_handler
// closes one that becomes readable):
//
//   - Release (put) closes a connection whose read buffer holds bytes past
//     the end of the response.
//   - A connection whose owner offered an event loop (SetWatcher: the
//     proxy offers the loop its client came from, protocol.SocketWatcher)
//     is registered with that loop's epoll set at its first put (one
//     that DialNow made, at its connect), edge-triggered for readability
//     (and writability: see Watcher), and stays there until it is closed
//     (Tunnel takes it out): reusing it costs no epoll_ctl. The loop
//     reports every event on its own goroutine, between the requests it
//     serves (loopReady). An event while the connection is idle closes it
//     at once, unless a peek finds nothing (an event for the last
//     response's bytes that the loop fetched late; epoll drops most of
//     those itself, since it checks readiness again when it hands an
//     event out). An event while it is in use is noted, and put peeks
//     before it pools the connection: bytes that came after the response
//     was read bring no event of their own. Get hands an idle watched
//     connection out with no epoll_ctl, and with no system call at all
//     when the loop that asks (GetIdle's prefer) watches it and has
//     looked since it went idle (a Looker): put notes the loop's wait
//     epoch E when the connection goes idle, after its last look at the
//     socket, and the loop numbers each epoll_wait before it fetches
//     events (Epoch) and notes the last one whose events it fetched and
//     dispatched in full (Looked; not one that filled its event buffer,
//     which may have left events in the kernel). Looked > E means a
//     wait that began after the connection went idle has completed:
//     whatever reached the socket before that wait began (stray bytes,
//     the upstream's FIN, a reset) made an edge that it, or an earlier
//     wait, reported, and loopReady closed the connection. What arrives
//     after that wait began goes unseen until the next, as nginx's read
//     event alone leaves it; a peek would not close that window either,
//     since bytes can come just after it. Otherwise, on a busy loop that
//     has not waited since (the connection was put back in the batch it
//     serves) or one that asks for another loop's connection, Get peeks
//     once, so that bytes that came since the loop's last wait (a stray
//     response sent just after the last one, when the connection is
//     reused at once) are caught, and only what arrives between the peek
//     and the request's write goes unseen. GetIdle prefers, among the
//     connections prefer watches, the most recently used one it need not
//     peek at. An epoch is compared only with the counter of the loop
//     that noted it, and only while that loop still watches the
//     connection. When the loop ends (Shutdown) its connections are
//     unwatched, and the pool's own watch takes them.
//   - A connection no loop watches (an owner that offered none, a loop
//     that refused it) is watched by the pool's own idle watch (one epoll
//     set and one goroutine per pool, made when the pool first keeps such
//     a connection) while it is idle: when it becomes readable (data, the
//     upstream's FIN, a reset) the watch takes it out of the idle list and
//     closes it at once. The registration is one-shot and carries a token
//     that is new at each put, so an event that comes after Get took the
//     connection finds no idle connection with its token and is ignored.
//     A socket joins the watch's set at its first put and stays in it
//     until it is closed: Get disarms it (EPOLL_CTL_MOD to no readiness
//     but the hang-up and error epoll always reports) and the next put
//     arms it again (MOD), which is cheaper in the kernel than a DEL and
//     an ADD per reuse.
//   - Get disarms each such connection's registration and peeks at it
//     (recv with MSG_PEEK|MSG_DONTWAIT) before handing it out, with the
//     one check the watch makes on an event too (idleCheck): bytes or
//     the connection's end that arrived before the watch got to it, or
//     while the watch could not be made, close it, and Get tries the next
//     one or dials. This costs two system calls per reuse, and the watch
//     one more per put (BenchmarkPoolGetPut).
//
// # Out of the runtime's poller
//
// A connection DialNow makes (an event loop's connect) never enters the Go
// runtime's poller: its socket is made nonblocking, registered with the
// loop, and used as fd from the start. One that Dial makes is dialled
// through net, so the socket starts in the runtime's poller. When an event
// loop first watches it (the first put after SetWatcher), it is detached: put keeps a duplicate of the
// descriptor (fd) and closes the net.Conn, which takes the socket out of
// the runtime's epoll set. The loop's exchanges (SendNow, ReadHeadNow,
// BodyNow) and the pool's checks use fd; were the socket still in the
// runtime's set, each response would also wake the runtime's poller, on
// another thread of the process, for an event no goroutine waits for (a
// system call and a context switch per proxied request). A goroutine that
// must wait on a detached socket (Do, Finish, a Read that waits, Tunnel)
// first attaches it again: a new net.Conn on another duplicate, in the
// runtime's poller, kept beside fd until the connection closes (a socket
// that needed a goroutine once likely will again; attaching costs some
// ten system calls). Both descriptors close with the connection, nc's
// first. fd is the owner's, or under Pool.mu while the connection is idle,
// like the rest of the Conn; a goroutine path uses nc and its RawConn,
// never fd, so that a close by one of duplex's two goroutines cannot pull
// a descriptor number from under the other.
//
// A socket's descriptor number is used (epoll_ctl, the peek) only inside
// its RawConn.Control, which keeps it open, or, once detached, as fd; in
// either case by its owner, or under Pool.mu while it is idle; the epoll
// sets (protocol/internal/epoll, the loop's) guard their own. Registering
// with the pool's watch takes one epoll_ctl under Pool.mu, so that the
// watch never sees an event before it can find the connection; a loop
// registration is made outside Pool.mu (Watch and Unwatch take the loop's
// lock, and the loop calls back without it, so the two locks are never
// held together) but with Conn.lw set before it, so that no event of it is
// ignored. A socket is detached before its loop registration and never
// while it is in the pool's watch, so each registration names a
// descriptor that stays open as long as the socket. Closing a socket drops
// its registrations with it (a loop key is freed first, Unwatch), so the
// pruning timer and Close just close theirs.
package upstream

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/forkd/forkd/internal/lograte"
	"github.com/forkd/forkd/protocol/internal/epoll"
	"github.com/forkd/forkd/protocol/internal/wire"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// Limits of a response head, unless Config says otherwise. A head over
// them is ErrBadResponse.
const (
	maxHeadBytes  = 64 << 10
	maxHeadFields = 100
	// maxInterim bounds the 1xx responses skipped before the final one.
	maxInterim = 8
	// bufSize is each connection's read buffer; a head longer than that
	// grows it up to Config.MaxHeadBytes for the one response.
	bufSize = 16 << 10
	// directRead is the size from which body reads go from the socket
	// straight into the caller's buffer.
	directRead = 8 << 10
	// syncBody is the largest body written before the response is read:
	// any socket's send buffer takes it without waiting for the upstream.
	syncBody = 16 << 10
)

var (
	// ErrDial is a failed connect (refused, timed out, no such socket).
	ErrDial = errors.New("upstream: connect failed")
	// ErrNoResponse means the connection ended (EOF or reset) before any
	// byte of a response: on a pooled connection, the upstream had closed
	// it while idle, and the request can be sent again on a new one.
	ErrNoResponse = errors.New("upstream: connection closed before a response")
	// ErrTimeout is a response (head or body) that made no progress for
	// the read timeout.
	ErrTimeout = errors.New("upstream: timed out")
	// ErrBadResponse is a response that cannot be framed or parsed, or a
	// head cut off after its first byte.
	ErrBadResponse = errors.New("upstream: malformed response")
	// ErrTruncated is a body that ended before its framing said it would.
	ErrTruncated = errors.New("upstream: response body truncated")
	// ErrRequestBody wraps a failure to read the request body from the
	// client: the upstream is not to blame.
	ErrRequestBody = errors.New("upstream: reading the request body")
	// ErrFlush wraps a failure of the Flusher: the client is gone.
	ErrFlush = errors.New("upstream: flushing to the client")
)

// Response is a response head. Its fields alias the connection's buffer
// and are valid until the first body read.
type Response = wire.ResponseHead

// Field is a field of a response head or trailer section.
type Field = wire.RespField

// Config describes one upstream and how to talk to it.
type Config struct {
	Network        string        // "tcp" or "unix"
	Address        string        // host:port, or a socket path
	ConnectTimeout time.Duration // for each dial
	// Timeout is the longest an exchange may make no progress: waiting
	// to send the request, for the response head, or between two reads of
	// the body (nginx's proxy_send_timeout and proxy_read_timeout).
	Timeout time.Duration
	// Keepalive is how many idle connections the pool keeps; 0 keeps none.
	Keepalive int
	// SurplusTimeout is how long connections over Keepalive stay pooled:
	// when a burst needed more connections at once than Keepalive, those
	// that come back over it are closed once idle that long, not at once,
	// so that a load that stays above Keepalive reuses them rather than
	// dialling and closing a connection for every few requests (haproxy
	// purges its surplus idle connections the same way, after
	// pool-purge-delay). 0 closes them as they come back, as nginx does.
	SurplusTimeout time.Duration
	// IdleTimeout closes pooled connections idle for longer (nginx's
	// upstream keepalive_timeout); 0 keeps them until they are used.
	IdleTimeout time.Duration
	// MaxHeadBytes and MaxHeadFields bound a response head (status line
	// and fields); 0 means 64 KiB and 100.
	MaxHeadBytes, MaxHeadFields int
	// Detach takes a connection out of the Go runtime's poller when an
	// event loop first watches it (see the package doc): for a pool whose
	// exchanges mostly run on the loops (SendNow); one whose exchanges
	// wait on goroutines (Do) would only add a descriptor per connection.
	Detach bool
	// Logger gets a debug line (at most one a second per pool) for each
	// connection closed rather than reused because the upstream sent bytes
	// past a response or closed it while idle; nil logs nothing.
	Logger hclog.Logger
}

// idleEvents is the one-shot registration of an idle connection with the
// pool's watch: any readability (EPOLLIN), the upstream's FIN (EPOLLRDHUP)
// and, always reported, EPOLLHUP and EPOLLERR.
const idleEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

// disarmed is the registration of a connection in use: no readiness but
// EPOLLHUP and EPOLLERR, which epoll adds to every registration, once.
const disarmed = unix.EPOLLONESHOT

// dropLogEvery is how often a pool logs a connection dropped for unread
// bytes or an end seen while idle.
const dropLogEvery = time.Second

// Pool keeps idle connections to one upstream. It is safe for concurrent use.
type Pool struct {
	cfg    Config
	dialer net.Dialer
	// addr is Address as DialNow connects to it: an IP literal's address
	// and port (family AF_INET or AF_INET6), or a unix socket's path
	// (AF_UNIX); family is 0 where DialNow cannot connect (a name to
	// resolve, a zone).
	addr   netip.AddrPort
	path   string
	family int
	mu     sync.Mutex
	idle   []*Conn // most recently used last, so idle[0] has waited longest
	closed bool
	// prune closes the connections idle past IdleTimeout, and those over
	// Keepalive idle past SurplusTimeout; it is armed while idle is not
	// empty, for the first such deadline (that of idle[0]), so that a busy
	// pool costs no timer update per request. armedAt is when it fires;
	// zero while it is not armed.
	prune   *time.Timer
	armedAt time.Time
	// watch waits for idle connections to become readable (see the
	// package doc); made by the first put that keeps a connection, nil
	// before and when it cannot be made (watchTried). tokens numbers the
	// registrations.
	watch      *epoll.Set
	watchTried bool
	tokens     uint64
	logger     hclog.Logger
	dropLim    *lograte.Limiter
	// sendBufs are the copy buffers of streamed request bodies, which
	// cannot use the read buffer while the response head is awaited.
	sendBufs sync.Pool
}

// NewPool returns a pool for cfg.
func NewPool(cfg Config) *Pool {
	if cfg.MaxHeadBytes <= 0 {
		cfg.MaxHeadBytes = maxHeadBytes
	}
	if cfg.MaxHeadFields <= 0 {
		cfg.MaxHeadFields = maxHeadFields
	}
	// No TCP keep-alive probes (Go's Dialer sends them after 15 s by
	// default, four setsockopt calls per dial): an idle pooled connection
	// is closed after IdleTimeout and peeked at before reuse, and an
	// exchange that makes no progress ends at Timeout; nginx's
	// proxy_socket_keepalive is off by default too.
	p := &Pool{cfg: cfg, dialer: net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: -1},
		logger: cfg.Logger, dropLim: lograte.New(dropLogEvery)}
	if p.logger == nil {
		p.logger = hclog.NewNullLogger()
	}
	p.sendBufs.New = func() any { b := make([]byte, bufSize); return &b }
	switch cfg.Network {
	case "tcp", "tcp4", "tcp6":
		if ap, err := netip.ParseAddrPort(cfg.Address); err == nil && ap.Addr().Zone() == "" {
			p.addr, p.family = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), unix.AF_INET6
			if p.addr.Addr().Is4() {
				p.family = unix.AF_INET
			}
		}
	case "unix":
		p.path, p.family = cfg.Address, unix.AF_UNIX
	}
	return p
}

// Get returns an idle connection (Reused reports true), or dials one. Each
// idle connection is taken out of the idle watch and peeked at first,
// however briefly it idled: one with bytes waiting, or that the upstream
// closed, is closed, never handed out.
func (p *Pool) Get() (*Conn, error) {
	if c := p.GetIdle(nil); c != nil {
		return c, nil
	}
	return p.Dial()
}

// GetIdle is Get without the dial: it returns nil when no idle connection
// passes the check. It prefers the most recently used connection that
// prefer watches (an event loop that would serve the exchange: see
// Watcher) and that it may hand out without a peek (prefer has looked
// since: see pick), then the most recently used one that prefer watches,
// else takes the most recently used one.
func (p *Pool) GetIdle(prefer Watcher) *Conn {
	now := time.Now()
	// Looked before any connection is looked at: it only grows, so an
	// older value can only make a connection look unsafe.
	var looked uint64
	lk, _ := prefer.(Looker)
	if lk != nil {
		looked = lk.Looked()
	}
	p.mu.Lock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		k, safe := p.pick(prefer, lk != nil, looked)
		c := p.idle[k]
		p.removeIdle(k)
		// A connection an event loop watches has no registration to
		// end, but is peeked at all the same unless that loop has
		// looked since it went idle (safe; see the package doc): the
		// loop sees its events only at its next epoll_wait, and bytes
		// that came before it (a stray response sent just after the
		// last one, when the connection is reused at once) would
		// otherwise be read as this request's response.
		op := opTake
		if c.lw != nil {
			op = opPeek
		}
		p.mu.Unlock()
		if p.cfg.IdleTimeout > 0 && now.Sub(c.idleAt) >= p.cfg.IdleTimeout {
			c.closeSock()
			p.mu.Lock()
			continue
		}
		if safe {
			c.reused = true
			return c
		}
		if got, _ := c.idleCheck(op); got != epoll.Nothing {
			// Stray bytes (another response's, or a body past the end of
			// the last one), or the upstream closed it while idle (its
			// keep-alive timeout is shorter than ours): not one to send a
			// request on.
			p.drop(c, got, now)
			p.mu.Lock()
			continue
		}
		c.reused = true
		return c
	}
	p.mu.Unlock()
	return nil
}

// maxSafeScan bounds how many of prefer's idle connections GetIdle looks
// through for one it need not peek at, past the most recent: the list is
// scanned under p.mu.
const maxSafeScan = 64

// pick returns the index in the idle list of the connection GetIdle takes
// next, and whether it may be handed out without a peek (safe). It is the
// most recently used connection that prefer watches and that is safe, if
// one is among the last maxSafeScan of prefer's; else the most recent one
// prefer watches; else (none, or prefer nil) the most recent one. epochs:
// prefer is a Looker, whose Looked was looked. p.mu is held.
//
// Safe is exact to the wait: put noted idleEpoch = E, prefer's Epoch
// then, after the last look at the socket (put's peek, or no event since
// the response was read), with c.idle set in the same hold of p.mu. A
// wait numbered above E was numbered after that, and fetches its events
// after it is numbered: so looked > E means a wait that began after the
// connection went idle has fetched all its events (it did not fill its
// buffer) and dispatched them. Any byte, FIN or reset that reached the
// socket before that wait began made an edge that it, or an earlier wait
// whose events were dispatched before it began, reported to loopReady,
// which found c idle and closed it, taking it out of this list. looked ==
// E is not enough: wait E may have fetched its events before the
// connection went idle.
func (p *Pool) pick(prefer Watcher, epochs bool, looked uint64) (k int, safe bool) {
	n := len(p.idle)
	k = n - 1
	if prefer == nil {
		return k, false
	}
	found := false
	for j, seen := n-1, 0; j >= 0 && seen < maxSafeScan; j-- {
		c := p.idle[j]
		if c.lw != prefer {
			continue
		}
		if !found {
			k, found = j, true
		}
		if !epochs {
			break
		}
		if c.ew == prefer && looked > c.idleEpoch {
			return j, true
		}
		seen++
	}
	return k, false
}

// Dial opens a new connection.
func (p *Pool) Dial() (*Conn, error) {
	nc, err := p.dialer.Dial(p.cfg.Network, p.cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDial, err)
	}
	rc, err := rawConn(nc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDial, err)
	}
	return p.newConn(nc, rc, -1), nil
}

// newConn returns a connection of p on the socket nc (rc its RawConn), or
// fd for one that never had a net.Conn (DialNow).
func (p *Pool) newConn(nc net.Conn, rc syscall.RawConn, fd int) *Conn {
	c := &Conn{pool: p, nc: nc, rc: rc, fd: fd, lkey: -1}
	c.fdFn = c.onFD
	if b, ok := readBufs.Get().(*[bufSize]byte); ok {
		c.buf = b[:]
	} else {
		c.buf = make([]byte, bufSize)
	}
	return c
}

// rawConn returns nc's RawConn, or closes nc: the pool watches and peeks at
// the socket (see the package doc), and TCP and unix connections have one.
func rawConn(nc net.Conn) (syscall.RawConn, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("%T is not a socket", nc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		nc.Close()
		return nil, err
	}
	return rc, nil
}

// readBufs holds the read buffers of connections closed after a clean
// exchange (put, over Keepalive): under more concurrent requests than the
// pool keeps, connections are dialled and closed all the time, and each
// would otherwise allocate its buffer anew.
var readBufs sync.Pool

// Idle returns the number of idle connections.
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// Close closes the idle connections and ends the idle watch; connections
// in use are closed when they are released. A pool that kept connections
// holds an epoll descriptor and a goroutine until it is closed.
func (p *Pool) Close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	if p.prune != nil {
		p.prune.Stop()
	}
	if p.watch != nil {
		p.watch.Close() // ends watchIdle
	}
	for _, c := range idle {
		c.idle = false
	}
	p.mu.Unlock()
	for _, c := range idle {
		c.closeSock()
	}
}

// put keeps c, whose exchange is over, as an idle connection, or closes
// it: when bytes past the response are in its buffer, when the pool is
// closed or full, or when it cannot be watched.
func (p *Pool) put(c *Conn) {
	c.idleAt = time.Now()
	if c.r != c.w {
		// The upstream sent more than the response: the next request
		// would read it as its answer.
		if ok, n := p.dropLim.Allow(c.idleAt); ok {
			args := []any{"upstream", p.cfg.Address, "unread", c.w - c.r}
			if n > 0 {
				args = append(args, "suppressed", n)
			}
			p.logger.Debug("upstream sent bytes past the end of a response; connection not reused", args...)
		}
		c.closeSock()
		return
	}
	c.r, c.w = 0, 0
	c.nowait = false
	if cap(c.buf) > bufSize {
		c.buf = make([]byte, bufSize) // a long head grew it
	}
	p.mu.Lock()
	c.onReady = nil // no loop event goes to the last exchange any more
	if c.lw == nil && c.want != nil && !c.inWatch && p.keeps() {
		p.mu.Unlock()
		c.loopWatch()
		p.mu.Lock()
	}
	if !p.keeps() || c.lw == nil && !p.watchLocked(c) {
		p.mu.Unlock()
		c.closeSock()
		// The exchange is over (Release) and nothing aliases the buffer.
		if cap(c.buf) == bufSize {
			readBufs.Put((*[bufSize]byte)(c.buf[:bufSize]))
		}
		c.buf = nil
		return
	}
	if c.lw != nil && c.evSeen {
		// The loop reported the socket readable while it was in use:
		// most often for the response just read, but bytes that came
		// after it would bring no event of their own (edge-triggered),
		// so look.
		c.evSeen = false
		if got, _ := c.idleCheck(opPeek); got != epoll.Nothing {
			p.mu.Unlock()
			p.drop(c, got, c.idleAt)
			return
		}
	}
	// The socket has been looked at for the last time before it idles
	// (the peek above, or no event since the response was read): note
	// the loop's wait epoch now. Under p.mu, with idle set in the same
	// hold, so that any event from now on finds it idle (loopReady).
	c.ew = nil
	if lk, ok := c.lw.(Looker); ok {
		c.ew, c.idleEpoch = c.lw, lk.Epoch()
	}
	c.idle = true
	p.idle = append(p.idle, c)
	p.arm(c.idleAt)
	p.mu.Unlock()
}

// keeps reports whether the pool takes one more idle connection: it is
// open, and not full (or keeps a surplus for a while); p.mu is held.
func (p *Pool) keeps() bool {
	full := len(p.idle) >= p.cfg.Keepalive
	return !p.closed && (!full || p.cfg.SurplusTimeout > 0 && p.cfg.Keepalive > 0)
}

// watchLocked registers c with the idle watch, making the watch on first
// use, before c joins the idle list (under the same hold of p.mu, so that
// the watch finds c by its token however soon an event comes). It
// reports false when c must not be pooled: the registration failed. A
// pool whose watch could not be made keeps its connections unwatched, and
// Get's peek still checks each.
func (p *Pool) watchLocked(c *Conn) bool {
	if p.watch == nil && !p.watchTried {
		p.watchTried = true
		s, err := epoll.NewSet("upstream-idle")
		if err != nil {
			p.logger.Warn("idle upstream connections are not watched", "upstream", p.cfg.Address, "error", err)
		} else {
			p.watch = s
			go p.watchIdle(s)
		}
	}
	if p.watch == nil {
		return true
	}
	p.tokens++
	c.token = p.tokens
	return c.control(opWatch) == nil
}

// watchIdle closes the idle connections that become readable, until the
// pool is closed.
func (p *Pool) watchIdle(s *epoll.Set) {
	for {
		evs, err := s.Wait()
		if err != nil {
			return
		}
		p.readable(evs)
	}
}

// readable handles the watch's events: each idle connection they name
// (by token: one Get has taken since is not there) is peeked at, and
// closed unless nothing is there after all (then it is watched on). An
// upstream sending stray bytes does so once per connection, so this path
// does not run per request.
func (p *Pool) readable(evs []unix.EpollEvent) {
	var drop []*Conn
	var why []epoll.Peeked
	p.mu.Lock()
	for i := range evs {
		tok := epoll.Token(&evs[i])
		k := -1
		for j, c := range p.idle {
			if c.token == tok {
				k = j
				break
			}
		}
		if k < 0 {
			continue // taken, pruned or closed meanwhile
		}
		c := p.idle[k]
		got, err := c.idleCheck(opCheck)
		if got == epoll.Nothing && err == nil {
			continue
		}
		p.removeIdle(k)
		drop = append(drop, c)
		why = append(why, got)
	}
	p.mu.Unlock()
	now := time.Now()
	for i, c := range drop {
		p.drop(c, why[i], now)
	}
}

// drop closes c, an idle connection in which a peek found got (data, or
// the connection's end), and logs why.
func (p *Pool) drop(c *Conn, got epoll.Peeked, now time.Time) {
	c.closeSock()
	ok, n := p.dropLim.Allow(now)
	if !ok {
		return
	}
	args := []any{"upstream", p.cfg.Address, "idle", now.Sub(c.idleAt).Round(time.Microsecond)}
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	if got == epoll.Data {
		p.logger.Debug("upstream sent bytes on an idle connection; closed it", args...)
	} else {
		p.logger.Debug("upstream closed an idle connection", args...)
	}
}

// nextPrune returns when pruneIdle has work next: idle[0], which has
// waited longest, reaches IdleTimeout, or SurplusTimeout while the pool
// holds more than Keepalive. Zero means never. p.mu is held.
func (p *Pool) nextPrune() time.Time {
	var t time.Time
	if len(p.idle) == 0 {
		return t
	}
	oldest := p.idle[0].idleAt
	if p.cfg.IdleTimeout > 0 {
		t = oldest.Add(p.cfg.IdleTimeout)
	}
	if len(p.idle) > p.cfg.Keepalive {
		if s := oldest.Add(p.cfg.SurplusTimeout); t.IsZero() || s.Before(t) {
			t = s
		}
	}
	return t
}

// arm makes pruneIdle run by nextPrune's time, unless it is armed for
// then or earlier already; p.mu is held.
func (p *Pool) arm(now time.Time) {
	t := p.nextPrune()
	if t.IsZero() || !p.armedAt.IsZero() && !p.armedAt.After(t) {
		return
	}
	p.armedAt = t
	if p.prune == nil {
		p.prune = time.AfterFunc(t.Sub(now), p.pruneIdle)
		return
	}
	p.prune.Reset(t.Sub(now))
}

// pruneIdle closes the connections idle for IdleTimeout or longer, and
// those over Keepalive idle for SurplusTimeout, so that the upstream sees
// them end (rather than the next request finding them gone), and rearms
// itself for the next one to expire.
func (p *Pool) pruneIdle() {
	now := time.Now()
	var expired []*Conn
	p.mu.Lock()
	p.armedAt = time.Time{}
	if p.closed {
		p.mu.Unlock()
		return
	}
	n := 0
	for ; n < len(p.idle); n++ {
		idle := now.Sub(p.idle[n].idleAt)
		timedOut := p.cfg.IdleTimeout > 0 && idle >= p.cfg.IdleTimeout
		surplus := len(p.idle)-n > p.cfg.Keepalive && idle >= p.cfg.SurplusTimeout
		if !timedOut && !surplus {
			break
		}
	}
	if n > 0 {
		for _, c := range p.idle[:n] {
			c.idle = false
		}
		expired = append(expired, p.idle[:n]...)
		m := copy(p.idle, p.idle[n:])
		clear(p.idle[m:])
		p.idle = p.idle[:m]
	}
	p.arm(now)
	p.mu.Unlock()
	for _, c := range expired {
		c.closeSock()
	}
}

// Body framings of a response.
const (
	bodyNone = iota
	bodyLength
	bodyChunked
	bodyClose // until the upstream closes the connection
)

// Flusher sends what the caller has written so far to its client; the Conn
// calls it before it waits for the upstream, so that streamed responses
// reach the client as the upstream sends them.
type Flusher interface{ Flush() error }

// Conn is one connection to an upstream.
type Conn struct {
	pool *Pool
	// The socket: nc (rc is its RawConn) from the dial until put detaches
	// it for an event loop, then fd, and nc as well once a goroutine has
	// had to wait on it (attach; see the package doc). fd is -1 until it
	// is detached, and after Tunnel.
	nc     net.Conn
	rc     syscall.RawConn
	fd     int
	reused bool
	idleAt time.Time

	// The event loop watching the socket (Watcher), once put has
	// registered it there: lw and lkey, with idle (the connection is in
	// the pool's idle list) and evSeen (the loop reported it readable
	// while it was in use), change under pool.mu. want is the watcher
	// its owner offers (SetWatcher); looped, that lw was ever set, is
	// the owner's.
	want   Watcher
	lw     Watcher
	lkey   int
	idle   bool
	evSeen bool
	looped bool
	// The wait epoch of the loop ew (lw when put recorded it, and a
	// Looker) at which the connection last went idle (put), under
	// pool.mu: GetIdle skips its peek once ew has completed a later wait.
	ew        Watcher
	idleEpoch uint64

	// onReady, under pool.mu, is the owner's function that the loop's
	// events for the socket go to while it is in use (OnReady).
	onReady func(gone bool)
	// An exchange served by the owner's event loop (SendNow): nowait
	// makes reads return errAgain instead of waiting, pend is the part of
	// the request the socket did not take, lwerr the write's error,
	// noBody Do's argument, interim the 1xx responses skipped so far.
	// dialing: DialNow's connect may not be done (no byte has gone out).
	nowait  bool
	dialing bool
	dialAt  time.Time
	pend    []byte
	lwerr   error
	noBody  bool
	interim int

	// The idle watch's registration (token) and what control does with
	// the descriptor: fdFn is onFD, made once, so that Control allocates
	// nothing; op, peeked and opErr are its argument and results.
	token   uint64
	inWatch bool // the socket is in the watch's epoll set (armed or not)
	fdFn    func(uintptr)
	op      fdOp
	peeked  epoll.Peeked
	opErr   error

	buf  []byte // read buffer; buf[r:w] is unread
	r, w int
	out  []byte // the request head, built by the caller

	head     wire.ResponseHead
	mode     uint8
	chunks   wire.Chunked // the framing of a chunked body
	left     int64        // bytes left in a Content-Length body
	done     bool         // the body has been read to its end
	reusable bool
	err      error // sticky body error
	got      bool  // a byte of the response arrived

	flusher   Flusher
	unflushed bool

	// A body sent while the head is awaited (duplex): the head reader
	// sets answered when it is done; the sender stores when it last moved
	// a byte and whether it waits for its stream.
	headCh   chan headResult
	answered atomic.Bool
	sending  atomic.Bool
	inStream atomic.Bool
	moved    atomic.Int64 // unix nanoseconds
	bodyLeft bool
	queued   int // the send queue's length at the last look (waitOn)

	// The trailer fields of a chunked body: copied into tarena (the read
	// buffer moves on under them), at toff as name start, name end, value
	// end; Trailer makes them into fields.
	tarena  []byte
	toff    []int
	trailer []wire.RespField

	rdeadline time.Time
	wdeadline time.Time
}

// Reused reports whether the connection came from the pool.
func (c *Conn) Reused() bool { return c.reused }

// What Conn.control does with the socket's descriptor.
type fdOp uint8

const (
	opPeek  fdOp = iota // peek, nothing more
	opWatch             // register it with the idle watch
	opCheck             // the idle check, for the watch: peek; arm again if nothing is there
	opTake              // the idle check, for Get: end the registration, then peek
)

// control does op with the socket's descriptor (withFD); an error is
// op's, or a closed socket.
func (c *Conn) control(op fdOp) error {
	c.op, c.opErr, c.peeked = op, nil, epoll.Gone
	if err := c.withFD(c.fdFn); err != nil {
		return err
	}
	return c.opErr
}

// withFD calls f with the socket's descriptor: the detached one, or nc's
// inside RawConn.Control, which keeps it open meanwhile. Only the owner,
// or Pool.mu's holder while c is idle, calls it.
func (c *Conn) withFD(f func(fd uintptr)) error {
	switch {
	case c.fd >= 0:
		f(uintptr(c.fd))
		return nil
	case c.rc == nil:
		return net.ErrClosed // detached, and closed since
	}
	return c.rc.Control(f)
}

// detach takes the socket out of the runtime's poller, for an event loop
// to watch (see the package doc): fd becomes a duplicate of nc's
// descriptor, and nc is closed. If no duplicate can be made the socket
// stays as it was, and works as before.
func (c *Conn) detach() {
	if c.fd >= 0 {
		return
	}
	fd := -1
	c.rc.Control(func(s uintptr) {
		if d, err := unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0); err == nil {
			fd = d
		}
	})
	if fd < 0 {
		return
	}
	c.nc.Close() // the socket lives on in fd; net drops its registration
	c.nc, c.rc, c.fd = nil, nil, fd
}

// attach gives a detached socket a net.Conn again, for a goroutine that
// must wait on it; it stays until the connection closes. The read and
// write deadlines start unset.
func (c *Conn) attach() error {
	if c.nc != nil {
		return nil
	}
	nc, err := fileConn(c.fd)
	if err != nil {
		return fmt.Errorf("taking the socket back from the event loop: %w", err)
	}
	rc, err := rawConn(nc)
	if err != nil {
		return fmt.Errorf("taking the socket back from the event loop: %w", err)
	}
	c.nc, c.rc = nc, rc
	c.rdeadline, c.wdeadline = time.Time{}, time.Time{}
	return nil
}

// fileConn returns a net.Conn on a duplicate of fd, which stays open; a
// variable, so that tests can make it fail.
var fileConn = func(fd int) (net.Conn, error) {
	d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("fcntl", err)
	}
	f := os.NewFile(uintptr(d), "upstream")
	defer f.Close()
	return net.FileConn(f)
}

// onFD is control's callback.
func (c *Conn) onFD(fd uintptr) {
	if c.op == opWatch {
		// The socket joins the watch's epoll set at its first put and
		// stays in it until it is closed: later puts arm it again with
		// MOD, which costs the kernel less than an ADD (a new entry,
		// the socket's wait queue) and the DEL before it.
		op := unix.EPOLL_CTL_MOD
		if !c.inWatch {
			op = unix.EPOLL_CTL_ADD
		}
		c.opErr = c.pool.watch.Ctl(op, int(fd), idleEvents, c.token)
		c.inWatch = c.opErr == nil
		return
	}
	if c.op == opTake && c.token != 0 {
		// Disarmed before the peek: anything that arrives from now on is
		// the owner's to read. The registration stays, waiting for no
		// data (EPOLLHUP and EPOLLERR, which epoll always reports, at
		// most once: it is one-shot; the watch ignores the spent token).
		if c.pool.watch.Ctl(unix.EPOLL_CTL_MOD, int(fd), disarmed, 0) != nil {
			c.pool.watch.Ctl(unix.EPOLL_CTL_DEL, int(fd), 0, 0)
			c.inWatch = false
		}
		c.token = 0
	}
	c.peeked = epoll.Peek(int(fd))
	if c.op == opCheck && c.peeked == epoll.Nothing {
		c.opErr = c.pool.watch.Ctl(unix.EPOLL_CTL_MOD, int(fd), idleEvents, c.token)
	}
}

// idleCheck is the one check of an idle connection, for Get (opTake) and
// for the idle watch (opCheck), in one RawConn.Control: a peek (recv with
// MSG_PEEK|MSG_DONTWAIT) finds Nothing when the connection may carry a
// request, and Data (stray bytes) or Gone (its end, a reset, a closed
// socket) when it must be closed. err is the watch registration's.
func (c *Conn) idleCheck(op fdOp) (epoll.Peeked, error) {
	err := c.control(op)
	return c.peeked, err
}

// HeadBuffer returns an empty buffer to build the request head in, for Do.
func (c *Conn) HeadBuffer() []byte { return c.out[:0] }

// Close closes the connection.
func (c *Conn) Close() { c.closeSock() }

// Release ends the exchange: the connection goes back to the pool when the
// response was read to its end and may be followed by another, and is
// closed otherwise.
func (c *Conn) Release() {
	c.flusher = nil
	if c.reusable && c.done && c.err == nil {
		c.pool.put(c) // closes it if bytes past the response are buffered
		return
	}
	c.closeSock()
}

// Tunnel hands the connection over after a 101 response: it returns the
// socket and the bytes already read past the response head, which belong
// to the new protocol. The Conn must not be used afterwards.
func (c *Conn) Tunnel() (net.Conn, []byte, error) {
	if err := c.attach(); err != nil {
		c.closeSock()
		return nil, nil, err
	}
	c.unwatchOpen()
	if c.fd >= 0 {
		unix.Close(c.fd) // nc's descriptor keeps the socket
		c.fd = -1
	}
	return c.nc, c.buf[c.r:c.w], nil
}

// Do sends the request head (built in HeadBuffer's buffer) and its body,
// and reads the response head. The body is body, or n bytes of stream when
// stream is not nil (n < 0: the head says chunked, and stream is sent
// chunked to its EOF). noBody is true for a HEAD request, whose response
// has no body whatever its head says. 1xx responses other than 101 are
// skipped.
//
// A small body is written before the response is read. A larger one, or a
// stream, is sent while another goroutine waits for the response head
// (the one goroutine of Do's that touches neither stream nor the
// caller's state): an upstream may answer before it has read the whole
// request (a 413, a 401), and then stop reading or close, or send a
// response larger than the socket buffers before it reads on. Once a head
// has arrived the rest of the body is not sent (BodyLeft reports whether
// part of stream was left unread) and the connection is not reused. While
// the body moves, or the caller's stream is being read, the wait for the
// head does not time out.
//
// The head stays valid until the first body read.
func (c *Conn) Do(head, body []byte, stream io.Reader, n int64, noBody bool) (*Response, error) {
	c.begin(head)
	if err := c.attach(); err != nil {
		// Nothing was sent: as a connection found closed, the request
		// may go again on a new one.
		return nil, fmt.Errorf("%w: %w", ErrNoResponse, err)
	}
	if stream != nil || len(body) > syncBody {
		return c.duplex(head, body, stream, n, noBody)
	}
	werr := c.send(head, body, nil, 0, nil)
	return c.afterSend(werr, noBody)
}

// begin resets the exchange state for a new request.
func (c *Conn) begin(head []byte) {
	c.out = head
	c.mode, c.left, c.done, c.reusable, c.err, c.got = bodyNone, 0, false, false, nil, false
	c.chunks.Reset()
	c.tarena, c.toff = c.tarena[:0], c.toff[:0]
	c.bodyLeft, c.queued = false, math.MaxInt
	c.interim, c.pend, c.lwerr = 0, nil, nil
}

// afterSend reads the response head of a request sent (werr: the write's
// error) and says what Do says.
func (c *Conn) afterSend(werr error, noBody bool) (*Response, error) {
	h, err := c.readHead(noBody)
	if err == ErrWouldBlock {
		return nil, err
	}
	if err != nil && werr != nil && !c.got {
		// Nothing came back either: the write's error is the better cause.
		return nil, fmt.Errorf("%w: %w", ErrNoResponse, werr)
	}
	if err != nil {
		return nil, err
	}
	if werr != nil {
		// The upstream answered before it took the whole request (a 413,
		// say): pass the answer on, but never reuse the connection.
		c.reusable = false
	}
	return h, nil
}

// BodyLeft reports whether Do stopped reading the request body's stream
// before its end, because the response came first: the rest of it is
// still with the client.
func (c *Conn) BodyLeft() bool { return c.bodyLeft }

// headResult is what the head reader of duplex hands over.
type headResult struct {
	h   *Response
	err error
}

// duplex is Do for a body sent while the head is awaited.
func (c *Conn) duplex(head, body []byte, stream io.Reader, n int64, noBody bool) (*Response, error) {
	if c.headCh == nil {
		c.headCh = make(chan headResult, 1)
	}
	c.answered.Store(false)
	c.sending.Store(true)
	c.moved.Store(time.Now().UnixNano())
	go func() {
		h, err := c.readHead(noBody)
		// Stop the sender: it checks answered before each write, and a
		// write already waiting for the upstream fails at once.
		c.answered.Store(true)
		c.nc.SetWriteDeadline(aLongTimeAgo)
		c.headCh <- headResult{h, err}
	}()
	var buf []byte
	var bp *[]byte
	if stream != nil {
		bp = c.pool.sendBufs.Get().(*[]byte)
		buf = *bp
	}
	werr := c.send(head, body, stream, n, buf)
	c.sending.Store(false)
	if bp != nil {
		c.pool.sendBufs.Put(bp)
	}
	switch {
	case werr == nil, c.answered.Load():
	case errors.Is(werr, ErrRequestBody):
		// The client failed: the exchange cannot go on.
		c.closeSock()
	default:
		// Write timeouts end the wait for the head too; after a reset
		// the head reader sees the connection's end (or an answer the
		// upstream sent before it).
		var ne net.Error
		if errors.As(werr, &ne) && ne.Timeout() {
			c.nc.SetReadDeadline(aLongTimeAgo)
		}
	}
	res := <-c.headCh
	c.wdeadline = time.Time{} // the head reader moved it
	if werr != nil && errors.Is(werr, ErrRequestBody) {
		return nil, werr
	}
	if res.err != nil {
		if werr != nil && !c.got && !errors.Is(res.err, ErrTimeout) {
			return nil, fmt.Errorf("%w: %w", ErrNoResponse, werr)
		}
		return nil, res.err
	}
	if werr != nil || c.bodyLeft {
		// The answer came before the whole request went out.
		c.reusable = false
	}
	return res.h, nil
}

// aLongTimeAgo is a deadline that makes waiting I/O fail at once.
var aLongTimeAgo = time.Unix(1, 0)

// waitOn reports whether a wait for the head that failed with err should go
// on: it timed out while the request body is still moving: written by the
// sender within the timeout, or read from the caller's stream (the
// client's pace, which its own timeouts bound), or, once all of it is
// written, taken by the upstream out of the socket's send queue since the
// last look (which the kernel's buffers, megabytes on a fast link, would
// otherwise hide from the timeout).
func (c *Conn) waitOn(err error) bool {
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || c.answered.Load() {
		return false
	}
	if c.sending.Load() {
		return c.inStream.Load() || time.Since(time.Unix(0, c.moved.Load())) < c.pool.cfg.Timeout
	}
	if q := c.unsent(); q > 0 && q < c.queued {
		c.queued = q
		return true
	}
	return false
}

// unsent returns how many bytes of the socket's send queue the upstream has
// not taken yet (SIOCOUTQ), or 0 when that is unknown.
func (c *Conn) unsent() int {
	if c.rc == nil {
		return 0
	}
	n := 0
	// nc's RawConn, not fd: the sender may close the connection meanwhile.
	c.rc.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ); err == nil {
			n = v
		}
	})
	return n
}

// setWriteDeadline gives the next write the timeout; like the read
// deadline, it is moved only when a quarter of the timeout has gone by.
func (c *Conn) setWriteDeadline() {
	if t := c.pool.cfg.Timeout; t > 0 {
		now := time.Now()
		if c.wdeadline.Sub(now) < t*3/4 {
			c.wdeadline = now.Add(t)
			c.nc.SetWriteDeadline(c.wdeadline)
		}
	}
}

// send writes the head and the body, copying a stream through buf (not the
// read buffer: the head reader of duplex uses it meanwhile). It stops early,
// with the stream's rest unread, once the head reader of duplex has an
// answer; the deadline is set before that check, so that the reader's
// "fail now" deadline, set after its flag, is the one a write sees.
func (c *Conn) send(head, body []byte, stream io.Reader, n int64, buf []byte) error {
	c.setWriteDeadline()
	if stream == nil {
		if len(body) == 0 {
			_, err := c.nc.Write(head)
			return err
		}
		bufs := net.Buffers{head, body}
		_, err := bufs.WriteTo(c.nc)
		return err
	}
	if _, err := c.nc.Write(head); err != nil {
		c.bodyLeft = true
		return err
	}
	chunked := n < 0
	for n != 0 {
		p := buf
		if chunked {
			p = buf[10 : len(buf)-2] // room for the chunk line and CRLF
		} else if int64(len(p)) > n {
			p = p[:n]
		}
		c.inStream.Store(true)
		m, rerr := stream.Read(p)
		c.inStream.Store(false)
		if m > 0 {
			c.moved.Store(time.Now().UnixNano())
			out := p[:m]
			if chunked {
				out = appendChunk(buf, m)
			} else {
				n -= int64(m)
			}
			atEnd := rerr == io.EOF || !chunked && n == 0
			c.setWriteDeadline()
			if c.answered.Load() {
				c.bodyLeft = !atEnd
				return nil
			}
			if _, err := c.nc.Write(out); err != nil {
				c.bodyLeft = !atEnd
				return err
			}
			c.moved.Store(time.Now().UnixNano())
		}
		if rerr == io.EOF {
			if !chunked && n > 0 {
				return fmt.Errorf("%w: %w", ErrRequestBody, io.ErrUnexpectedEOF)
			}
			break
		}
		if rerr != nil {
			return fmt.Errorf("%w: %w", ErrRequestBody, rerr)
		}
		if c.answered.Load() {
			c.bodyLeft = chunked || n != 0
			return nil
		}
	}
	if chunked {
		_, err := c.nc.Write(lastChunk)
		return err
	}
	return nil
}

var lastChunk = []byte("0\r\n\r\n")

// appendChunk frames the m bytes at buf[10:] as one chunk and returns it.
func appendChunk(buf []byte, m int) []byte {
	const hex = "0123456789abcdef"
	var line [10]byte
	i := len(line)
	line[i-1], line[i-2] = '\n', '\r'
	i -= 2
	for v := m; ; v >>= 4 {
		i--
		line[i] = hex[v&15]
		if v < 16 {
			break
		}
	}
	start := 10 - (len(line) - i)
	copy(buf[start:10], line[i:])
	buf[10+m], buf[11+m] = '\r', '\n'
	return buf[start : 12+m]
}

// fill reads more bytes into buf[w:].
func (c *Conn) fill() error {
	m, err := c.readInto(c.buf[c.w:cap(c.buf)])
	c.w += m
	return err
}

// readInto flushes the caller's output, then reads into p with the read
// deadline; it returns a positive count or an error.
func (c *Conn) readInto(p []byte) (int, error) {
	if c.unflushed && c.flusher != nil {
		c.unflushed = false
		if err := c.flusher.Flush(); err != nil {
			return 0, fmt.Errorf("%w: %w", ErrFlush, err)
		}
	}
	if c.nowait {
		return c.readNow(p)
	}
	if err := c.attach(); err != nil {
		return 0, err
	}
	if t := c.pool.cfg.Timeout; t > 0 {
		// Moving a deadline costs a timer update: only when a quarter of
		// the timeout has gone by.
		now := time.Now()
		if c.rdeadline.Sub(now) < t*3/4 {
			c.rdeadline = now.Add(t)
			c.nc.SetReadDeadline(c.rdeadline)
		}
	}
	m, err := c.nc.Read(p)
	if m > 0 {
		c.got = true
		return m, nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return 0, err
}

// compact moves the unread bytes to the start of the buffer.
func (c *Conn) compact() {
	if c.r > 0 {
		c.w = copy(c.buf[:cap(c.buf)], c.buf[c.r:c.w])
		c.r = 0
	}
}

// readHead reads and parses the response head.
func (c *Conn) readHead(noBody bool) (*wire.ResponseHead, error) {
	h := &c.head
	for {
		var err error
		n := 0
		if c.w > c.r {
			n, err = wire.ParseResponseHead(h, c.buf[c.r:c.w], c.pool.cfg.MaxHeadBytes, c.pool.cfg.MaxHeadFields)
		} else {
			err = wire.ErrNeedMore
		}
		if err == nil {
			c.r += n
			if h.Status >= 200 || h.Status == 101 {
				break
			}
			if c.interim++; c.interim > maxInterim {
				return nil, fmt.Errorf("%w: too many interim responses", ErrBadResponse)
			}
			continue
		}
		if err != wire.ErrNeedMore {
			return nil, fmt.Errorf("%w: %w", ErrBadResponse, err)
		}
		if c.w == cap(c.buf) {
			if c.r > 0 {
				c.compact()
			} else {
				nb := make([]byte, min(2*cap(c.buf), c.pool.cfg.MaxHeadBytes+1))
				c.w = copy(nb, c.buf[:c.w])
				c.buf = nb
			}
		}
		if err := c.fill(); err != nil {
			if err == ErrWouldBlock {
				return nil, err
			}
			if c.waitOn(err) {
				continue
			}
			return nil, c.readErr(err)
		}
	}
	c.reusable = !h.Close
	switch {
	case h.Status == 101:
		c.mode = bodyNone
		c.reusable = false
	case noBody || h.Status == 204 || h.Status == 304:
		c.mode = bodyNone
	case h.Chunked:
		c.mode = bodyChunked
	case h.ContentLength >= 0:
		c.mode = bodyLength
		c.left = h.ContentLength
	default:
		c.mode = bodyClose
		c.reusable = false
	}
	c.done = c.mode == bodyNone || c.mode == bodyLength && c.left == 0
	c.unflushed = true
	return h, nil
}

// readErr classifies a failed read while waiting for a head.
func (c *Conn) readErr(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, ErrFlush):
		return err
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	case !c.got && (err == io.EOF || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)):
		return fmt.Errorf("%w: %w", ErrNoResponse, err)
	}
	return fmt.Errorf("%w: %w", ErrBadResponse, err)
}

// SetFlusher sets who is flushed before each wait for body bytes; the head
// counts as unflushed output.
func (c *Conn) SetFlusher(f Flusher) { c.flusher = f }

// Trailer returns the trailer fields of a chunked body read to its end;
// they are valid until the next exchange.
func (c *Conn) Trailer() []Field {
	if !c.done || len(c.toff) == 0 {
		return nil
	}
	clear(c.trailer)
	c.trailer = c.trailer[:0]
	for i := 0; i+2 < len(c.toff); i += 3 {
		ns, ne, ve := c.toff[i], c.toff[i+1], c.toff[i+2]
		c.trailer = append(c.trailer, wire.RespField{Name: c.tarena[ns:ne:ne], Value: c.tarena[ne:ve:ve]})
	}
	return c.trailer
}

// Buffered reports whether body bytes are at hand without waiting.
func (c *Conn) Buffered() bool { return c.w > c.r }

// Read reads the decoded response body; io.EOF at its end.
func (c *Conn) Read(p []byte) (int, error) {
	if c.done {
		return 0, io.EOF
	}
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.read(p)
	if n > 0 {
		c.unflushed = true
	}
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

func (c *Conn) read(p []byte) (int, error) {
	switch c.mode {
	case bodyLength:
		n, err := c.readData(p, c.left)
		c.left -= int64(n)
		if c.left == 0 {
			c.done = true
		}
		return n, err
	case bodyClose:
		n, err := c.readData(p, -1)
		if err == io.EOF {
			c.done = true
		}
		return n, err
	}
	d := &c.chunks
	for {
		used, step := d.Next(c.buf[c.r:c.w])
		c.r += used
		switch step {
		case wire.ChunkNeed:
			if c.w == cap(c.buf) {
				c.compact()
			}
			if err := c.fill(); err != nil {
				return 0, c.bodyErr(err)
			}
		case wire.ChunkBad:
			return 0, fmt.Errorf("%w: bad chunked framing", ErrBadResponse)
		case wire.ChunkData:
			n, err := c.readData(p, d.Left())
			d.Consume(n)
			if n > 0 || err != nil {
				return n, err
			}
		default: // wire.ChunkTrailer
			line, err := c.line()
			if err != nil {
				return 0, err
			}
			// Trailer fields are kept for Trailer.
			name, value, err := c.trailerField(line, len(c.toff)/3, len(c.tarena))
			if err != nil {
				return 0, err
			}
			if name == nil {
				c.done = true
				return 0, io.EOF
			}
			c.tarena = append(c.tarena, name...)
			ne := len(c.tarena)
			c.tarena = append(c.tarena, value...)
			c.toff = append(c.toff, ne-len(name), ne, len(c.tarena))
		}
	}
}

// trailerField checks a trailer line (with its CRLF), which follows fields
// fields whose names and values take size bytes: trailer fields have the
// header's syntax and limits (RFC 9112 §7.1.2). It returns the field's
// name and value, a nil name for the empty line that ends the section, or
// the error read reports. chunkedIn makes the same checks.
func (c *Conn) trailerField(line []byte, fields, size int) (name, value []byte, err error) {
	name, value, _, st := wire.ParseFieldLine(line, 0)
	switch {
	case st != 0:
		return nil, nil, fmt.Errorf("%w: bad trailer", ErrBadResponse)
	case name == nil:
		return nil, nil, nil
	case fields >= c.pool.cfg.MaxHeadFields || size+len(line) > c.pool.cfg.MaxHeadBytes:
		return nil, nil, fmt.Errorf("%w: trailer section too large", ErrBadResponse)
	}
	return name, value, nil
}

// cutLine returns the first line of b with its CRLF, or nil with no error
// while b holds no whole line yet. A line ending in a bare LF, or one
// longer than wire.MaxChunkLine with no end in sight, is an error.
func cutLine(b []byte) ([]byte, error) {
	i := bytes.IndexByte(b, '\n')
	switch {
	case i < 0 && len(b) > wire.MaxChunkLine:
		return nil, fmt.Errorf("%w: trailer line too long", ErrBadResponse)
	case i < 0:
		return nil, nil
	case i < 1 || b[i-1] != '\r':
		return nil, fmt.Errorf("%w: bare LF", ErrBadResponse)
	}
	return b[:i+1], nil
}

// line returns the next trailer line with its CRLF, reading as needed.
func (c *Conn) line() ([]byte, error) {
	for {
		line, err := cutLine(c.buf[c.r:c.w])
		if err != nil {
			return nil, err
		}
		if line != nil {
			c.r += len(line)
			return line, nil
		}
		if c.w == cap(c.buf) {
			c.compact()
		}
		if err := c.fill(); err != nil {
			return nil, c.bodyErr(err)
		}
	}
}

// readData reads up to limit bytes (any number when limit < 0).
func (c *Conn) readData(p []byte, limit int64) (int, error) {
	if limit >= 0 && int64(len(p)) > limit {
		p = p[:limit]
	}
	if c.r == c.w {
		if len(p) >= directRead {
			// Straight from the socket into p: no copy through buf.
			c.r, c.w = 0, 0
			n, err := c.readInto(p)
			if err != nil {
				return 0, c.bodyErr(err)
			}
			return n, nil
		}
		c.r, c.w = 0, 0
		if err := c.fill(); err != nil {
			return 0, c.bodyErr(err)
		}
	}
	n := copy(p, c.buf[c.r:c.w])
	c.r += n
	return n, nil
}

// bodyErr classifies a failed read inside a body.
func (c *Conn) bodyErr(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, ErrFlush):
		return err
	case err == io.EOF:
		if c.mode == bodyClose {
			return io.EOF
		}
		return ErrTruncated
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return fmt.Errorf("%w: %w", ErrTruncated, err)
}

// Watcher watches idle connections' sockets for the pool on an event loop
// that polls anyway: protocol.SocketWatcher, one of the server's loops (see
// the package doc). Watch registers fd (kept open by the caller meanwhile)
// edge-triggered for readability and writability (DialNow's connect ends
// with the latter), once, until Unwatch or the socket's close; ready runs on the loop's goroutine at each event, and once with
// gone true when the loop ends. Unwatch with fd -1 frees the registration
// of a socket that is closing; with its descriptor (kept open) it also
// takes the socket out of the loop's epoll set.
type Watcher interface {
	Watch(fd int, ready func(gone bool)) (key int, err error)
	Unwatch(key, fd int)
}

// Looker is implemented by a Watcher that numbers its waits for events
// (protocol's event loops do), so that GetIdle can hand out a connection
// it watches without a peek once it has looked since the connection went
// idle (see the package doc). Both are safe for concurrent use.
type Looker interface {
	// Epoch is the number of the latest wait, numbered before it
	// fetches its events; numbers grow by one per wait.
	Epoch() uint64
	// Looked is the number of the latest wait all of whose events were
	// fetched and dispatched (their ready calls returned): not one that
	// may have left events in the kernel (a full event buffer) or that
	// failed. 0 before any.
	Looked() uint64
}

// SetWatcher offers w, the owner's event loop, to watch the connection
// once it is idle (nil: the pool's own idle watch). The first put after
// it registers the socket with w, where it stays until it is closed.
func (c *Conn) SetWatcher(w Watcher) { c.want = w }

// loopWatch registers c's socket with c.want, for an owner about to put c
// in the pool. The registration is edge-triggered and stays until the
// socket closes: taking c out of the pool and putting it back costs no
// system call. evSeen makes put look at the socket once, for bytes that
// came before it. On failure c stays unregistered and the pool's own watch
// takes it.
func (c *Conn) loopWatch() {
	p := c.pool
	if p.cfg.Detach {
		c.detach()
	}
	if werr, ok := c.watchOn(c.want, true); !ok {
		if ok, n := p.dropLim.Allow(time.Now()); ok && werr != nil {
			p.logger.Debug("idle upstream connection not watched by the event loop", "upstream", p.cfg.Address,
				"error", werr, "suppressed", n)
		}
	}
}

// watchOn registers c's socket with w (loopWatch, DialNow), reporting
// whether it did; werr is Watch's error. lw is set before the
// registration, under pool.mu, so that loopReady never ignores an event of
// it; seen sets evSeen with it.
func (c *Conn) watchOn(w Watcher, seen bool) (werr error, ok bool) {
	p := c.pool
	p.mu.Lock()
	c.lw, c.lkey = w, -1
	if seen {
		c.evSeen = true
	}
	p.mu.Unlock()
	key := -1
	err := c.withFD(func(fd uintptr) { key, werr = w.Watch(int(fd), c.loopReady) })
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil || werr != nil {
		if c.lw == w {
			c.lw = nil
		}
		return werr, false
	}
	c.looped = true
	if c.lw == w {
		c.lkey = key
	}
	return nil, true
}

// loopReady is the loop's report of an event of c's socket. While c is
// idle that means stray bytes, the upstream's FIN or a reset (or, rarely,
// an event for bytes of the last response that the loop fetched only after
// c went idle, or the writability a socket has when it is registered): a
// peek tells which, and c is closed unless nothing is there. While c is in use it is noted for put (evSeen). gone:
// the loop ended, and c is unwatched from now on (Get peeks at it again).
func (c *Conn) loopReady(gone bool) {
	p := c.pool
	p.mu.Lock()
	switch {
	case c.lw == nil:
		// Unwatched, closed, or an event meant for a socket whose key c
		// has taken over: nothing to do.
	case gone:
		c.lw, c.lkey = nil, -1
		if f := c.onReady; f != nil {
			c.onReady = nil
			p.mu.Unlock()
			f(true)
			return
		}
	case !c.idle && c.onReady != nil:
		// An exchange on the loop waits for the response (OnReady).
		f := c.onReady
		p.mu.Unlock()
		f(false)
		return
	case !c.idle:
		c.evSeen = true
	default:
		got, _ := c.idleCheck(opPeek)
		if got == epoll.Nothing {
			break
		}
		for k, ic := range p.idle {
			if ic == c {
				p.removeIdle(k)
				p.mu.Unlock()
				p.drop(c, got, time.Now())
				return
			}
		}
	}
	p.mu.Unlock()
}

// removeIdle takes idle[k] out of the idle list; p.mu is held.
func (p *Pool) removeIdle(k int) {
	p.idle[k].idle = false
	copy(p.idle[k:], p.idle[k+1:])
	p.idle[len(p.idle)-1] = nil
	p.idle = p.idle[:len(p.idle)-1]
}

// closeSock closes the socket, freeing its loop registration first if it
// has one.
func (c *Conn) closeSock() {
	if w, key := c.takeWatch(); w != nil {
		w.Unwatch(key, -1)
	}
	if c.nc != nil {
		c.nc.Close()
	}
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
}

// unwatchOpen takes the socket, which stays open (Tunnel), out of its
// loop's watch.
func (c *Conn) unwatchOpen() {
	if w, key := c.takeWatch(); w != nil {
		c.withFD(func(fd uintptr) { w.Unwatch(key, int(fd)) })
	}
}

// takeWatch returns the loop that watches c and c's key there, forgotten
// from now on; nil when no loop does.
func (c *Conn) takeWatch() (Watcher, int) {
	if !c.looped {
		return nil, -1
	}
	p := c.pool
	p.mu.Lock()
	w, key := c.lw, c.lkey
	c.lw, c.lkey = nil, -1
	c.onReady = nil
	p.mu.Unlock()
	if key < 0 {
		return nil, -1
	}
	return w, key
}
