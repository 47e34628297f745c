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
	upgrade := p.isUpgrade(r)
	noBody := string(r.Method) == "HEAD"
	replayable := stream == nil // the whole body is at hand to send again
	idem := idempotent(r.Method)

	var triedBuf [16]bool
	var tried []bool
	if len(p.backends) <= len(triedBuf) {
		tried = triedBuf[:len(p.backends)]
	} else {
		tried = make([]bool, len(p.backends))
	}
	fresh := false // after a stale pooled connection: dial
	for {
		now := time.Now().UnixNano()
		i := p.pick(tried, now)
		if i < 0 {
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
		var c *upstream.Conn
		var err error
		if fresh {
			c, err = b.pool.Dial()
		} else {
			c, err = b.pool.Get()
		}
		fresh = false
		// Get has checked a pooled connection: one the upstream closed
		// while idle, or that holds stray bytes, never comes back.
		connecting := err != nil
		var resp *upstream.Response
		if !connecting {
			// The loop the client came from watches the connection
			// once it is idle again: no epoll_ctl per reuse.
			c.SetWatcher(w.SocketWatcher())
			head := p.appendHead(c.HeadBuffer(), r, rp, b, upgrade, len(body), stream != nil, streamLen)
			b.active.Add(1)
			resp, err = c.Do(head, body, stream, streamLen, noBody)
			if err != nil {
				b.active.Add(-1)
				c.Close()
			}
		}
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
				continue
			case retryFresh:
				fresh = true
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
		p.respond(w, r, b, c, resp, upgrade)
		b.active.Add(-1)
		return
	}
}
