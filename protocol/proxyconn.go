package protocol

// Connections that begin with a PROXY header (proxyproto.go parses it).
//
// A listener served with ListenOptions.ProxyProtocol admits only trusted
// peers: any other is closed as soon as it is accepted, before a byte is
// read. A trusted connection's first bytes must be a PROXY header; it is
// parsed from the read buffer by the same code that then parses the first
// request head (conn.takeProxyHeader, called from parseHead), so it costs
// no extra read, works on every serving path (event loops, the raw
// keep-alive loop, plain net.Conns) and runs under read_header_timeout. Its
// source address replaces the connection's RemoteAddr once, for every
// request on it. A connection without a header, with a malformed one, or
// whose header times out (read_header_timeout) or ends half-way, is closed
// without an answer (anything else would be answering an HTTP request the
// balancer did not frame, which the balancer could relay to its client as
// the server's), with a rate-limited log line: a warning for a missing or
// malformed header, a debug line for one that timed out or was cut.
//
// A layer that reads the connection before the protocol code does — TLS,
// whose records start right after the PROXY header — goes on top of
// NewProxyListener instead: its connections read and strip the header on
// their first Read, below the layer.

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/forkd/forkd/internal/lograte"
	"github.com/hashicorp/go-hclog"
)

// ListenOptions are the settings of one listener served by ServeWith.
type ListenOptions struct {
	// ProxyProtocol requires a PROXY header (version 1 or 2, detected)
	// at the start of every connection; its source address becomes the
	// connection's RemoteAddr.
	ProxyProtocol bool
	// Trusted are the peers that may connect when ProxyProtocol is set
	// (connections from anywhere else are closed at accept) and, with or
	// without it, the peers whose forwarding headers handlers may believe
	// (Request.TrustedPeer). Peers of a unix socket have no address and
	// are all trusted.
	Trusted []netip.Prefix
	// HTTP2 hands connections that speak HTTP/2 to Server.HandOff: on
	// TLS, those whose client chose "h2" by ALPN; otherwise those that
	// start with the client preface (h2c with prior knowledge).
	HTTP2 bool
}

// trusts reports whether a peer at addr may connect to a listener served
// with o.
func (o *ListenOptions) trusts(addr net.Addr) bool {
	return trustedAddr(o.Trusted, addr)
}

// setClient makes addr, which a PROXY header named, the connection's
// client address, and judges it again against the listener's trusted
// peers: forwarding headers are the client's own words now, believed only
// if the client itself is trusted. A balancer in trusted may send the PROXY
// header; that does not make what its clients typed (X-Forwarded-For behind
// a layer-4 balancer) true. A LOCAL header (the balancer's own health
// check) names no client and leaves the peer's verdict.
func (c *conn) setClient(addr net.Addr) {
	c.req.RemoteAddr = addr
	c.req.TrustedPeer = trustedAddr(c.trusted, addr)
}

// trustedAddr reports whether addr is in trusted; a unix socket's peer,
// which has no address, always is.
func trustedAddr(trusted []netip.Prefix, addr net.Addr) bool {
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		return ok && ProxyTrusted(trusted, ip)
	case *net.UnixAddr:
		return true
	}
	return false
}

// proxyLogs keeps the PROXY protocol's failures, which repeat for every
// connection of a misconfigured balancer, to one line a second each.
type proxyLogs struct {
	untrusted, malformed, cut *lograte.Limiter
}

func newProxyLogs() *proxyLogs {
	return &proxyLogs{untrusted: lograte.New(time.Second), malformed: lograte.New(time.Second), cut: lograte.New(time.Second)}
}

func (p *proxyLogs) refused(log hclog.Logger, remote net.Addr) {
	if ok, n := p.untrusted.Allow(time.Now()); ok {
		log.Warn("connection from a peer not in trusted refused (proxy_protocol)", "remote", remote, "suppressed", n)
	}
}

func (p *proxyLogs) bad(log hclog.Logger, remote net.Addr, err error) {
	if ok, n := p.malformed.Allow(time.Now()); ok {
		log.Warn("bad PROXY header; connection closed", "remote", remote, "error", err, "suppressed", n)
	}
}

// lost logs, at debug level, a connection that timed out or ended before
// its PROXY header was complete: the network's or the client's doing more
// often than the balancer's, so it is no warning.
func (p *proxyLogs) lost(log hclog.Logger, remote net.Addr, err error) {
	if ok, n := p.cut.Allow(time.Now()); ok {
		log.Debug("PROXY header not received in full; connection closed without an answer", "remote", remote, "error", err, "suppressed", n)
	}
}

// proxyLost closes c, whose PROXY header is not complete, after a read
// that failed with err (a timeout, EOF, a reset): it answers nothing, as
// for a malformed header, since no request has been framed. It returns
// readHead's -1. A connection that ends before its first byte is no news
// (a balancer's TCP health check); one that times out, or is cut in the
// middle of its header, gets a line.
func (c *conn) proxyLost(err error) int {
	if c.r < c.w || isTimeout(err) {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		c.srv.proxyLogs.lost(c.srv.logger, c.req.RemoteAddr, err)
	}
	return -1
}

// takeProxyHeader parses the PROXY header at the start of rbuf[r:w] for a
// connection that must send one. It reports ok with -1 (close silently)
// when the header is missing or malformed; !ok means read more. Once the
// header is complete it is skipped and c.proxy cleared, and parseHead goes
// on with the request.
func (c *conn) takeProxyHeader() (st int, ok bool) {
	h, n, err := ParseProxyHeader(c.rbuf[c.r:c.w])
	switch {
	case errors.Is(err, ErrProxyIncomplete):
		if n > c.srv.maxHead {
			err = errProxyTooLong
			break
		}
		return 0, false
	case err != nil:
	default:
		c.r += n
		c.scan = c.r
		c.proxy = false
		if h.Source.IsValid() {
			c.setClient(net.TCPAddrFromAddrPort(h.Source))
		}
		return 0, true
	}
	c.srv.proxyLogs.bad(c.srv.logger, c.req.RemoteAddr, err)
	return -1, true
}

// isProxyFault reports whether err is the balancer's fault (a missing,
// malformed or oversized header), worth a log line, rather than the
// connection's (EOF, reset, timeout).
func isProxyFault(err error) bool {
	return errors.Is(err, ErrProxyMissing) || errors.Is(err, ErrProxyMalformed) || err == errProxyTooLong
}

// errProxyTooLong: a v2 header longer than the read buffer may grow
// (TLVs beyond the head limits).
var errProxyTooLong = errors.New("protocol: PROXY header longer than the request head limit")

// NewProxyListener returns a listener that admits only peers o trusts and
// whose connections strip the PROXY header on their first Read, for a
// layer (TLS) that reads connections before the protocol code does. Their
// RemoteAddr is the header's source address once the first Read is done
// (the peer's before). log receives the rate-limited failures; it may be
// nil.
func NewProxyListener(ln net.Listener, o ListenOptions, log hclog.Logger) net.Listener {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &proxyListener{Listener: ln, o: o, log: log, logs: newProxyLogs()}
}

type proxyListener struct {
	net.Listener
	o    ListenOptions
	log  hclog.Logger
	logs *proxyLogs
}

func (l *proxyListener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.o.trusts(nc.RemoteAddr()) {
			return &proxyConn{Conn: nc, l: l}, nil
		}
		l.logs.refused(l.log, nc.RemoteAddr())
		nc.Close()
	}
}

// proxyConn reads the PROXY header on its first Read. Reads happen on one
// goroutine; mu orders the address with RemoteAddr's readers.
type proxyConn struct {
	net.Conn
	l    *proxyListener
	done bool   // the header was read (or failed): only Read uses it
	rest []byte // bytes read after the header, returned first
	err  error  // the header's failure, returned by every Read

	mu     sync.Mutex
	remote net.Addr // the header's source; nil until then, or without one
}

// proxyConnMax bounds the header a proxyConn reads: a v1 line, or a v2
// header with a few TLVs.
const proxyConnMax = 4 << 10

func (c *proxyConn) Read(p []byte) (int, error) {
	if !c.done {
		c.done = true
		c.err = c.readHeader()
		if c.err != nil {
			if isProxyFault(c.err) {
				c.l.logs.bad(c.l.log, c.Conn.RemoteAddr(), c.err)
			} else if c.err != io.EOF {
				// Timed out or cut in the middle: closed, unanswered,
				// like a malformed header.
				c.l.logs.lost(c.l.log, c.Conn.RemoteAddr(), c.err)
			}
			c.Conn.Close()
		}
	}
	if c.err != nil {
		return 0, c.err
	}
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// readHeader reads until the buffer holds a complete header, and keeps
// what followed it for Read.
func (c *proxyConn) readHeader() error {
	buf := make([]byte, 0, 256)
	for {
		h, n, err := ParseProxyHeader(buf)
		switch {
		case errors.Is(err, ErrProxyIncomplete):
			if n > proxyConnMax {
				return errProxyTooLong
			}
			if n > cap(buf) {
				nb := make([]byte, len(buf), max(n, 2*cap(buf)))
				copy(nb, buf)
				buf = nb
			}
			k, rerr := c.Conn.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+k]
			if k == 0 && rerr != nil {
				if rerr == io.EOF && len(buf) > 0 {
					rerr = io.ErrUnexpectedEOF
				}
				return rerr
			}
			continue
		case err != nil:
			return err
		}
		c.rest = buf[n:]
		if h.Source.IsValid() {
			c.mu.Lock()
			c.remote = net.TCPAddrFromAddrPort(h.Source)
			c.mu.Unlock()
		}
		return nil
	}
}

// RemoteAddr is the PROXY header's source address once it was read.
func (c *proxyConn) RemoteAddr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}
