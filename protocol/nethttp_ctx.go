package protocol

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
)

// requestContext is a FromHTTP request's context. It is cancelled when
// the handler returns and, as in net/http, when the client goes away while
// the handler runs, once the request body has been read to its end (before
// that, the connection still carries the body, and the handler learns of a
// vanished client from its reads). Watching the connection costs a few
// system calls, so it begins only when someone asks the context (or one
// derived from it: context.WithCancel and friends ask) for Done or Err.
//
// The values are the connection's context's (Server.BaseContext and
// ConnContext) plus http.LocalAddrContextKey.
type requestContext struct {
	context.Context // a cancelCtx: derived contexts register with it
	cancel          context.CancelFunc
	local           net.Addr
	srv             *Server
	rc              syscall.RawConn // the connection's socket; nil: not watched

	asked atomic.Bool // Done or Err was called
	mu    sync.Mutex
	body  bool // the request body has been read to its end
	ended bool // the handler returned
	watch *clientWatch
}

func newRequestContext(c *conn, r *Request) *requestContext {
	base := c.hooks.ctx
	if base == nil {
		base = context.Background()
	}
	ctx, cancel := context.WithCancel(base)
	// A connection still on an event loop has no RawConn: its handler
	// runs inline and cannot wait for anything, so it is not watched.
	return &requestContext{Context: ctx, cancel: cancel, local: r.LocalAddr, srv: c.srv, rc: c.rawConn()}
}

// Value adds http.LocalAddrContextKey to the connection's values.
func (x *requestContext) Value(key any) any {
	if key == http.LocalAddrContextKey {
		return x.local
	}
	return x.Context.Value(key)
}

// Done starts the watch on first use.
func (x *requestContext) Done() <-chan struct{} {
	x.ask()
	return x.Context.Done()
}

// Err starts the watch on first use.
func (x *requestContext) Err() error {
	x.ask()
	return x.Context.Err()
}

func (x *requestContext) ask() {
	if x.asked.Load() {
		return
	}
	x.mu.Lock()
	x.asked.Store(true)
	x.startLocked()
	x.mu.Unlock()
}

// bodyRead notes that the request body has been read to its end.
func (x *requestContext) bodyRead() {
	x.mu.Lock()
	x.body = true
	x.startLocked()
	x.mu.Unlock()
}

// startLocked watches the client once the context was asked for and the
// body has been read, until the handler returns.
func (x *requestContext) startLocked() {
	if !x.asked.Load() || !x.body || x.ended || x.watch != nil || x.rc == nil {
		return
	}
	x.watch = x.srv.watchClient(x.rc, x.cancel)
}

// finish ends the watch and cancels the context: the handler returned.
func (x *requestContext) finish() {
	x.stopWatching()
	x.cancel()
}

// stopWatching ends the watch for good: the handler returned or hijacked
// the connection.
func (x *requestContext) stopWatching() {
	x.mu.Lock()
	x.ended = true
	cw := x.watch
	x.watch = nil
	x.mu.Unlock()
	if cw != nil {
		x.srv.hk.watch.w.unwatch(cw)
	}
}
