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
// Tunnel. Only the owner reads, writes or sets deadlines on it.
package upstream

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/forkd/forkd/protocol/internal/wire"
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
	directRead   = 8 << 10
	maxChunkLine = 4 << 10
	// checkIdle is how long a pooled connection must have been idle for
	// Get to peek at it (Alive) before handing it out: upstreams close
	// connections that have idled, and a busy pool costs no syscall.
	checkIdle = time.Second
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
}

// Pool keeps idle connections to one upstream. It is safe for concurrent use.
type Pool struct {
	cfg    Config
	dialer net.Dialer
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
	p := &Pool{cfg: cfg, dialer: net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: -1}}
	p.sendBufs.New = func() any { b := make([]byte, bufSize); return &b }
	return p
}

// Get returns an idle connection (Reused reports true), or dials one. A
// connection idle for a second or more is checked with Alive first.
func (p *Pool) Get() (*Conn, error) {
	now := time.Now()
	p.mu.Lock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if p.cfg.IdleTimeout > 0 && now.Sub(c.idleAt) >= p.cfg.IdleTimeout {
			p.mu.Unlock()
			c.nc.Close()
			p.mu.Lock()
			continue
		}
		p.mu.Unlock()
		if now.Sub(c.idleAt) >= checkIdle && !c.Alive() {
			// Closed by the upstream while idle (its keep-alive timeout
			// is shorter than ours): not one to send a request on.
			c.nc.Close()
			p.mu.Lock()
			continue
		}
		c.reused = true
		return c, nil
	}
	p.mu.Unlock()
	return p.Dial()
}

// Dial opens a new connection.
func (p *Pool) Dial() (*Conn, error) {
	nc, err := p.dialer.Dial(p.cfg.Network, p.cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDial, err)
	}
	c := &Conn{pool: p, nc: nc}
	if b, ok := readBufs.Get().(*[bufSize]byte); ok {
		c.buf = b[:]
	} else {
		c.buf = make([]byte, bufSize)
	}
	return c, nil
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

// Close closes the idle connections; connections in use are closed when
// they are released.
func (p *Pool) Close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	if p.prune != nil {
		p.prune.Stop()
	}
	p.mu.Unlock()
	for _, c := range idle {
		c.nc.Close()
	}
}

func (p *Pool) put(c *Conn) {
	c.idleAt = time.Now()
	p.mu.Lock()
	full := len(p.idle) >= p.cfg.Keepalive
	if p.closed || full && (p.cfg.SurplusTimeout <= 0 || p.cfg.Keepalive <= 0) {
		p.mu.Unlock()
		c.nc.Close()
		// The exchange is over (Release) and nothing aliases the buffer.
		if cap(c.buf) == bufSize {
			readBufs.Put((*[bufSize]byte)(c.buf[:bufSize]))
		}
		c.buf = nil
		return
	}
	p.idle = append(p.idle, c)
	p.arm(c.idleAt)
	p.mu.Unlock()
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
		expired = append(expired, p.idle[:n]...)
		m := copy(p.idle, p.idle[n:])
		clear(p.idle[m:])
		p.idle = p.idle[:m]
	}
	p.arm(now)
	p.mu.Unlock()
	for _, c := range expired {
		c.nc.Close()
	}
}

// Body framings of a response.
const (
	bodyNone = iota
	bodyLength
	bodyChunked
	bodyClose // until the upstream closes the connection
)

// Chunked decoder states.
const (
	chunkSize = iota
	chunkData
	chunkDataEnd // the CRLF after a chunk's data
	chunkTrailer
)

// Flusher sends what the caller has written so far to its client; the Conn
// calls it before it waits for the upstream, so that streamed responses
// reach the client as the upstream sends them.
type Flusher interface{ Flush() error }

// Conn is one connection to an upstream.
type Conn struct {
	pool   *Pool
	nc     net.Conn
	reused bool
	idleAt time.Time

	buf  []byte // read buffer; buf[r:w] is unread
	r, w int
	out  []byte // the request head, built by the caller

	head     wire.ResponseHead
	mode     uint8
	state    uint8
	left     int64 // bytes left in the body or the current chunk
	done     bool  // the body has been read to its end
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

// Alive reports whether a pooled connection still looks open: a peek at
// the socket finds neither its end nor a reset nor stray bytes. It costs a
// syscall; callers use it before a request that could not be sent again
// (a streamed body), where a stale connection would cost a 502.
func (c *Conn) Alive() bool {
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	cerr := rc.Control(func(fd uintptr) {
		var b [1]byte
		for {
			_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if err == syscall.EINTR {
				continue
			}
			alive = err == syscall.EAGAIN
			return
		}
	})
	return cerr == nil && alive
}

// HeadBuffer returns an empty buffer to build the request head in, for Do.
func (c *Conn) HeadBuffer() []byte { return c.out[:0] }

// Close closes the connection.
func (c *Conn) Close() { c.nc.Close() }

// Release ends the exchange: the connection goes back to the pool when the
// response was read to its end and may be followed by another, and is
// closed otherwise.
func (c *Conn) Release() {
	c.flusher = nil
	if c.reusable && c.done && c.r == c.w && c.err == nil {
		c.r, c.w = 0, 0
		if cap(c.buf) > bufSize {
			c.buf = make([]byte, bufSize) // a long head grew it
		}
		c.pool.put(c)
		return
	}
	c.nc.Close()
}

// Tunnel hands the connection over after a 101 response: it returns the
// socket and the bytes already read past the response head, which belong
// to the new protocol. The Conn must not be used afterwards.
func (c *Conn) Tunnel() (net.Conn, []byte) {
	return c.nc, c.buf[c.r:c.w]
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
	c.out = head
	c.mode, c.state, c.left, c.done, c.reusable, c.err, c.got = bodyNone, chunkSize, 0, false, false, nil, false
	c.tarena, c.toff = c.tarena[:0], c.toff[:0]
	c.bodyLeft, c.queued = false, math.MaxInt
	if stream != nil || len(body) > syncBody {
		return c.duplex(head, body, stream, n, noBody)
	}
	werr := c.send(head, body, nil, 0, nil)
	h, err := c.readHead(noBody)
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
		c.nc.Close()
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
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	rc.Control(func(fd uintptr) {
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
	for interim := 0; ; {
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
			if interim++; interim > maxInterim {
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
		return c.readData(p, true)
	case bodyClose:
		n, err := c.readData(p, false)
		if err == io.EOF {
			c.done = true
		}
		return n, err
	}
	for {
		switch c.state {
		case chunkSize, chunkDataEnd, chunkTrailer:
			line, err := c.line()
			if err != nil {
				return 0, err
			}
			switch c.state {
			case chunkDataEnd:
				if len(line) != 2 {
					return 0, fmt.Errorf("%w: bad chunk end", ErrBadResponse)
				}
				c.state = chunkSize
			case chunkSize:
				size, ok := wire.ParseChunkLine(line[:len(line)-1])
				if !ok {
					return 0, fmt.Errorf("%w: bad chunk size line", ErrBadResponse)
				}
				if size == 0 {
					c.state = chunkTrailer
				} else {
					c.state, c.left = chunkData, size
				}
			case chunkTrailer:
				// Trailer fields have the header's syntax and limits
				// (RFC 9112 §7.1.2); they are kept for Trailer.
				name, value, _, st := wire.ParseFieldLine(line, 0)
				if st != 0 {
					return 0, fmt.Errorf("%w: bad trailer", ErrBadResponse)
				}
				if name == nil {
					c.done = true
					return 0, io.EOF
				}
				if len(c.toff)/3 >= c.pool.cfg.MaxHeadFields || len(c.tarena)+len(line) > c.pool.cfg.MaxHeadBytes {
					return 0, fmt.Errorf("%w: trailer section too large", ErrBadResponse)
				}
				c.tarena = append(c.tarena, name...)
				ne := len(c.tarena)
				c.tarena = append(c.tarena, value...)
				c.toff = append(c.toff, ne-len(name), ne, len(c.tarena))
			}
		case chunkData:
			n, err := c.readData(p, true)
			if c.left == 0 {
				c.state = chunkDataEnd
			}
			if n > 0 || err != nil {
				return n, err
			}
		}
	}
}

// line returns the next line with its CRLF, reading as needed.
func (c *Conn) line() ([]byte, error) {
	for {
		for i := c.r; i < c.w; i++ {
			if c.buf[i] == '\n' {
				line := c.buf[c.r : i+1]
				c.r = i + 1
				if len(line) < 2 || line[len(line)-2] != '\r' {
					return nil, fmt.Errorf("%w: bare LF", ErrBadResponse)
				}
				return line, nil
			}
		}
		if c.w-c.r > maxChunkLine {
			return nil, fmt.Errorf("%w: chunk line too long", ErrBadResponse)
		}
		if c.w == cap(c.buf) {
			c.compact()
		}
		if err := c.fill(); err != nil {
			return nil, c.bodyErr(err)
		}
	}
}

// readData reads up to c.left bytes (any number when !limited).
func (c *Conn) readData(p []byte, limited bool) (int, error) {
	if limited && int64(len(p)) > c.left {
		p = p[:c.left]
	}
	if c.r == c.w {
		if len(p) >= directRead {
			// Straight from the socket into p: no copy through buf.
			c.r, c.w = 0, 0
			n, err := c.readInto(p)
			if err != nil {
				return 0, c.bodyErr(err)
			}
			c.account(n, limited)
			return n, nil
		}
		c.r, c.w = 0, 0
		if err := c.fill(); err != nil {
			return 0, c.bodyErr(err)
		}
	}
	n := copy(p, c.buf[c.r:c.w])
	c.r += n
	c.account(n, limited)
	return n, nil
}

func (c *Conn) account(n int, limited bool) {
	if !limited {
		return
	}
	c.left -= int64(n)
	if c.left == 0 && c.mode == bodyLength {
		c.done = true
	}
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
