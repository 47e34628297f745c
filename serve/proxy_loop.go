package serve

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forkd/forkd/protocol"
	"github.com/forkd/forkd/protocol/upstream"
)

// The proxied exchange as event-loop events. A request without a body (or
// with a small one, which is buffered whole: loopBodyMax), on a route whose
// middleware does nothing after the handler returns (no error_pages, no
// compress: proxy.onLoop, decided when the routes are built), served
// inline on an event loop, is served without a goroutine, as nginx serves
// it:
//
//  1. serveOnLoop takes an idle pooled connection that the same loop
//     watches (upstream.Conn.Watcher; GetIdle's check included: a peek, or
//     the loop's own look, a wait completed since it went idle; stray
//     bytes that came before close it, never reach this client), or, with
//     none idle, starts a connect without waiting (upstream's DialNow: a
//     nonblocking connect(2), its socket registered with this loop at
//     once). It suspends the request (protocol.ResponseWriter.Suspend,
//     with connect_timeout while connecting, then response_timeout),
//     routes the loop's events for the upstream socket to the exchange
//     (Conn.OnReady), sends the head with one nonblocking write, and
//     returns: the loop serves other connections meanwhile.
//  2. ready, at each event, sends what the socket did not take yet
//     (SendMore: the connect's end is an event too), then reads what came
//     (ReadHeadNow, BodyNow); a response complete with the read that
//     completed its head, whose body fits the connection's buffer
//     (Content-Length, or chunked to its last chunk and trailer section),
//     is sent on the loop (Resume: respond, then the connection's next
//     request), and the upstream connection goes back to the pool.
//  3. Anything else goes on on a goroutine, from where the loop left off
//     (Resume with a function that calls WillBlock first): a body not all
//     in with its head (it streams from there, flushed before each wait,
//     as on the goroutine path), run to the close, larger than the buffer
//     or chunked with framing Read refuses (reported there), a failed
//     attempt (retried as shouldRetry decides, as on
//     the goroutine path: a connect that failed or timed out is a failed
//     dial, and the next upstream is tried), the loop ending.
//     response_timeout past without the head is ErrTimeout, a 504, as
//     Do's.
//
// Anything the loop cannot begin (an idle connection another loop
// watches, an upstream named by a host name, which a connect would have
// to resolve, a body larger than loopBodyMax or retry_body_buffer or not
// buffered whole, an upgrade) takes the goroutine path, with the upstream
// picked and the connection taken passed on (firstTry).

// loopExchange is one exchange served by the loop.
type loopExchange struct {
	p       *proxy
	w       *protocol.ResponseWriter
	r       *protocol.Request
	s       *protocol.Suspended
	i       int
	b       *backend
	c       *upstream.Conn
	head    []byte
	resp    *upstream.Response
	resumed bool
	active  bool // b.active counts the exchange
	tried   [16]bool
	// The methods handed to the loop and to Resume, made once per pooled
	// exchange.
	readyFn, wakeFn       func(bool)
	respondFn, blockingFn func()
}

// loopBodyMax is the largest request body sent by the loop (with
// retry_body_buffer's bound too): one that is buffered whole, and goes out
// with the head in one write.
const loopBodyMax = 8 << 10

var loopExchanges sync.Pool // *loopExchange

func init() { loopExchanges.New = newLoopExchange }

func newLoopExchange() any {
	x := &loopExchange{}
	x.readyFn, x.wakeFn = x.ready, x.wake
	x.respondFn, x.blockingFn = x.respond, x.blocking
	return x
}

// serveOnLoop begins r's exchange on the loop, reporting done when it did
// (or answered); otherwise first is what it began, for forward.
func (p *proxy) serveOnLoop(w *protocol.ResponseWriter, r *protocol.Request, rp *reqPath) (first *firstTry, done bool) {
	if len(p.backends) > 16 {
		return nil, false
	}
	sw := w.SocketWatcher()
	if sw == nil {
		return nil, false
	}
	x := loopExchanges.Get().(*loopExchange)
	tried := x.tried[:len(p.backends)]
	i := p.pick(tried, time.Now().UnixNano())
	if i < 0 {
		loopExchanges.Put(x)
		return nil, false // forward answers
	}
	b := p.backends[i]
	c := b.pool.GetIdle(sw)
	timeout := p.timeout
	if c == nil {
		// None idle: a connect without waiting, on this loop too.
		var err error
		switch c, err = b.pool.DialNow(sw); {
		case errors.Is(err, upstream.ErrNotNow):
			loopExchanges.Put(x)
			return &firstTry{i: i}, false // Dial, on a goroutine
		case err != nil:
			// Failed at once (no descriptor left, a unix socket's
			// backlog full): forward weighs it as a failed dial.
			loopExchanges.Put(x)
			return &firstTry{i: i, tried: true, err: err, connecting: true}, false
		}
		timeout = p.connTimeout // until the request is out (ready)
	}
	if c.Watcher() != upstream.Watcher(sw) {
		loopExchanges.Put(x)
		return &firstTry{i: i, c: c}, false
	}
	s := w.Suspend(timeout, x.wakeFn)
	if s == nil {
		loopExchanges.Put(x)
		if c.Dialing() {
			c.Close() // forward would wait for its connect: it dials anew
			c = nil
		}
		return &firstTry{i: i, c: c}, false
	}
	c.SetWatcher(sw)
	x.p, x.w, x.r, x.s, x.i, x.b, x.c = p, w, r, s, i, b, c
	x.resp, x.resumed, x.active = nil, false, false
	defer x.abortOnPanic()
	n := int(max(r.ContentLength, 0))
	x.head = p.appendHead(c.HeadBuffer(), r, rp, b, false, n, false, 0)
	if n > 0 {
		// The body is in the connection's buffer (a loop serves a
		// request inline only then): it goes right after the head, in
		// the same write, and again with it on a retry, as a body read
		// whole on the goroutine path does.
		h := len(x.head)
		x.head = slices.Grow(x.head, n)[:h+n]
		if _, err := io.ReadFull(r.Body, x.head[h:]); err != nil {
			// Nothing was sent: the protocol answers with the body's
			// error status once the request ends.
			c.Close()
			x.resume(nil)
			return nil, true
		}
	}
	b.active.Add(1)
	x.active = true
	c.OnReady(x.readyFn)
	dialing := c.Dialing()
	sent := c.SendNow(x.head, string(r.Method) == "HEAD")
	if dialing && !c.Dialing() {
		x.s.Extend(p.timeout) // connected: response_timeout from now on
	}
	switch {
	case sent:
	case c.Pending():
		// The socket did not take it all (or is still connecting): the
		// rest goes at its next event (ready).
		return nil, true
	default:
		x.sendFailed()
		return nil, true
	}
	if h := testHookLoopSent.Load(); h != nil {
		(*h)(r)
	}
	return nil, true
}

// sendFailed ends an attempt whose request the socket refused: a connect
// that failed is weighed at once (nothing was sent, another upstream may
// be tried); the goroutine weighs any other error once it has read what
// came back, as Do does.
func (x *loopExchange) sendFailed() {
	if _, err := x.c.SendMore(); errors.Is(err, upstream.ErrDial) {
		x.fail(err)
		return
	}
	x.resume(x.blockingFn)
}

// testHookLoopSent, set by a test, runs when serveOnLoop has sent a
// request on the loop and is about to return (the handler's last act).
var testHookLoopSent atomic.Pointer[func(*protocol.Request)]

// abortOnPanic, deferred by serveOnLoop once the request is suspended: a
// panic in the handler from then on answers 500 and drops the suspension
// (protocol's callHandler), so nothing will resume x, and its upstream
// connection, which may have a request on it, would stay open and
// counted. It ends the exchange here and panics on.
func (x *loopExchange) abortOnPanic() {
	v := recover()
	if v == nil {
		return
	}
	if !x.resumed {
		x.resumed = true
		x.c.OnReady(nil)
		x.c.Close()
		if x.active {
			x.b.active.Add(-1)
		}
	}
	panic(v)
}

// ready is the loop's event for the upstream socket.
func (x *loopExchange) ready(gone bool) {
	if x.resumed {
		return
	}
	defer x.failOnPanic()
	if gone {
		x.resume(x.blockingFn)
		return
	}
	c := x.c
	if h := testHookLoopReady.Load(); h != nil {
		(*h)(x.r)
	}
	if c.Pending() {
		unsent := c.Unsent()
		done, err := c.SendMore()
		switch {
		case err != nil:
			x.sendFailed()
			return
		case done:
		case c.Dialing():
			return // still connecting: its end is an event to come
		case c.Unsent() < unsent:
			// Some went out: response_timeout bounds each wait for the
			// socket, as Do's write.
			x.s.Extend(x.p.timeout)
			return
		default:
			// An event that brought no room: the upstream answered, or
			// ended, before it took the whole request. The goroutine
			// sends the rest and reads what came, as Do does (an early
			// answer, a 413 say, is passed on).
			x.resume(x.blockingFn)
			return
		}
		if h := testHookLoopSent.Load(); h != nil {
			(*h)(x.r)
		}
		x.s.Extend(x.p.timeout) // all out: the wait for the response
	}
	if x.resp == nil {
		resp, err := c.ReadHeadNow()
		switch {
		case err == upstream.ErrWouldBlock:
			x.progress()
			return
		case err != nil:
			x.fail(err)
			return
		}
		x.resp = resp
	}
	if complete, _ := c.BodyNow(); complete {
		x.resume(x.respondFn)
		return
	}
	// The body is not all in (or runs to the close, is larger than the
	// buffer, is chunked with framing Read refuses, or failed): the
	// goroutine sends what came and streams the rest, flushing before
	// each wait, as the goroutine path does; a body that stalls cuts the
	// response after its head, as there.
	x.resume(x.blockingFn)
}

// testHookLoopReady, set by a test, runs at each loop event of an
// exchange's upstream socket, before it is read.
var testHookLoopReady atomic.Pointer[func(*protocol.Request)]

// failOnPanic, deferred by ready, which runs on the loop's goroutine
// outside any handler (a panic there would end the worker): a panic while
// the upstream's response is read ends the attempt as a failure, which the
// goroutine path weighs (a retry, or a 502), and is logged with its stack.
func (x *loopExchange) failOnPanic() {
	v := recover()
	if v == nil {
		return
	}
	if ok, n := x.b.logLim.Allow(time.Now()); ok {
		x.p.logger.Error("panic serving a proxied exchange on the event loop", "upstream", x.b.addr,
			"panic", v, "suppressed", n, "stack", string(debug.Stack()))
	}
	if !x.resumed {
		x.fail(fmt.Errorf("%w: panic on the event loop: %v", upstream.ErrTruncated, v))
	}
}

// progress extends the deadline when bytes of the head came.
func (x *loopExchange) progress() {
	if x.c.Buffered() {
		x.s.Extend(x.p.timeout)
	}
}

// wake is the loop's word: response_timeout passed (a 504, as Do's
// ErrTimeout), or the loop ended (a goroutine goes on).
func (x *loopExchange) wake(ended bool) {
	if x.resumed {
		return
	}
	if ended {
		x.resume(x.blockingFn)
		return
	}
	if x.c.Dialing() {
		// Not connected within connect_timeout: as Dial's timeout, another
		// upstream may be tried.
		x.fail(fmt.Errorf("%w: not connected within %v on the event loop", upstream.ErrDial, x.p.connTimeout))
		return
	}
	x.fail(fmt.Errorf("%w: no response within %v on the event loop", upstream.ErrTimeout, x.p.timeout))
}

// fail ends the attempt with err: forward weighs it as it weighs Do's.
func (x *loopExchange) fail(err error) {
	x.resume(func() {
		x.b.active.Add(-1)
		x.c.Close()
		p, w, r := x.p, x.w, x.r
		first := &firstTry{i: x.i, c: x.c, tried: true, err: err, connecting: errors.Is(err, upstream.ErrDial)}
		sp := &sendSpec{head: x.head}
		tried := x.tried[:len(p.backends)]
		p.forward(w, r, sp, tried, first)
		x.release()
	})
}

// resume ends the loop's part: no event of the upstream socket reaches x
// from now on (OnReady(nil), on the loop's goroutine, which calls ready),
// and fn goes on, on the loop or on a goroutine (Suspended.Resume).
func (x *loopExchange) resume(fn func()) {
	x.resumed = true
	x.c.OnReady(nil)
	if fn == nil {
		fn = x.release
	}
	x.s.Resume(fn)
}

// testHookLoopRespond, set by a test, runs when an exchange's response
// is sent by a resumed request (on the loop, or on a goroutine after it).
var testHookLoopRespond atomic.Pointer[func()]

// respond sends the response, which is all in, on the loop.
func (x *loopExchange) respond() {
	if h := testHookLoopRespond.Load(); h != nil {
		(*h)()
	}
	x.b.succeeded()
	x.p.respond(x.w, x.r, x.b, x.c, x.resp, false)
	x.b.active.Add(-1)
	x.release()
}

// blocking goes on with the exchange on a goroutine, from where the loop
// left it.
func (x *loopExchange) blocking() {
	if h := testHookLoopBlocking.Load(); h != nil {
		(*h)()
	}
	x.w.ReturnToLoop() // and back to the loop once done
	x.w.WillBlock()
	resp, err := x.c.Finish(x.resp != nil)
	if err != nil {
		x.b.active.Add(-1)
		x.c.Close()
		p := x.p
		first := &firstTry{i: x.i, c: x.c, tried: true, err: err, connecting: errors.Is(err, upstream.ErrDial)}
		p.forward(x.w, x.r, &sendSpec{head: x.head}, x.tried[:len(p.backends)], first)
		x.release()
		return
	}
	x.resp = resp
	x.respond()
}

// testHookLoopBlocking, set by a test, runs when an exchange the loop
// began goes on on a goroutine (blocking).
var testHookLoopBlocking atomic.Pointer[func()]

// release pools x; nothing refers to it any more (OnReady(nil), and the
// suspension is over).
func (x *loopExchange) release() {
	x.p, x.w, x.r, x.s, x.b, x.c, x.resp, x.head = nil, nil, nil, nil, nil, nil, nil, nil
	clear(x.tried[:])
	loopExchanges.Put(x)
}
