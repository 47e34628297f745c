package h2

import (
	"crypto/tls"
	"net"
	"sync"
)

// Graceful shutdown in two steps (RFC 9113 §6.8): first a GOAWAY that
// names the highest possible stream (2^31-1), which stops the client from
// opening streams without refusing any it has sent; a round trip later,
// x/net's own GOAWAY names the last stream it will serve. x/net sends only
// the second, and a busy client's streams sent meanwhile are refused:
// h2load counts them as failed requests across a reload.
//
// x/net writes frames through a buffer whose flushes need not end on a
// frame, so the first GOAWAY is slipped in between frames: goAwayConn
// follows the frame boundaries of everything written.

// goAwayConn is a served connection whose writes it follows frame by frame.
type goAwayConn struct {
	net.Conn
	mu      sync.Mutex
	hdr     [9]byte
	nhdr    int // bytes of the current frame's header seen
	left    int // payload bytes of the current frame still to come
	frames  int // whole frames written
	pending bool
	sent    bool
}

// tlsGoAwayConn keeps a TLS connection's state visible to x/net.
type tlsGoAwayConn struct {
	*goAwayConn
	cs interface{ ConnectionState() tls.ConnectionState }
}

func (c *tlsGoAwayConn) ConnectionState() tls.ConnectionState { return c.cs.ConnectionState() }

func newGoAwayConn(c net.Conn) (*goAwayConn, net.Conn) {
	g := &goAwayConn{Conn: c}
	if cs, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return g, &tlsGoAwayConn{goAwayConn: g, cs: cs}
	}
	return g, g
}

// goAwayFirst is the first step's frame: GOAWAY, stream 0, last stream
// 2^31-1, NO_ERROR.
var goAwayFirst = []byte{0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0}

// goAway sends the first step's GOAWAY now, or after the frame being
// written; only once, and never before the server's first frame (its
// SETTINGS, the connection preface).
func (c *goAwayConn) goAway() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sent {
		return
	}
	c.pending = true
	if c.boundary() {
		_ = c.inject()
	}
}

func (c *goAwayConn) boundary() bool { return c.frames > 0 && c.nhdr == 0 && c.left == 0 }

func (c *goAwayConn) inject() error {
	c.pending = false
	c.sent = true
	_, err := c.Conn.Write(goAwayFirst)
	return err
}

func (c *goAwayConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	written := 0
	for len(p) > 0 {
		n := len(p)
		if c.pending {
			if c.boundary() {
				if err := c.inject(); err != nil {
					return written, err
				}
			} else {
				n = c.untilBoundary(p)
			}
		}
		m, err := c.Conn.Write(p[:n])
		c.follow(p[:m])
		written += m
		p = p[m:]
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// follow moves the frame tracking over b, written.
func (c *goAwayConn) follow(b []byte) {
	for len(b) > 0 {
		if c.nhdr < 9 {
			k := copy(c.hdr[c.nhdr:], b)
			c.nhdr += k
			b = b[k:]
			if c.nhdr < 9 {
				return
			}
			c.left = int(c.hdr[0])<<16 | int(c.hdr[1])<<8 | int(c.hdr[2])
		}
		k := min(c.left, len(b))
		c.left -= k
		b = b[k:]
		if c.left == 0 {
			c.nhdr = 0
			c.frames++
		}
	}
}

// untilBoundary returns how many bytes of p finish the current frame (all
// of p if they do not).
func (c *goAwayConn) untilBoundary(p []byte) int {
	nhdr, left, hdr := c.nhdr, c.left, c.hdr
	i := 0
	for i < len(p) {
		if nhdr < 9 {
			k := copy(hdr[nhdr:], p[i:])
			nhdr += k
			i += k
			if nhdr < 9 {
				return len(p)
			}
			left = int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		}
		k := min(left, len(p)-i)
		left -= k
		i += k
		if left == 0 {
			return i
		}
	}
	return len(p)
}
