// Package protocol is forkd's HTTP/1.1 wire protocol: a strict request parser
// (RFC 9112), a response writer, and the per-connection loop with its limits,
// timeouts and graceful drain. It is independent of the rest of forkd: a
// Server serves a Handler on any net.Listener.
//
// This file is the package's public contract; other packages (serve, worker,
// the embedding API) are written against exactly these names.
package protocol

import (
	"time"
)

// Handler answers one request. The Request and ResponseWriter are only valid
// until Serve returns: they (and every []byte they hand out) are reused for the
// next request on the connection, so a handler that keeps data must copy it.
type Handler interface {
	Serve(w *ResponseWriter, r *Request)
}

// HandlerFunc adapts an ordinary function to a Handler.
type HandlerFunc func(w *ResponseWriter, r *Request)

// Serve calls f(w, r).
func (f HandlerFunc) Serve(w *ResponseWriter, r *Request) { f(w, r) }

// Limits bounds what one client may make a worker do. Zero values mean the
// defaults in DefaultLimits.
type Limits struct {
	RequestLine       int           // bytes in the request line; over it: 414
	HeaderBytes       int           // bytes in all header fields; over it: 431
	HeaderCount       int           // header fields; over it: 431
	BodyBytes         int64         // request body bytes; over it: 413
	ReadHeaderTimeout time.Duration // from the first byte of a request to the end of its headers; 408
	IdleTimeout       time.Duration // keep-alive wait for the next request
	WriteTimeout      time.Duration // bound on writing one response
	MaxConnections    int           // open connections per Server; further accepts wait
}

// DefaultLimits returns the limits documented in DESIGN.md.
func DefaultLimits() Limits {
	return Limits{
		RequestLine:       8192,
		HeaderBytes:       65536,
		HeaderCount:       100,
		BodyBytes:         10 << 20,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       75 * time.Second,
		WriteTimeout:      60 * time.Second,
		MaxConnections:    10000,
	}
}

// LogFunc is called once after every request, including requests the parser
// refused (then r carries whatever was parsed, and w.Status() is the error
// status). It is the hook for access logs and counters; it must not keep r or w.
type LogFunc func(r *Request, w *ResponseWriter, start time.Time)
