// Package h2 is forkd's HTTP/2: it serves the connections the HTTP/1.1
// engine (package protocol) hands over — TLS connections whose client chose
// "h2" by ALPN, and plain ones that start with the client preface (h2c with
// prior knowledge) — with golang.org/x/net/http2, and brings every stream
// back to forkd's handlers.
//
// x/net/http2 does the framing, HPACK, flow control, stream states, the
// SETTINGS exchange, GOAWAY and the defences against the known attacks
// (rapid reset, CONTINUATION floods, HPACK bombs, SETTINGS and PING
// floods); a protocol this intricate is not hand-written here.
//
// # Streams
//
// Each stream's request is written as an HTTP/1.1 request head (its body
// follows, by Content-Length or chunked, with its trailers) on a stream
// connection, an in-memory net.Conn that the engine serves with
// protocol.Server.ServeConn, on the stream's handler goroutine, exactly as
// it serves a client: the same parser, limits (header_bytes,
// header_count, body_bytes), handlers and access log. The engine's
// HTTP/1.1 response is parsed as the engine writes it (resp.go) and goes
// to the stream: its status and fields (less the connection-specific
// ones, RFC 9113 §8.2.2), its body as it comes (each write the engine
// makes is flushed, so server-sent events go out one by one, except the
// one that ends the response, which x/net sends with the end of the
// stream), and its trailers. The engine's read and write deadlines become
// the stream's, through http.ResponseController: idle_timeout bounds each
// wait for request body bytes and write_timeout each wait to send. A
// handler that fails after its head went out (or closes without an
// answer) resets the stream.
//
// x/net reads each frame's header and payload with reads of their own: the
// connection's reads go through a buffer (filter.go), which also puts right
// two of x/net's answers (see there).
//
// # Who owns what
//
// A Server owns the connections handed to it until they end: x/net serves
// each on goroutines of its own, and Shutdown sends every one a GOAWAY
// with the last stream it will serve, waits for those streams, and then
// the connections close. A stream connection belongs to its stream's
// handler goroutine, on which the engine serves it, so nothing touches the
// stream after x/net has finished it.
package h2

//lint:file-ignore SA1019 x/net/http2.Server is deprecated in favour of net/http's bundled copy of the same code, which has no ServeConn: it serves connections only from a listener, through http.Server. forkd hands over connections whose first bytes it has read; a net/http server fed by such a listener lost streams across reloads in TestH2ReloadUnderH2load, x/net's ServeConn does not.

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/net/http2"

	"github.com/forkd/forkd/protocol"
)

// Options configure a Server.
type Options struct {
	// Handler answers each stream's request, as it answers HTTP/1.1.
	Handler protocol.Handler
	// Limits are the engine's; IdleTimeout is also each connection's
	// idle timeout, and HeaderBytes its SETTINGS_MAX_HEADER_LIST_SIZE.
	Limits protocol.Limits
	// MaxConcurrentStreams and MaxReadFrameSize are SETTINGS a client
	// must keep to; zero means x/net's defaults (the http2 block's are
	// config's).
	MaxConcurrentStreams uint32
	MaxReadFrameSize     uint32
	Logger               hclog.Logger
	// Log and OnRequestDone are protocol.Server's: Log sees the request
	// as HTTP/2.0.
	Log           protocol.LogFunc
	OnRequestDone func()
}

// Server serves HTTP/2 connections.
type Server struct {
	streams *protocol.Server
	h2      *http2.Server
	base    *http.Server // x/net's source of limits, and of GOAWAY on Shutdown
	logger  hclog.Logger

	mu      sync.Mutex
	conns   map[net.Conn]*goAwayConn
	closing bool
	idle    chan struct{} // closed when conns empties during Shutdown
}

// New returns a Server for o.
func New(o Options) *Server {
	logger := o.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	lim := o.Limits
	d := protocol.DefaultLimits()
	if lim.IdleTimeout <= 0 {
		lim.IdleTimeout = d.IdleTimeout
	}
	if lim.HeaderBytes <= 0 {
		lim.HeaderBytes = d.HeaderBytes
	}
	streams := lim
	// Streams are connections to the engine: max_connections bounds
	// the clients' connections, and max_concurrent_streams each one's
	// streams.
	mcs := o.MaxConcurrentStreams
	streams.MaxConnections = max(lim.MaxConnections, d.MaxConnections) * int(max(mcs, 250))
	log := o.Log
	s := &Server{
		streams: &protocol.Server{
			Handler:       o.Handler,
			Limits:        streams,
			Logger:        logger,
			OnRequestDone: o.OnRequestDone,
		},
		h2: &http2.Server{
			MaxConcurrentStreams: mcs,
			MaxReadFrameSize:     o.MaxReadFrameSize,
			IdleTimeout:          lim.IdleTimeout,
		},
		base: &http.Server{
			MaxHeaderBytes: lim.HeaderBytes,
			// x/net logs what clients do wrong: debug, not the operator's concern.
			ErrorLog: logger.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
		},
		logger: logger,
		conns:  make(map[net.Conn]*goAwayConn),
	}
	if log != nil {
		s.streams.Log = func(r *protocol.Request, w *protocol.ResponseWriter, start time.Time) {
			major, minor := r.ProtoMajor, r.ProtoMinor
			r.ProtoMajor, r.ProtoMinor = 2, 0
			log(r, w, start)
			r.ProtoMajor, r.ProtoMinor = major, minor
		}
	}
	// ConfigureServer ties the h2 server's connections to base: base's
	// Shutdown sends each a GOAWAY (RFC 9113 §6.8).
	if err := http2.ConfigureServer(s.base, s.h2); err != nil {
		logger.Error("http2 setup", "error", err)
	}
	return s
}

// ServeConn serves one handed-over connection until it ends; it has
// protocol.Server.HandOff's signature.
func (s *Server) ServeConn(h protocol.HandOff) {
	nc := h.Conn
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		nc.Close()
		return
	}
	wc := wrapConn(nc, h)
	g, c := newGoAwayConn(newFilterConn(wc, s.base.MaxHeaderBytes), wc)
	s.conns[nc] = g
	s.mu.Unlock()
	defer s.forget(nc)
	// The engine's read-header deadline is not HTTP/2's: x/net keeps its
	// own (the preface's, idle_timeout).
	_ = nc.SetDeadline(time.Time{})
	ctx := h.Context
	if ctx == nil {
		ctx = context.Background()
	}
	s.h2.ServeConn(c, &http2.ServeConnOpts{
		Context:    ctx,
		BaseConfig: s.base,
		Handler:    &connHandler{s: s, remote: h.RemoteAddr, local: h.LocalAddr},
	})
}

func (s *Server) forget(nc net.Conn) {
	nc.Close()
	s.mu.Lock()
	if g := s.conns[nc]; g != nil {
		g.forgotten()
	}
	delete(s.conns, nc)
	if len(s.conns) == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
	s.mu.Unlock()
}

// Shutdown sends every connection a GOAWAY, lets the streams it names
// finish, and returns when every connection has closed, or when ctx ends
// (then it closes the rest).
func (s *Server) Shutdown(ctx context.Context) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		// The first step on every connection (see goaway.go), then
		// x/net's GOAWAY on all; a connection handed over meanwhile
		// goes through both on the next turn.
		for !s.goAwayAll(ctx) {
		}
		if ctx.Err() != nil {
			s.Close()
			return ctx.Err()
		}
		_ = s.base.Shutdown(context.Background())
		s.mu.Lock()
		if len(s.conns) == 0 {
			// (The streams' server stays: a connection handed over
			// late is still served; Close ends it.)
			s.mu.Unlock()
			return nil
		}
		if s.idle == nil {
			s.idle = make(chan struct{})
		}
		idle := s.idle
		s.mu.Unlock()
		select {
		case <-idle:
		case <-t.C:
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		}
	}
}

// goAwayAll starts the drain's first step on every connection, waits for
// it to end on each, and reports whether every connection registered by
// then is through it (or ctx ended).
func (s *Server) goAwayAll(ctx context.Context) bool {
	s.mu.Lock()
	gs := make([]*goAwayConn, 0, len(s.conns))
	for _, g := range s.conns {
		gs = append(gs, g)
	}
	s.mu.Unlock()
	for _, g := range gs {
		g.goAway() // may wait for a write in progress: not under s.mu
	}
	for _, g := range gs {
		g.waitReady(ctx)
	}
	if ctx.Err() != nil {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.conns {
		if !g.isReady() {
			return false
		}
	}
	return true
}

// Close closes every connection now.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing = true
	for nc := range s.conns {
		go nc.Close()
	}
	s.mu.Unlock()
	s.streams.Close()
	return nil
}

// Stats are the streams' counters (each stream a request); OpenConns
// counts the HTTP/2 connections.
func (s *Server) Stats() protocol.Stats {
	st := s.streams.Stats()
	s.mu.Lock()
	st.OpenConns = int64(len(s.conns))
	s.mu.Unlock()
	return st
}
