package protocol

import "time"

// Suspended is a request whose LoopSafe handler returned, on its event
// loop, without finishing its response: the reverse proxy's exchange with
// an upstream, served by the loop's events rather than by a goroutine that
// waits. While it is suspended the connection reads and parses nothing
// more (pipelined requests wait in its buffer, events of its socket are
// ignored) and nothing after the handler has run (the response is not
// finished, logged or counted). Resume ends the suspension: the function
// it is given runs as the rest of the handler, in a turn of the
// connection on its loop, and everything that follows a handler's return
// follows it; then the connection goes on with its next request.
//
// Every method is called on the goroutine of the loop that serves the
// connection: in the handler, in a SocketWatcher's ready function of that
// loop (the loop Suspend's ResponseWriter's SocketWatcher returns), or in
// the wake function. A suspension is resumed exactly once; methods called
// after that do nothing.
type Suspended struct {
	c    *conn
	l    *eventLoop
	dl   time.Duration // on the server's clock; 0: none
	wake func(ended bool)
	fn   func()
	// queued: Resume has been called (fn is set and the connection is
	// in the loop's resumed list, or handed to a goroutine).
	queued bool
}

// Suspend suspends the request the handler is serving (see Suspended), or
// returns nil when it cannot be: the connection is not served inline on
// an event loop (its handler left the loop, or the server has none), the
// request was suspended before (Suspend is once per request), or the
// server is draining. The handler must return soon after, without
// writing more of the response. wake, called on the loop's goroutine, is
// the loop's word to the owner: with ended false when timeout (if it is
// positive) has passed without an Extend, and with ended true when the loop
// ends (Shutdown, Close) while the request is suspended. Either way the
// owner should Resume; after ended, Resume runs fn on a goroutine of its
// own, where it may wait.
func (w *ResponseWriter) Suspend(timeout time.Duration, wake func(ended bool)) *Suspended {
	c := w.c
	t, ok := c.t.(*loopTransport)
	if !ok || t.l == nil || c.susp != nil || c.resuming || c.hijacked || c.srv.draining.Load() {
		return nil
	}
	s := &Suspended{c: c, l: t.l, wake: wake}
	s.Extend(timeout)
	c.susp = s
	return s
}

// Extend moves the suspension's deadline to timeout from now (none when
// timeout is not positive): the owner saw progress.
func (s *Suspended) Extend(timeout time.Duration) {
	if s.queued {
		return
	}
	if timeout <= 0 {
		s.dl = 0
		return
	}
	s.dl = time.Since(s.c.srv.epoch) + timeout
	s.l.sweepBy(s.dl)
}

// Resume ends the suspension: fn runs as the rest of the handler (it may
// write the response, call WillBlock and wait from then on, as a handler
// may), then what follows a handler's return. It runs after the loop's
// current batch of events, or, once the loop has ended, at once on a
// goroutine of its own.
func (s *Suspended) Resume(fn func()) {
	if s.queued {
		return
	}
	s.queued = true
	s.fn = fn
	l := s.l
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		go s.c.resumeOff(s)
		return
	}
	l.resumed = append(l.resumed, s)
}

// runResumed runs s's function as the rest of the handler, and what
// follows the handler, returning serveRequest's action.
func (c *conn) runResumed(s *Suspended) int {
	c.susp = nil
	c.resuming = true // no second suspension of the same request
	ok := c.callHandler(s.fn)
	c.resuming = false
	return c.afterHandler(ok, c.start)
}

// serveResumed is serve for a connection whose suspended request was
// resumed; like serve, it reports whether the calling goroutine now
// belongs to the connection.
func (l *eventLoop) serveResumed(s *Suspended) bool {
	c := s.c
	t := &c.lt
	act := c.runResumed(s)
	if act == actNext && c.t == t {
		if t.missed {
			t.drained = false // bytes came while it was suspended
		}
		t.missed = false
		act = c.turn()
	}
	return l.served(c, t, act)
}

// resumeOff runs a suspended request's rest on the calling goroutine once
// its loop has ended: the connection leaves the loop (whose epoll set is
// closed) and is served on a net.Conn from then on.
func (c *conn) resumeOff(s *Suspended) {
	t := &c.lt
	if t.l != nil {
		t.forget()
	}
	nt := t.attach(c)
	act := c.runResumed(s)
	if cur, ok := c.t.(*netTransport); ok {
		nt = cur
	}
	c.serveNet(nt, act)
}

// sweepSuspended is the sweep's look at a suspended connection: past its
// deadline, its owner is woken (once; an Extend arms it again); before,
// the loop sweeps by then.
func (l *eventLoop) sweepSuspended(s *Suspended, now time.Duration) {
	switch {
	case s.queued || s.dl == 0:
	case s.dl <= now:
		s.dl = 0
		s.wake(false)
	default:
		l.sweepBy(s.dl)
	}
}
