// Package tlsconn terminates TLS for forkd's workers outside the protocol
// package: a Listener wraps an inherited listener, and each connection it
// accepts is a *tls.Conn whose handshake runs on the first Read, in the
// connection's own goroutine, so that a slow handshake never holds up
// Accept. The protocol package serves a connection that is not a
// syscall.Conn on its goroutine-per-connection path, which is what these
// are.
//
// A client that speaks plain HTTP to a TLS port gets a "400 Bad Request"
// written in clear text on the raw connection, as net/http does, instead of
// a handshake failure it cannot read.
package tlsconn

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
)

// Listener accepts TLS connections on an inner listener.
type Listener struct {
	net.Listener
	config *tls.Config
}

// NewListener returns a Listener that serves ln with config.
func NewListener(ln net.Listener, config *tls.Config) *Listener {
	return &Listener{Listener: ln, config: config}
}

// Accept returns the next connection, before its handshake.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: tls.Server(c, l.config)}, nil
}

// Addr is the listener's address, marked as TLS (see IsTLS).
func (l *Listener) Addr() net.Addr { return Addr{l.Listener.Addr()} }

// Addr is the local address of a TLS connection or listener.
type Addr struct{ net.Addr }

// IsTLS reports whether a (a request's local address) belongs to a TLS
// connection.
func IsTLS(a net.Addr) bool {
	_, ok := a.(Addr)
	return ok
}

// Conn is one accepted TLS connection.
type Conn struct {
	*tls.Conn
	shaken bool // the handshake was tried (only the reading goroutine reads it)
}

// LocalAddr is the connection's local address, marked as TLS.
func (c *Conn) LocalAddr() net.Addr { return Addr{c.Conn.LocalAddr()} }

// badRequest is the answer to plain HTTP on a TLS port.
const badRequest = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: 48\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"

// Read reads application data, running the handshake first. A client
// that sent plain HTTP is answered 400 and reads as EOF.
func (c *Conn) Read(p []byte) (int, error) {
	if !c.shaken {
		c.shaken = true
		if err := c.Handshake(); err != nil {
			var re tls.RecordHeaderError
			if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader[:]) {
				_, _ = io.WriteString(re.Conn, badRequest)
				_ = re.Conn.Close()
				return 0, io.EOF
			}
			return 0, err
		}
	}
	return c.Conn.Read(p)
}

// looksLikeHTTP reports whether a TLS record header is the start of an
// HTTP request, as net/http judges it.
func looksLikeHTTP(hdr []byte) bool {
	switch string(hdr) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH", "CONNE", "TRACE":
		return true
	}
	return false
}
