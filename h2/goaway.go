package h2

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// Graceful shutdown in two steps (RFC 9113 §6.8): first a GOAWAY that
// names the highest possible stream (2^31-1), which stops the client from
// opening streams without refusing any it has sent; once the client has
// surely seen it, x/net's own GOAWAY names the last stream it will serve.
// x/net sends only the second, and a busy client's streams sent meanwhile
// are refused.
//
// Both steps are timed by PING round trips rather than guessed:
//
//  1. A PING goes out between two frames, and what x/net writes after it
//     is held back until the client acknowledges it. The client has then
//     read everything sent before the PING, so the first GOAWAY, written
//     next, is the first thing in its next read. A client reads a GOAWAY
//     after responses in the same read as it reads them: nghttp2 (h2load)
//     queues the next requests as the responses end, then sees the GOAWAY
//     and fails them unsent, counted as failed requests.
//  2. A second PING follows the first GOAWAY. Its acknowledgement comes
//     after every stream the client opened before it saw the GOAWAY, and
//     x/net reads frames one at a time, each processed before the next is
//     read: when the acknowledgement is read, x/net knows the last stream
//     the client will open, and its GOAWAY can name it.
//
// A client that does not answer PINGs gets each step after goAwayRTT.
//
// x/net writes frames through a buffer whose flushes need not end on a
// frame, so goAwayConn follows the frame boundaries of everything written
// and slips its frames in between; it follows the frames read too, to see
// the acknowledgements.

// goAwayRTT bounds each step's wait for a PING's acknowledgement.
const goAwayRTT = time.Second

// The drain's steps, in order.
const (
	drainNone    = iota
	drainPending // the first PING waits for a frame boundary
	drainHolding // the first PING is out: writes are held until its ACK
	drainRelease // acknowledged (or timed out): the first GOAWAY is on its way
	drainAwait   // the first GOAWAY and the second PING are out
	drainReady   // x/net may send its GOAWAY
)

// Opaque data of the two PINGs.
var (
	pingHold  = [8]byte{'f', 'o', 'r', 'k', 'd', 'g', 'a', '1'}
	pingReady = [8]byte{'f', 'o', 'r', 'k', 'd', 'g', 'a', '2'}
)

// goAwayConn is a served connection whose writes (and reads) it follows
// frame by frame.
type goAwayConn struct {
	net.Conn

	mu     sync.Mutex
	w      frameTracker // written
	frames int          // whole frames written
	state  int
	held   []byte // written by x/net while drainHolding
	timer  *time.Timer
	ready  chan struct{} // closed at drainReady
	gone   chan struct{} // closed when the connection is forgotten
	once   sync.Once

	// The writes (see send).
	wq      []byte // accepted, not yet written
	spare   []byte
	wbusy   bool // a flusher is writing
	werr    error
	wcond   sync.Cond // (on mu) wq shrank or the flusher stopped
	closing bool

	// Read side: only x/net's reading goroutine touches these.
	preface int // bytes of the client preface still to come
	r       frameTracker
	isAck   bool // the frame being read is a PING ACK
	ping    [8]byte
}

// frameTracker follows frame boundaries in a byte stream.
type frameTracker struct {
	hdr  [9]byte
	nhdr int // bytes of the current frame's header seen
	left int // payload bytes of the current frame still to come
}

func (t *frameTracker) boundary() bool { return t.nhdr == 0 && t.left == 0 }

// tlsGoAwayConn keeps a TLS connection's state visible to x/net.
type tlsGoAwayConn struct {
	*goAwayConn
	cs interface{ ConnectionState() tls.ConnectionState }
}

func (c *tlsGoAwayConn) ConnectionState() tls.ConnectionState { return c.cs.ConnectionState() }

// newGoAwayConn returns c's goAwayConn and the connection x/net serves:
// the goAwayConn, with outer's TLS state if it has one.
func newGoAwayConn(c, outer net.Conn) (*goAwayConn, net.Conn) {
	g := &goAwayConn{
		Conn:    c,
		ready:   make(chan struct{}),
		gone:    make(chan struct{}),
		preface: len(clientPreface),
	}
	g.wcond.L = &g.mu
	if cs, ok := outer.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return g, &tlsGoAwayConn{goAwayConn: g, cs: cs}
	}
	return g, g
}

// clientPreface starts every HTTP/2 connection (RFC 9113 §3.4).
const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// goAwayFirst is the first step's frame: GOAWAY, stream 0, last stream
// 2^31-1, NO_ERROR.
var goAwayFirst = []byte{0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0}

func pingFrame(data [8]byte) []byte {
	return append([]byte{0, 0, 8, 0x6, 0, 0, 0, 0, 0}, data[:]...)
}

// goAway starts the drain (once): the first PING goes out now, or after
// the frame being written, and never before the server's first frame (its
// SETTINGS, the connection preface).
func (c *goAwayConn) goAway() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != drainNone {
		return
	}
	c.state = drainPending
	c.timer = time.AfterFunc(goAwayRTT, c.expire)
	if c.atBoundary() {
		c.hold()
	}
}

func (c *goAwayConn) atBoundary() bool { return c.frames > 0 && c.w.boundary() }

// hold sends the first PING and holds what follows (c.mu held).
func (c *goAwayConn) hold() {
	c.state = drainHolding
	c.timer.Reset(goAwayRTT)
	if err := c.send(pingFrame(pingHold)); err != nil {
		c.setReady()
	}
}

// release ends the hold: the first GOAWAY, the second PING, then what was
// held back.
func (c *goAwayConn) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != drainRelease {
		return
	}
	c.state = drainAwait
	c.timer.Reset(goAwayRTT)
	b := make([]byte, 0, len(goAwayFirst)+17+len(c.held))
	b = append(b, goAwayFirst...)
	b = append(b, pingFrame(pingReady)...)
	b = append(b, c.held...)
	c.held = nil
	if err := c.send(b); err != nil {
		c.setReady()
	}
}

// acked moves the drain on when the client acknowledges one of its PINGs.
func (c *goAwayConn) acked(data [8]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case data == pingHold && c.state == drainHolding:
		c.state = drainRelease
		// Not on x/net's reading goroutine: the write may wait.
		go c.release()
	case data == pingReady && c.state == drainAwait:
		c.setReady()
	}
}

// expire moves the drain on when a PING goes unanswered.
func (c *goAwayConn) expire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state {
	case drainHolding:
		c.state = drainRelease
		go c.release()
	case drainPending, drainAwait:
		// (Pending: x/net has not written its SETTINGS in all that
		// time; its own GOAWAY will do.)
		c.setReady()
	}
}

func (c *goAwayConn) setReady() {
	c.state = drainReady
	c.held = nil
	if c.timer != nil {
		c.timer.Stop()
	}
	c.once.Do(func() { close(c.ready) })
}

// forgotten tells waiters that the connection is gone.
func (c *goAwayConn) forgotten() {
	close(c.gone)
	c.mu.Lock()
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
}

// waitReady waits until x/net may send its GOAWAY on c: the drain's steps
// are done, or the connection is gone, or ctx ends.
func (c *goAwayConn) waitReady(ctx context.Context) {
	select {
	case <-c.ready:
	case <-c.gone:
	case <-ctx.Done():
	}
}

func (c *goAwayConn) isReady() bool {
	select {
	case <-c.ready:
		return true
	case <-c.gone:
		return true
	default:
		return false
	}
}

func (c *goAwayConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	written := 0
	for len(p) > 0 {
		if c.state == drainHolding || c.state == drainRelease {
			c.held = append(c.held, p...)
			c.follow(p)
			return written + len(p), nil
		}
		n := len(p)
		if c.state == drainPending {
			if c.atBoundary() {
				c.hold()
				continue
			}
			n = c.untilBoundary(p)
		}
		if err := c.send(p[:n]); err != nil {
			return written, err
		}
		c.follow(p[:n])
		written += n
		p = p[n:]
	}
	return written, nil
}

// Writes are coalesced: x/net writes each stream's frames as its handler
// finishes, and flushes whenever its queue is empty, which is a write(2)
// per response. send queues the bytes instead, and one flusher goroutine
// writes what has queued while it was writing: under load, many
// responses go in one write; idle, each goes at once. A queue over
// maxQueued makes send wait, so a client that does not read holds x/net's
// writes up as a socket would.

const maxQueued = 256 << 10

// send queues b for writing (c.mu held); it returns the error of an
// earlier write, if one failed.
func (c *goAwayConn) send(b []byte) error {
	for c.werr == nil && len(c.wq) >= maxQueued {
		c.wcond.Wait()
	}
	if c.werr != nil {
		return c.werr
	}
	c.wq = append(c.wq, b...)
	if !c.wbusy {
		c.wbusy = true
		go c.flusher()
	}
	return nil
}

func (c *goAwayConn) flusher() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.wq) > 0 && c.werr == nil {
		// b, wq and spare never share an array: sends append to wq
		// while b is written.
		b := c.wq
		c.wq, c.spare = c.spare[:0], nil
		c.mu.Unlock()
		_, err := c.Conn.Write(b)
		c.mu.Lock()
		if cap(b) <= 2*maxQueued {
			c.spare = b
		}
		if err != nil {
			c.werr = err
		}
		c.wcond.Broadcast()
	}
	c.wq = c.wq[:0] // kept for the next burst
	c.wbusy = false
	c.wcond.Broadcast()
}

// Close writes what is queued (waiting for a client that does not read at
// most goAwayRTT), then closes the connection.
func (c *goAwayConn) Close() error {
	c.mu.Lock()
	if c.wbusy && !c.closing {
		c.closing = true
		_ = c.Conn.SetWriteDeadline(time.Now().Add(goAwayRTT))
	}
	for c.wbusy {
		c.wcond.Wait()
	}
	if c.werr == nil {
		c.werr = net.ErrClosed
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

// follow moves the write tracking over b, written.
func (c *goAwayConn) follow(b []byte) {
	c.frames += c.w.over(b)
}

// over moves t over b and returns how many frames b ended.
func (t *frameTracker) over(b []byte) int {
	frames := 0
	for len(b) > 0 {
		k := t.step(b)
		b = b[k:]
		if t.boundary() {
			frames++
		}
	}
	return frames
}

// step moves t over the start of b, up to the end of the frame's header or
// of the frame, whichever comes first, and returns how many bytes it took.
func (t *frameTracker) step(b []byte) int {
	if t.nhdr < 9 {
		k := copy(t.hdr[t.nhdr:], b)
		t.nhdr += k
		if t.nhdr == 9 {
			t.left = int(t.hdr[0])<<16 | int(t.hdr[1])<<8 | int(t.hdr[2])
			if t.left == 0 {
				t.nhdr = 0
			}
		}
		return k
	}
	k := min(t.left, len(b))
	t.left -= k
	if t.left == 0 {
		t.nhdr = 0
	}
	return k
}

// untilBoundary returns how many bytes of p finish the current frame (all
// of p if they do not).
func (c *goAwayConn) untilBoundary(p []byte) int {
	t := c.w
	i := 0
	for i < len(p) {
		i += t.step(p[i:])
		if t.boundary() {
			return i
		}
	}
	return len(p)
}

// Read follows the frames read, for the acknowledgements of the drain's
// PINGs.
func (c *goAwayConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.scan(p[:n])
	}
	return n, err
}

// scan moves the read tracking over b, read.
func (c *goAwayConn) scan(b []byte) {
	if c.preface > 0 {
		k := min(c.preface, len(b))
		c.preface -= k
		b = b[k:]
	}
	t := &c.r
	for len(b) > 0 {
		if t.nhdr < 9 {
			k := t.step(b)
			b = b[k:]
			if t.nhdr == 9 {
				// PING (type 6) with ACK (flag 1), 8 bytes long.
				h := t.hdr
				c.isAck = h[0] == 0 && h[1] == 0 && h[2] == 8 && h[3] == 0x6 && h[4]&0x1 != 0
			}
			continue
		}
		off := 8 - t.left
		k := t.step(b)
		if c.isAck {
			copy(c.ping[off:], b[:k])
			if t.boundary() {
				c.isAck = false
				c.acked(c.ping)
			}
		}
		b = b[k:]
	}
}
