package serve

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forkd/forkd/internal/lograte"
	"github.com/forkd/forkd/protocol"
	"github.com/forkd/forkd/protocol/upstream"
	"github.com/hashicorp/go-hclog"
)

// Proxy settings that are not configuration keys.
const (
	proxyBufSize = 32 << 10 // response body copy buffer
	// proxyLogEvery is how often a repeating error of one upstream is logged.
	proxyLogEvery = time.Second
	// proxySurplusIdle is how long upstream connections over keepalive
	// stay pooled (upstream.Config.SurplusTimeout): a load that keeps more
	// requests in flight than keepalive then reuses them instead of
	// dialling and closing connections all the time.
	proxySurplusIdle = time.Second
	// proxyAllow is the Allow field of the 405 that answers TRACE: the
	// methods a proxy route passes on (it cannot know the upstream's).
	proxyAllow = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
)

// proxy forwards requests to a set of upstreams.
type proxy struct {
	backends    []*backend
	leastConn   bool
	mu          sync.Mutex // round-robin state
	rr          atomic.Uint32
	host        string // fixed Host, or "" for the client's
	via         bool
	upgrades    []string // the protocols tunnelled (never h2c)
	retryBody   int64
	maxFails    int32
	failTimeout time.Duration
	timeout     time.Duration // response_timeout
	connTimeout time.Duration // connect_timeout
	logger      hclog.Logger
	noneLim     *lograte.Limiter // "no upstream available"
	bufs        sync.Pool        // *[]byte of proxyBufSize
	bodyBufs    sync.Pool        // *[]byte of retryBody+1, for bodies read whole

	tmu     sync.Mutex // guards tunnels and closed
	tunnels map[*tunnel]struct{}
	closed  bool // Close has ended the tunnels; no new ones

	// strip is the route prefix removed from the path sent upstream
	// (strip_prefix), or "".
	strip string
	// reqRemove and reqSet are request_headers: the client's fields
	// dropped (reqSet's names too), then reqSet's added.
	reqRemove []string
	reqSet    []headerField
	// requestID is the field that carries Request.ID upstream (the
	// client's own is dropped), or "".
	requestID string
	// onLoop: requests without a body, or with a small one, may be served
	// by the client's event loop (proxy_loop.go); false for a route whose middleware
	// works after the handler returns (error_pages, compress).
	onLoop bool
}

// serveRoute forwards r and streams the response back.
func (p *proxy) serveRoute(w *protocol.ResponseWriter, r *protocol.Request, rp *reqPath) {
	if string(r.Method) == "TRACE" {
		// TRACE echoes the request back, cookies and credentials
		// included, to whatever script can send it (RFC 9110 §9.3.8
		// warns of it): the upstream never sees one.
		p.logger.Debug("TRACE refused with 405")
		w.Header().Set("Allow", proxyAllow)
		writeError(w, http.StatusMethodNotAllowed)
		return
	}
	upgrade := p.isUpgrade(r)
	var first *firstTry
	if p.onLoop && (r.ContentLength == 0 || r.ContentLength > 0 && r.ContentLength <= min(p.retryBody, loopBodyMax)) && !upgrade {
		// Served by the client's event loop if it can be (proxy_loop.go).
		var done bool
		if first, done = p.serveOnLoop(w, r, rp); done {
			return
		}
	}
	if p.onLoop {
		// Done here, the connection goes back to its loop at once, where
		// its next request may be served without a goroutine.
		w.ReturnToLoop()
	}
	w.WillBlock() // the upstream makes us wait

	// The body: small ones are read whole first, so that the request can
	// be sent again; others stream, and cannot be retried once sent.
	var (
		body      []byte
		stream    io.Reader
		streamLen int64
		bp        *[]byte
	)
	if r.ContentLength != 0 && r.Body != nil {
		var ok bool
		if body, stream, bp, ok = p.readBody(r); !ok {
			return // the protocol answers with the body's error status
		}
		if stream != nil {
			streamLen = r.ContentLength
			if body != nil {
				// A chunked body longer than the buffer: what was read
				// goes first; the rest streams, chunked.
				stream = io.MultiReader(&prefixReader{b: body}, stream)
				body = nil
			}
		}
	}
	if bp != nil {
		if len(*bp) == proxyBufSize {
			defer p.bufs.Put(bp)
		} else {
			defer p.bodyBufs.Put(bp)
		}
	}
	var triedBuf [16]bool
	var tried []bool
	if len(p.backends) <= len(triedBuf) {
		tried = triedBuf[:len(p.backends)]
	} else {
		tried = make([]bool, len(p.backends))
	}
	p.forward(w, r, &sendSpec{rp: rp, upgrade: upgrade, body: body, stream: stream, streamLen: streamLen}, tried, first)
}

// sendSpec is what forward sends upstream: the head built from rp, or a
// copy of head (one built before: rp is valid only while serveRoute
// runs), and the body.
type sendSpec struct {
	rp        *reqPath
	head      []byte
	upgrade   bool
	body      []byte
	stream    io.Reader
	streamLen int64
}

// firstTry is the first attempt of a request when the event loop began it
// (serveOnLoop): the upstream picked, and the connection taken from its
// pool (nil: none was idle), unless tried is set, with its outcome.
type firstTry struct {
	i     int
	c     *upstream.Conn
	tried bool
	resp  *upstream.Response
	err   error
	// connecting: err is the connect's (DialNow's), so nothing was sent.
	connecting bool
}

// forward sends the request to an upstream, trying others as shouldRetry
// decides, and streams the response back. The connection has left its
// event loop (WillBlock), or the attempt ahead cannot wait (first tried
// with an error that is not retried).
func (p *proxy) forward(w *protocol.ResponseWriter, r *protocol.Request, sp *sendSpec, tried []bool, first *firstTry) {
	noBody := string(r.Method) == "HEAD"
	replayable := sp.stream == nil // the whole body is at hand to send again
	idem := idempotent(r.Method)
	fresh := false // after a stale pooled connection: dial
	for {
		now := time.Now().UnixNano()
		var (
			i          int
			c          *upstream.Conn
			err        error
			resp       *upstream.Response
			connecting bool
		)
		switch {
		case first != nil && first.tried:
			// The loop's attempt: its connection is released or closed.
			i, c, resp, err, connecting = first.i, first.c, first.resp, first.err, first.connecting
		default:
			if first != nil {
				i, c = first.i, first.c
			} else if i = p.pick(tried, now); i < 0 {
				// Every upstream failed this request or is down.
				if ok, n := p.noneLim.Allow(time.Unix(0, now)); ok {
					args := []any{"upstreams", len(p.backends)}
					if n > 0 {
						args = append(args, "suppressed", n)
					}
					p.logger.Warn("no upstream available", args...)
				}
				writeError(w, http.StatusBadGateway)
				return
			}
			b := p.backends[i]
			switch {
			case c != nil:
			case fresh:
				c, err = b.pool.Dial()
			default:
				c, err = b.pool.Get()
			}
			// Get has checked a pooled connection: one the upstream closed
			// while idle, or that holds stray bytes, never comes back.
			connecting = err != nil
			if !connecting {
				// The loop the client came from watches the connection
				// once it is idle again: no epoll_ctl per reuse.
				c.SetWatcher(w.SocketWatcher())
				var head []byte
				if sp.head != nil {
					head = append(c.HeadBuffer(), sp.head...)
				} else {
					head = p.appendHead(c.HeadBuffer(), r, sp.rp, b, sp.upgrade, len(sp.body), sp.stream != nil, sp.streamLen)
				}
				b.active.Add(1)
				resp, err = c.Do(head, sp.body, sp.stream, sp.streamLen, noBody)
				if err != nil {
					b.active.Add(-1)
					c.Close()
				}
			}
		}
		first, fresh = nil, false
		b := p.backends[i]
		if err != nil {
			d := shouldRetry(attempt{err: err, connecting: connecting, reused: !connecting && c.Reused(),
				replayable: replayable, idempotent: idem})
			switch {
			case d.blame != "":
				p.failed(b, now, d.blame, err)
			case d.note != "":
				p.logger.Debug(d.note, "upstream", b.addr, "error", err)
			}
			switch d.next {
			case retryNext:
				tried[i] = true
				w.WillBlock() // a dial may wait
				continue
			case retryFresh:
				fresh = true
				w.WillBlock()
				continue
			}
			if d.status != 0 {
				writeError(w, d.status)
			}
			return
		}
		b.succeeded()
		if c.BodyLeft() {
			// The upstream answered before it had the whole body, the
			// rest of which the client is still sending: answer, then
			// close rather than read it.
			w.SetClose()
		}
		p.respond(w, r, b, c, resp, sp.upgrade)
		b.active.Add(-1)
		return
	}
}
