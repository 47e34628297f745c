package protocol

// Connections that leave the HTTP/1.1 engine for HTTP/2, and the exchanges
// HTTP/2 streams bring back to it.
//
// A listener served with ListenOptions.HTTP2 looks once at each
// connection's first bytes, in parseHead (the same place the PROXY header
// is taken): a TLS connection whose client chose "h2" by ALPN, or a plain
// one that starts with the HTTP/2 client preface (h2c with prior
// knowledge, RFC 9113 §3.3), is handed over whole to Server.HandOff, the
// way a handler hijacks one. Every other connection goes on as HTTP/1.1,
// and the flag is off from then on: after the first bytes the HTTP/1.1
// path tests one bool per head, as for the PROXY header, and listeners
// without HTTP2 never look.
//
// The HTTP/2 side (package h2) serves each stream's request through
// ServeConn: the stream becomes a one-request connection that this engine
// parses and answers like any other, so every Handler serves HTTP/2
// unchanged.

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"

	"github.com/forkd/forkd/protocol/internal/wire"
)

// HandOff is a connection that leaves the engine for HTTP/2. Its receiver
// owns Conn and must close it.
type HandOff struct {
	// Conn is the connection; for TLS its ConnectionState is available.
	Conn net.Conn
	// Preread holds the bytes already read from Conn (the client
	// preface, and whatever came with it): they come before Conn's.
	Preread []byte
	// RemoteAddr and LocalAddr are the connection's addresses; RemoteAddr
	// is the client's from a PROXY header where there was one.
	RemoteAddr, LocalAddr net.Addr
	// Context is the connection's context (Server.BaseContext,
	// ConnContext); nil when neither is set.
	Context context.Context
}

// clientPreface starts every HTTP/2 connection (RFC 9113 §3.4).
const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// takeH2 looks at a connection's first bytes (c.h2 is set), like
// takeProxyHeader: (0, true) goes on as HTTP/1.1, (0, false) waits for
// more bytes, (-1, true) means the connection was handed over (or lost
// trying) and this conn is done with it.
func (c *conn) takeH2() (int, bool) {
	if cs, ok := c.netConn().(interface{ ConnectionState() tls.ConnectionState }); ok {
		// TLS: ALPN decided, in the handshake the first Read ran.
		c.h2 = false
		if cs.ConnectionState().NegotiatedProtocol != "h2" {
			return 0, true
		}
		c.toHTTP2()
		return -1, true
	}
	got := c.rbuf[c.r:c.w]
	n := min(len(got), len(clientPreface))
	if string(got[:n]) != clientPreface[:n] {
		switch notHTTP1(got) {
		case lineIncomplete:
			if c.w-c.r < c.srv.maxHead {
				return 0, false
			}
		case lineNotHTTP1:
			// Neither HTTP/1.x nor HTTP/2: an invalid client preface,
			// which HTTP/2 answers (RFC 9113 §3.4), not a 400.
			c.h2 = false
			c.toHTTP2()
			return -1, true
		}
		c.h2 = false
		return 0, true
	}
	if n < len(clientPreface) {
		return 0, false
	}
	c.h2 = false
	c.toHTTP2()
	return -1, true
}

const (
	lineHTTP1 = iota
	lineIncomplete
	lineNotHTTP1
)

// notHTTP1 looks at the first line of a plain connection that did not
// start with the client preface: whether it ends in an HTTP/x.y version,
// or has not ended yet. A line longer than a KiB (less than any head
// limit), and a first byte no request starts with, are left to the
// parser. Empty lines before it are allowed, as before any HTTP/1.1
// request.
func notHTTP1(b []byte) int {
	i := 0
	for i < len(b) && (b[i] == '\r' || b[i] == '\n') {
		i++
	}
	b = b[i:]
	if len(b) > 0 && !wire.CanStartRequest(b[0]) {
		return lineHTTP1 // the parser answers it at once (a TLS ClientHello)
	}
	end := bytes.IndexByte(b, '\n')
	if end < 0 {
		if len(b) < 1<<10 {
			return lineIncomplete
		}
		return lineHTTP1 // the parser answers a line this long
	}
	line := bytes.TrimSuffix(b[:end], []byte("\r"))
	v := line[bytes.LastIndexByte(line, ' ')+1:]
	if len(v) == 8 && string(v[:5]) == "HTTP/" && isDigit(v[5]) && v[6] == '.' && isDigit(v[7]) {
		return lineHTTP1
	}
	return lineNotHTTP1
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// toHTTP2 gives the connection to Server.HandOff, as hijack gives it to a
// handler: it leaves its loop, the server forgets it, and what is buffered
// goes along.
func (c *conn) toHTTP2() {
	t, err := c.offLoop()
	if err != nil {
		return
	}
	nc, rest, err := c.detach(t)
	if err != nil {
		return
	}
	go c.srv.HandOff(HandOff{Conn: nc, Preread: rest, RemoteAddr: c.req.RemoteAddr, LocalAddr: c.req.LocalAddr, Context: c.hooks.ctx})
}

// An HTTP2Stream is a connection that carries one HTTP/2 stream's exchange
// written as HTTP/1.1 (package h2's stream connections). Requests that
// ServeConn reads from one report the client's protocol, HTTP/2.0:
// Request.Proto, and a net/http handler's Request.Proto and ProtoMajor.
type HTTP2Stream interface {
	net.Conn
	// HTTP2Stream marks the connection; it does nothing.
	HTTP2Stream()
}

// ServeConn serves nc, a connection that is not a listener's (an HTTP/2
// stream's exchange), on the calling goroutine until it ends. ctx is the
// connection's context (nil: the Server's hooks make none). It counts
// among the Server's connections, so Shutdown waits for it; ConnState and
// ConnContext are not called for it. After Close it closes nc at once.
func (s *Server) ServeConn(ctx context.Context, nc net.Conn) {
	if s.Handler == nil {
		nc.Close()
		return
	}
	s.init()
	s.sem <- struct{}{}
	c := s.pool.Get().(*conn)
	c.init(nc)
	s.mu.Lock()
	s.conns[c] = struct{}{}
	closed := s.closed
	s.mu.Unlock()
	s.open.Add(1)
	c.hooks = connHooks{ctx: ctx, id: s.hk.connIDs.Add(1), state: http.StateHijacked}
	c.proxy, c.h2 = false, false
	_, c.req.h2 = nc.(HTTP2Stream)
	if closed {
		c.release()
		return
	}
	c.serve()
}
