package protocol

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"time"
)

// The net/http-style connection hooks (Server.BaseContext, ConnContext,
// ConnState) and the per-request deadlines of http.ResponseController.
// conn.go, loop.go and server.go call them from one-line hooks.

// ConnInfo describes a client connection to the Server's connection hooks.
// It is a value: keep it as long as you like.
type ConnInfo struct {
	// ID identifies the connection among all of its Server's, for the
	// Server's lifetime (a counter, from 1).
	ID         uint64
	RemoteAddr net.Addr
	LocalAddr  net.Addr
}

// connHooks is a connection's part in the hooks: its context, the state
// last reported to ConnState, and the deadlines a handler set for the
// current request.
type connHooks struct {
	ctx   context.Context // nil: context.Background()
	id    uint64
	state http.ConnState // last reported; StateClosed before StateNew

	// Deadlines from http.ResponseController, until the handler
	// returns: userRead/userWrite say one is set (rdl/wdl, the zero time
	// for none); wSet says wdl is on the net.Conn already.
	rdl, wdl            time.Time
	userRead, userWrite bool
	wSet                bool
}

// serverHooks is a Server's part in the hooks.
type serverHooks struct {
	watch   closeWatch // client-gone detection (closewatch.go)
	connIDs atomic.Uint64
}

// baseContext is the base context of connections accepted on ln.
func (s *Server) baseContext(ln net.Listener) context.Context {
	if s.BaseContext == nil {
		if s.ConnContext == nil {
			return nil
		}
		return context.Background()
	}
	ctx := s.BaseContext(ln)
	if ctx == nil {
		panic("protocol: Server.BaseContext returned a nil context")
	}
	return ctx
}

// connNew sets up the hooks of a connection just accepted, and reports
// StateNew.
func (s *Server) connNew(c *conn, base context.Context) {
	c.hooks = connHooks{ctx: base, id: s.hk.connIDs.Add(1), state: http.StateNew}
	if s.ConnContext != nil {
		c.hooks.ctx = s.ConnContext(base, c.info())
		if c.hooks.ctx == nil {
			panic("protocol: Server.ConnContext returned a nil context")
		}
	}
	if s.ConnState != nil {
		s.ConnState(c.info(), http.StateNew)
	}
}

func (c *conn) info() ConnInfo {
	return ConnInfo{ID: c.hooks.id, RemoteAddr: c.req.RemoteAddr, LocalAddr: c.req.LocalAddr}
}

// setState reports a state change to Server.ConnState, as net/http does:
// new -> active when a request's first byte arrives, active -> idle when
// the connection waits for the next request, then hijacked or closed.
func (c *conn) setState(st http.ConnState) {
	f := c.srv.ConnState
	if f == nil {
		return
	}
	switch prev := c.hooks.state; {
	case prev == st, prev == http.StateHijacked, prev == http.StateClosed:
		return
	case st == http.StateIdle && prev != http.StateActive:
		return // waiting for the first request: still new
	}
	c.hooks.state = st
	f(c.info(), st)
}

// netConn returns the connection's net.Conn, nil while it is on an event
// loop (or lost leaving it). Only the goroutine serving c may call it.
func (c *conn) netConn() net.Conn {
	if nt, ok := c.t.(*netTransport); ok {
		nt.unhold()
		return nt.nc
	}
	return nil
}

// rawConn is netConn's RawConn: nil on a loop or when the connection is
// not a socket.
func (c *conn) rawConn() syscall.RawConn {
	if nt, ok := c.t.(*netTransport); ok {
		nt.unhold()
		return nt.rc
	}
	return nil
}

// setUserReadDeadline is http.ResponseController.SetReadDeadline: the
// request body's reads wait until t (the zero time: as long as it takes)
// instead of Limits.IdleTimeout each, until the handler returns.
func (c *conn) setUserReadDeadline(t time.Time) error {
	c.hooks.rdl, c.hooks.userRead = t, true
	c.rdl = 0 // the deadline the server knew is gone
	if nc := c.netConn(); nc != nil {
		return nc.SetReadDeadline(t)
	}
	return nil // on an event loop: the body is buffered already
}

// setUserWriteDeadline is http.ResponseController.SetWriteDeadline: the
// response's writes must be done by t (the zero time: no limit) instead of
// waiting Limits.WriteTimeout for progress, until the handler returns.
func (c *conn) setUserWriteDeadline(t time.Time) error {
	c.hooks.wdl, c.hooks.userWrite, c.hooks.wSet = t, true, false
	c.wdl = 0
	if nc := c.netConn(); nc != nil {
		c.hooks.wSet = true
		return nc.SetWriteDeadline(t)
	}
	return nil // set when the connection leaves its loop (userWriteDeadline)
}

// userReadDeadline reports whether a handler's read deadline stands in for
// the server's.
func (c *conn) userReadDeadline() bool { return c.hooks.userRead }

// userWriteDeadline reports whether a handler's write deadline stands in
// for the server's, setting it on a net.Conn made since.
func (c *conn) userWriteDeadline() bool {
	if !c.hooks.userWrite {
		return false
	}
	if nc := c.netConn(); !c.hooks.wSet && nc != nil {
		c.hooks.wSet = true
		nc.SetWriteDeadline(c.hooks.wdl)
	}
	return true
}

// endUserDeadlines gives the connection back its own timeouts when the
// handler returns; the next read or write sets them afresh.
func (c *conn) endUserDeadlines() {
	if c.hooks.userRead {
		c.hooks.userRead = false
		c.rdl = 0
	}
	if c.hooks.userWrite {
		c.hooks.userWrite = false
		c.wdl = 0
	}
}

// abortHandler makes a handler's panic with http.ErrAbortHandler (v) end
// the connection without a response, after what was queued for earlier
// requests, as net/http does; other panics get a 500.
func (c *conn) abortHandler(v any) {
	if v != http.ErrAbortHandler || c.resp.committed || c.hijacked {
		return
	}
	c.resp.committed = true // a torn response: the connection is cut
	c.flush()
}

// hijackReader is the bufio.Reader a Hijack hands out over r, holding the
// n bytes the server had read past the request head already, as net/http's
// does (Buffered reports them).
func hijackReader(r io.Reader, n int) *bufio.Reader {
	br := bufio.NewReaderSize(r, max(4096, n))
	if n > 0 {
		br.Peek(n) // the first Read returns them all: r begins with them
	}
	return br
}
