package serve

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/httplex"
	"github.com/forkd/forkd/internal/lograte"
	"github.com/forkd/forkd/internal/tlsconn"
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

// backend is one upstream of a proxy route, with its pool and health.
type backend struct {
	addr   string // as configured, for logs
	pool   *upstream.Pool
	weight int
	cur    int // smooth weighted round robin state, under proxy.mu

	active    atomic.Int32 // requests in flight, for least_conn
	fails     atomic.Int32 // failures in the current window
	window    atomic.Int64 // unix nanoseconds the failure window started
	downUntil atomic.Int64 // unix nanoseconds; skipped before then

	logLim *lograte.Limiter
}

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

// parseUpstream splits "host:port" or "unix:/path" into a network and an
// address.
func parseUpstream(s string) (network, addr string, err error) {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if !strings.HasPrefix(path, "/") {
			return "", "", fmt.Errorf("upstream %q: unix socket path must be absolute", s)
		}
		return "unix", path, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", "", fmt.Errorf("upstream %q: %w", s, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("upstream %q: bad port", s)
	}
	if host == "" {
		return "", "", fmt.Errorf("upstream %q: missing host", s)
	}
	return "tcp", s, nil
}

// newProxy builds a proxy route; lim's HeaderBytes and HeaderCount bound
// the upstreams' response heads too.
func newProxy(c *config.Proxy, lim config.Limits, logger hclog.Logger) (*proxy, error) {
	if len(c.Upstreams) == 0 {
		return nil, errors.New("proxy: at least one upstream is required")
	}
	if c.Weights != nil && len(c.Weights) != len(c.Upstreams) {
		return nil, errors.New("proxy: weights must have one entry per upstream")
	}
	p := &proxy{
		leastConn:   c.Balance == config.BalanceLeastConn,
		via:         c.Via,
		retryBody:   int64(min(c.RetryBodyBuffer, 64<<20)),
		maxFails:    int32(c.MaxFails),
		failTimeout: c.FailTimeout,
		logger:      logger,
		noneLim:     lograte.New(proxyLogEvery),
	}
	if c.Host != "" && c.Host != config.ProxyHostClient {
		p.host = c.Host
	}
	upgrades := c.Upgrades
	if upgrades == nil {
		upgrades = []string{config.DefaultUpgrade}
	}
	if rh := c.RequestHeaders; rh != nil {
		p.reqRemove = rh.Remove
		p.reqSet = []headerField{} // not nil: the request's fields are checked
		for _, name := range sortedKeys(rh.Set) {
			f, err := newHeaderField(name, rh.Set[name])
			if err != nil {
				return nil, fmt.Errorf("proxy: request_headers: %w", err)
			}
			p.reqSet = append(p.reqSet, f)
		}
	}
	for _, u := range upgrades {
		if !strings.EqualFold(u, config.UpgradeH2C) { // validation refuses it; never, even in code
			p.upgrades = append(p.upgrades, u)
		}
	}
	if p.failTimeout <= 0 {
		p.failTimeout = config.DefaultFailTimeout
	}
	connectTimeout := c.ConnectTimeout
	if connectTimeout <= 0 {
		connectTimeout = config.DefaultConnectTimeout
	}
	timeout := c.ResponseTimeout
	if timeout <= 0 {
		timeout = config.DefaultResponseTimeout
	}
	p.timeout = timeout
	keepaliveTimeout := c.KeepaliveTimeout
	if keepaliveTimeout <= 0 {
		keepaliveTimeout = config.DefaultKeepaliveTimeout
	}
	p.bufs.New = func() any { b := make([]byte, proxyBufSize); return &b }
	p.bodyBufs.New = func() any { b := make([]byte, p.retryBody+1); return &b }
	for i, s := range c.Upstreams {
		network, addr, err := parseUpstream(s)
		if err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
		b := &backend{
			addr:   s,
			weight: 1,
			logLim: lograte.New(proxyLogEvery),
			pool: upstream.NewPool(upstream.Config{
				Network: network, Address: addr,
				ConnectTimeout: connectTimeout, Timeout: timeout,
				Keepalive: c.Keepalive, IdleTimeout: keepaliveTimeout,
				SurplusTimeout: proxySurplusIdle,
				MaxHeadBytes:   lim.HeaderBytes, MaxHeadFields: lim.HeaderCount,
				Logger: logger,
			}),
		}
		if c.Weights != nil {
			if c.Weights[i] < 1 {
				return nil, fmt.Errorf("proxy: weight %d of upstream %q is not positive", c.Weights[i], s)
			}
			b.weight = c.Weights[i]
		}
		p.backends = append(p.backends, b)
	}
	return p, nil
}

// Close closes the idle upstream connections and ends the tunnels: the
// server forgets a connection once it is hijacked, so its Shutdown does
// not wait for them, and the worker closes its handler when Shutdown is
// done.
func (p *proxy) Close() error {
	for _, b := range p.backends {
		b.pool.Close()
	}
	p.tmu.Lock()
	p.closed = true
	for t := range p.tunnels {
		t.end()
	}
	p.tmu.Unlock()
	return nil
}

// available reports whether b may be tried at now (unix nanoseconds).
func (b *backend) available(now int64) bool { return b.downUntil.Load() <= now }

// pick chooses the backend for the next attempt among those available and
// not yet tried: smooth weighted round robin (nginx's: every pick adds
// each candidate's weight to its current value, takes the largest and
// subtracts the total from it) or the fewest requests in flight per weight.
func (p *proxy) pick(tried []bool, now int64) int {
	if p.leastConn {
		best := -1
		n := len(p.backends)
		start := int(p.rr.Add(1)) // ties go round robin
		for k := range n {
			i := (start + k) % n
			b := p.backends[i]
			if tried[i] || !b.available(now) {
				continue
			}
			if best < 0 {
				best = i
				continue
			}
			bb := p.backends[best]
			if int64(b.active.Load())*int64(bb.weight) < int64(bb.active.Load())*int64(b.weight) {
				best = i
			}
		}
		return best
	}
	if len(p.backends) == 1 {
		if tried[0] || !p.backends[0].available(now) {
			return -1
		}
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	best, total := -1, 0
	for i, b := range p.backends {
		if tried[i] || !b.available(now) {
			continue
		}
		b.cur += b.weight
		total += b.weight
		if best < 0 || b.cur > p.backends[best].cur {
			best = i
		}
	}
	if best >= 0 {
		p.backends[best].cur -= total
	}
	return best
}

// failed counts a failure of b (nginx's max_fails within fail_timeout) and
// logs it, at most once per second per upstream.
func (p *proxy) failed(b *backend, now int64, msg string, err error) {
	if p.maxFails > 0 {
		if w := b.window.Load(); now-w > int64(p.failTimeout) {
			if b.window.CompareAndSwap(w, now) {
				b.fails.Store(0)
			}
		}
		if b.fails.Add(1) >= p.maxFails {
			b.fails.Store(0)
			b.downUntil.Store(now + int64(p.failTimeout))
			p.logf(b, now, msg+"; upstream marked down", err, "for", p.failTimeout)
			return
		}
	}
	p.logf(b, now, msg, err)
}

// logf writes a rate-limited warning about b.
func (p *proxy) logf(b *backend, now int64, msg string, err error, kv ...any) {
	if ok, n := b.logLim.Allow(time.Unix(0, now)); ok {
		args := append([]any{"upstream", b.addr, "error", err}, kv...)
		if n > 0 {
			args = append(args, "suppressed", n)
		}
		p.logger.Warn(msg, args...)
	}
}

// succeeded clears b's failures after a response.
func (b *backend) succeeded() {
	if b.fails.Load() != 0 {
		b.fails.Store(0)
	}
}

// idempotent reports whether a method may be sent twice (RFC 9110 §9.2.2).
func idempotent(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE":
		return true
	}
	return false
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
	retryable := stream == nil
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
		// Get has peeked at a pooled connection: one the upstream closed
		// while idle, or that holds stray bytes, never comes back.
		if err != nil {
			// Nothing was sent: any request may go to the next upstream.
			tried[i] = true
			p.failed(b, now, "upstream connect failed", err)
			continue
		}
		head := p.appendHead(c.HeadBuffer(), r, rp, b, upgrade, len(body), stream != nil, streamLen)
		b.active.Add(1)
		resp, err := c.Do(head, body, stream, streamLen, noBody)
		if err != nil {
			b.active.Add(-1)
			c.Close()
			switch {
			case errors.Is(err, upstream.ErrRequestBody):
				p.logger.Debug("request body read failed", "error", err)
				return // the protocol answers with the body's error status
			case errors.Is(err, upstream.ErrNoResponse) && c.Reused():
				// The upstream closed the pooled connection while it was
				// idle: it never saw the request, and is not to blame.
				// Again, on a new connection, unless part of a streamed
				// body is gone with it.
				if retryable {
					fresh = true
					continue
				}
				p.logger.Debug("stale pooled connection; a streamed body cannot be sent again", "upstream", b.addr)
				writeError(w, http.StatusBadGateway)
				return
			case errors.Is(err, upstream.ErrTimeout):
				p.failed(b, now, "upstream timed out", err)
				writeError(w, http.StatusGatewayTimeout)
				return
			}
			tried[i] = true
			p.failed(b, now, "upstream request failed", err)
			if errors.Is(err, upstream.ErrNoResponse) && retryable && idem {
				// Closed or reset before answering (nginx's "error"): the
				// next upstream. A malformed answer is not retried.
				continue
			}
			writeError(w, http.StatusBadGateway)
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

// readBody reads up to retryBody bytes of r's body into a pooled buffer.
// It returns the whole body, or the stream to send and, for a chunked body
// that did not fit, the part already read. ok is false when reading from
// the client failed.
func (p *proxy) readBody(r *protocol.Request) (body []byte, stream io.Reader, bp *[]byte, ok bool) {
	if r.ContentLength > p.retryBody || p.retryBody == 0 {
		return nil, r.Body, nil, true
	}
	if r.ContentLength < 0 || r.ContentLength > proxyBufSize {
		bp = p.bodyBufs.Get().(*[]byte)
		buf := *bp
		n, err := io.ReadFull(r.Body, buf)
		switch {
		case err == io.ErrUnexpectedEOF || err == io.EOF:
			return buf[:n], nil, bp, true
		case err != nil:
			p.bodyBufs.Put(bp)
			return nil, nil, nil, false
		}
		return buf[:n], r.Body, bp, true // longer than the buffer: stream
	}
	bp = p.bufs.Get().(*[]byte)
	buf := (*bp)[:r.ContentLength]
	if _, err := io.ReadFull(r.Body, buf); err != nil {
		p.bufs.Put(bp)
		return nil, nil, nil, false
	}
	return buf, nil, bp, true
}

// prefixReader serves the bytes of a body read ahead.
type prefixReader struct{ b []byte }

func (pr *prefixReader) Read(p []byte) (int, error) {
	if len(pr.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, pr.b)
	pr.b = pr.b[n:]
	return n, nil
}

// isUpgrade reports whether r asks to switch to a protocol p tunnels
// (RFC 9110 §7.8): an HTTP/1.1 request with Upgrade, named in Connection,
// whose every protocol is in upgrades. A request asking for another one
// (h2c above all: an HTTP/2 connection to the upstream would reach any of
// its paths past the routes) goes on as a plain request, without its
// Upgrade and Connection, as nginx sends an Upgrade it was not told to
// pass on; the client carries on over HTTP/1.1.
func (p *proxy) isUpgrade(r *protocol.Request) bool {
	v := r.Header.Get("Upgrade")
	if r.ProtoMinor == 0 || v == nil {
		return false
	}
	asked := false
	for i := 0; i < r.Header.Len(); i++ {
		f := r.Header.At(i)
		if httplex.EqualFold(f.Name, "Connection") && httplex.HasToken(f.Value, "upgrade") {
			asked = true
			break
		}
	}
	if !asked {
		return false
	}
	if !p.upgradeAllowed(v) {
		// Which protocol it was is the client's bytes: not logged.
		p.logger.Debug("upgrade not tunnelled; sent as a plain request", "h2c", httplex.HasToken(v, config.UpgradeH2C))
		return false
	}
	return true
}

// upgradeAllowed reports whether v, an Upgrade field value, names at least
// one protocol and only protocols in upgrades (compared without case, a
// "/version" ignored).
func (p *proxy) upgradeAllowed(v []byte) bool {
	ok, n := true, 0
	httplex.ForEachElement(v, func(el []byte) {
		n++
		if i := bytes.IndexByte(el, '/'); i >= 0 {
			el = el[:i]
		}
		if len(el) == len(config.UpgradeH2C) && httplex.EqualFold(el, config.UpgradeH2C) {
			ok = false
			return
		}
		for _, u := range p.upgrades {
			if len(el) == len(u) && httplex.EqualFold(el, u) {
				return
			}
		}
		ok = false
	})
	return ok && n > 0
}

// dropField reports whether request_headers removes or replaces the
// client's field name.
func (p *proxy) dropField(name []byte) bool {
	if p.requestID != "" && httplex.EqualFold(name, p.requestID) {
		return true
	}
	for _, n := range p.reqRemove {
		if httplex.EqualFold(name, n) {
			return true
		}
	}
	for i := range p.reqSet {
		if httplex.EqualFold(name, p.reqSet[i].name) {
			return true
		}
	}
	return false
}

// appendHead writes the request head sent upstream.
func (p *proxy) appendHead(b []byte, r *protocol.Request, rp *reqPath, be *backend, upgrade bool,
	bodyLen int, streaming bool, streamLen int64) []byte {
	b = append(b, r.Method...)
	b = append(b, ' ')
	switch {
	case p.strip != "":
		// The route matched, so the cleaned path starts with the prefix;
		// what is left is sent from the root ("/api/" and "/api/users"
		// give "/users", "/api" and "/api" give "/").
		rest := rp.path[min(len(p.strip), len(rp.path)):]
		if len(rest) == 0 || rest[0] != '/' {
			b = append(b, '/')
		}
		b = appendEscapedPath(b, rest)
	case rp.flags&pathNormalized == 0:
		b = append(b, r.Path...)
	default:
		b = appendEscapedPath(b, rp.path)
	}
	if r.Query != nil {
		b = append(b, '?')
		b = append(b, r.Query...)
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	switch {
	case p.host != "":
		b = append(b, p.host...)
	case len(r.Host) > 0:
		b = append(b, r.Host...)
	default:
		b = append(b, "localhost"...) // an HTTP/1.0 request without Host
	}
	b = append(b, "\r\n"...)

	// The Connection fields name more hop-by-hop fields (RFC 9110 §7.6.1).
	var connBuf [4][]byte
	conn := connBuf[:0]
	for i := 0; i < r.Header.Len(); i++ {
		if f := r.Header.At(i); httplex.EqualFold(f.Name, "Connection") {
			conn = append(conn, f.Value)
		}
	}
	// The forwarding fields are believed from a trusted peer (a balancer
	// in the listener's trusted list) and kept, X-Forwarded-For with the
	// client's address appended; from anyone else they are dropped and
	// forkd's own sent instead (Caddy's trusted_proxies).
	trusted := r.TrustedPeer
	xff, xfp, xfh := false, false, false
	for i := 0; i < r.Header.Len(); i++ {
		f := r.Header.At(i)
		if skipRequestField(f.Name) || namedIn(conn, f.Name) || (p.reqSet != nil || p.requestID != "") && p.dropField(f.Name) {
			continue
		}
		switch forwardingField(f.Name) {
		case fwdNone:
		case fwdFor:
			xff = trusted // sent below, in one field with the client's address
			continue
		case fwdProto:
			if !trusted {
				continue
			}
			xfp = true
		case fwdHost:
			if !trusted {
				continue
			}
			xfh = true
		default:
			if !trusted {
				continue
			}
		}
		b = append(b, f.Name...)
		b = append(b, ": "...)
		b = append(b, f.Value...)
		b = append(b, "\r\n"...)
	}
	if p.requestID != "" && len(r.ID) > 0 {
		b = append(b, p.requestID...)
		b = append(b, ": "...)
		b = append(b, r.ID...)
		b = append(b, "\r\n"...)
	}
	for i := range p.reqSet {
		f := &p.reqSet[i]
		b = append(b, f.name...)
		b = append(b, ": "...)
		if f.tmpl != nil {
			b = f.tmpl.appendTo(b, r, rp)
		} else {
			b = append(b, f.value...)
		}
		b = append(b, "\r\n"...)
	}
	ap, tcp := addrPort(r.RemoteAddr)
	if xff || tcp {
		b = append(b, "X-Forwarded-For: "...)
		sep := false
		for i := 0; xff && i < r.Header.Len(); i++ {
			if f := r.Header.At(i); len(f.Name) == 15 && httplex.EqualFold(f.Name, "X-Forwarded-For") {
				if sep {
					b = append(b, ", "...)
				}
				b = append(b, f.Value...)
				sep = true
			}
		}
		// The address is the client's as the connection knows it (from a
		// PROXY header when the listener takes one).
		if tcp {
			if sep {
				b = append(b, ", "...)
			}
			b = ap.Addr().Unmap().AppendTo(b)
		}
		b = append(b, "\r\n"...)
	}
	switch {
	case xfp:
	case tlsconn.IsTLS(r.LocalAddr):
		b = append(b, "X-Forwarded-Proto: https\r\n"...)
	default:
		b = append(b, "X-Forwarded-Proto: http\r\n"...)
	}
	if len(r.Host) > 0 && !xfh {
		b = append(b, "X-Forwarded-Host: "...)
		b = append(b, r.Host...)
		b = append(b, "\r\n"...)
	}
	if p.via {
		// A field of its own: repeated fields are one list (RFC 9110 §5.3).
		b = append(b, "Via: 1.1 forkd\r\n"...)
	}
	switch {
	case streaming && streamLen < 0:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	case streaming:
		b = appendContentLength(b, streamLen)
	case bodyLen > 0 || r.ContentLength != 0 || r.Header.Get("Content-Length") != nil:
		b = appendContentLength(b, int64(bodyLen))
	}
	if upgrade {
		b = append(b, "Connection: upgrade\r\nUpgrade: "...)
		b = append(b, r.Header.Get("Upgrade")...)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...)
}

func appendContentLength(b []byte, n int64) []byte {
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, n, 10)
	return append(b, "\r\n"...)
}

// addrPort returns the IP and port of a TCP peer.
func addrPort(a net.Addr) (netip.AddrPort, bool) {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort(), true
	}
	return netip.AddrPort{}, false
}

// skipRequestField reports whether a client field is not sent upstream as
// it is: hop-by-hop fields, the framing (set for the upstream's own), Host
// (sent first), Expect (100-continue is the protocol's business with the
// client), and HTTP2-Settings (a connection-specific field of the h2c
// upgrade, RFC 7540 §3.2.1, which is never tunnelled).
func skipRequestField(name []byte) bool {
	switch len(name) {
	case 2:
		return httplex.EqualFold(name, "TE")
	case 4:
		return httplex.EqualFold(name, "Host")
	case 6:
		return httplex.EqualFold(name, "Expect")
	case 14:
		return httplex.EqualFold(name, "Content-Length") || httplex.EqualFold(name, "HTTP2-Settings")
	}
	return hopByHop(name)
}

// The forwarding fields: who the client is, as proxies before forkd tell.
const (
	fwdNone  = iota
	fwdFor   // X-Forwarded-For
	fwdProto // X-Forwarded-Proto
	fwdHost  // X-Forwarded-Host
	fwdOther // Forwarded (RFC 7239), X-Real-IP
)

// forwardingField reports which forwarding field name is, if any.
func forwardingField(name []byte) int {
	switch len(name) {
	case 9:
		switch {
		case httplex.EqualFold(name, "Forwarded"), httplex.EqualFold(name, "X-Real-IP"):
			return fwdOther
		}
	case 15:
		if httplex.EqualFold(name, "X-Forwarded-For") {
			return fwdFor
		}
	case 16:
		if httplex.EqualFold(name, "X-Forwarded-Host") {
			return fwdHost
		}
	case 17:
		if httplex.EqualFold(name, "X-Forwarded-Proto") {
			return fwdProto
		}
	}
	return fwdNone
}

// hopByHop reports whether a field is hop-by-hop (RFC 9110 §7.6.1, plus
// the Proxy-* family and the obsolete Keep-Alive).
func hopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return httplex.EqualFold(name, "TE")
	case 7:
		return httplex.EqualFold(name, "Trailer") || httplex.EqualFold(name, "Upgrade")
	case 10:
		return httplex.EqualFold(name, "Connection") || httplex.EqualFold(name, "Keep-Alive")
	case 17:
		return httplex.EqualFold(name, "Transfer-Encoding")
	}
	return len(name) > 6 && httplex.EqualFold(name[:6], "Proxy-")
}

// namedIn reports whether name is an option of the Connection values.
func namedIn(conn [][]byte, name []byte) bool {
	for _, v := range conn {
		found := false
		httplex.ForEachElement(v, func(el []byte) {
			if len(el) == len(name) && httplex.EqualFold(el, string(name)) {
				found = true
			}
		})
		if found {
			return true
		}
	}
	return false
}

// respond sends the upstream's response to the client and releases c.
func (p *proxy) respond(w *protocol.ResponseWriter, r *protocol.Request, b *backend, c *upstream.Conn,
	resp *upstream.Response, upgrade bool) {
	if resp.Status == http.StatusSwitchingProtocols {
		if !upgrade || !resp.UpgradeToken || !p.upgradeAllowed(responseUpgrade(resp)) {
			c.Close()
			p.logf(b, time.Now().UnixNano(), "upstream switched protocols unasked", errors.New("unexpected 101"))
			writeError(w, http.StatusBadGateway)
			return
		}
		p.tunnel(w, b, c, resp)
		return
	}
	var connBuf [4][]byte
	conn := connBuf[:0]
	for _, f := range resp.Fields {
		if httplex.EqualFold(f.Name, "Connection") {
			conn = append(conn, f.Value)
		}
	}
	h := w.Header()
	for _, f := range resp.Fields {
		if hopByHop(f.Name) || httplex.EqualFold(f.Name, "Content-Length") || namedIn(conn, f.Name) {
			continue
		}
		h.AddBytes(f.Name, f.Value)
	}
	if bodyAllowed(resp.Status) && resp.ContentLength >= 0 && !resp.Chunked {
		w.SetContentLength(resp.ContentLength)
	}
	w.WriteHeader(resp.Status)
	if !bodyAllowed(resp.Status) || string(r.Method) == "HEAD" {
		c.Release()
		return
	}
	// A chunked response's trailer fields go on to a client that can
	// take them (HTTP/1.1); the Connection options named in the head
	// (which the body's reads overwrite) are kept to filter them.
	var trailerConn []byte
	trailers := resp.Chunked && r.ProtoMinor >= 1
	if trailers && len(conn) > 0 {
		for _, v := range conn {
			trailerConn = append(append(trailerConn, v...), ',')
		}
	}
	c.SetFlusher(w) // what arrived goes out before the next wait for more
	bp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bp)
	buf := *bp
	for {
		n, rerr := c.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				c.Close() // the client went away
				p.logger.Debug("client write failed", "error", werr)
				return
			}
		}
		if rerr == io.EOF {
			if tr := c.Trailer(); trailers && len(tr) > 0 {
				forwardTrailer(w, tr, trailerConn)
			}
			c.Release()
			return
		}
		if rerr != nil {
			c.Close()
			if errors.Is(rerr, upstream.ErrFlush) {
				p.logger.Debug("client write failed", "error", rerr)
				return // the client went away
			}
			p.failed(b, time.Now().UnixNano(), "upstream response body failed", rerr)
			if w.Reset() {
				// Nothing has reached the client yet (the head and a
				// malformed first chunk came in one read, so the head was
				// never flushed): it can still be told, with a 502.
				writeError(w, http.StatusBadGateway)
				return
			}
			// The head is out; all that is left is to cut the connection
			// so that the client sees a truncated response, not a complete
			// one (net/http's convention, which the protocol honours).
			panic(http.ErrAbortHandler)
		}
	}
}

// responseUpgrade is the Upgrade field of a response, or nil.
func responseUpgrade(resp *upstream.Response) []byte {
	for _, f := range resp.Fields {
		if len(f.Name) == 7 && httplex.EqualFold(f.Name, "Upgrade") {
			return f.Value
		}
	}
	return nil
}

// forwardTrailer sends an upstream's trailer fields on, less the hop-by-hop
// ones, those the response's Connection named, and those a trailer must not
// carry (RFC 9110 §6.5.1: framing, routing, authentication).
func forwardTrailer(w *protocol.ResponseWriter, tr []upstream.Field, conn []byte) {
	var t *protocol.ResponseHeader // asked for only when a field is left
	for _, f := range tr {
		if hopByHop(f.Name) || !trailerAllowed(f.Name) || len(conn) > 0 && namedIn([][]byte{conn}, f.Name) {
			continue
		}
		if t == nil {
			t = w.Trailer()
		}
		t.AddBytes(f.Name, f.Value)
	}
}

// trailerAllowed reports whether a field may be sent in a trailer section:
// not one that framing, routing, authentication or the response's
// processing needs up front (RFC 9110 §6.5.1).
func trailerAllowed(name []byte) bool {
	for _, s := range [...]string{"Content-Length", "Content-Encoding", "Content-Type", "Content-Range",
		"Host", "Authorization", "Www-Authenticate", "Proxy-Authenticate", "Set-Cookie",
		"Cache-Control", "Expires", "Date", "Location", "Retry-After", "Vary", "Age", "Trailer"} {
		if len(name) == len(s) && httplex.EqualFold(name, s) {
			return false
		}
	}
	return true
}

// tunnel switches the client's connection to the upstream's after a 101:
// the response head goes to the client, then bytes are copied both ways
// until both sides have finished, the tunnel has been idle (no byte either
// way) for response_timeout, or the proxy is closed.
func (p *proxy) tunnel(w *protocol.ResponseWriter, b *backend, c *upstream.Conn, resp *upstream.Response) {
	cc, brw, err := w.Hijack()
	if err != nil {
		c.Close()
		p.logger.Debug("hijack for an upgrade failed", "error", err)
		return
	}
	defer cc.Close()
	head := []byte("HTTP/1.1 101 Switching Protocols\r\n")
	for _, f := range resp.Fields {
		if httplex.EqualFold(f.Name, "Keep-Alive") || httplex.EqualFold(f.Name, "Transfer-Encoding") ||
			httplex.EqualFold(f.Name, "Content-Length") {
			continue
		}
		head = append(head, f.Name...)
		head = append(head, ": "...)
		head = append(head, f.Value...)
		head = append(head, "\r\n"...)
	}
	head = append(head, "\r\n"...)
	uc, rest := c.Tunnel()
	defer uc.Close()
	head = append(head, rest...)
	t := &tunnel{client: cc, upstream: uc, timeout: p.timeout}
	p.tmu.Lock()
	if p.closed {
		p.tmu.Unlock()
		return
	}
	if p.tunnels == nil {
		p.tunnels = make(map[*tunnel]struct{})
	}
	p.tunnels[t] = struct{}{}
	p.tmu.Unlock()
	defer func() {
		p.tmu.Lock()
		delete(p.tunnels, t)
		p.tmu.Unlock()
	}()
	t.moved()
	cc.SetWriteDeadline(time.Now().Add(p.timeout))
	if _, err := cc.Write(head); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Client to upstream, starting with what the server had read ahead.
		t.copy(uc, cc, brw.Reader)
	}()
	t.copy(cc, uc, uc)
	<-done
	if t.idle.Load() {
		p.logger.Debug("upgraded connection idle; closed", "upstream", b.addr, "timeout", p.timeout)
	}
}

// tunnel is an upgraded connection: the client's and the upstream's, and
// when a byte last went either way.
type tunnel struct {
	client, upstream net.Conn
	timeout          time.Duration // the longest both ways may be idle
	last             atomic.Int64  // unix nanoseconds of the last byte read
	idle             atomic.Bool   // ended for being idle
	once             sync.Once
}

func (t *tunnel) moved() { t.last.Store(time.Now().UnixNano()) }

// end closes both connections, which ends both copies.
func (t *tunnel) end() {
	t.once.Do(func() {
		t.client.Close()
		t.upstream.Close()
	})
}

// copy copies src (read through r) to dst until src ends, then half-closes
// dst. Each read waits at most until timeout after the last byte either way
// (nginx's proxy_read_timeout on an upgraded connection); a read that
// reaches its deadline while the other way has moved waits on, and one
// that finds both ways idle ends the tunnel. A write gets the timeout too.
func (t *tunnel) copy(dst, src net.Conn, r io.Reader) {
	buf := make([]byte, 16<<10)
	src.SetReadDeadline(time.Unix(0, t.last.Load()).Add(t.timeout))
	for {
		n, err := r.Read(buf)
		if n > 0 {
			t.moved()
			dst.SetWriteDeadline(time.Now().Add(t.timeout))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				t.end()
				return
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			dl := time.Unix(0, t.last.Load()).Add(t.timeout)
			if time.Now().Before(dl) {
				src.SetReadDeadline(dl) // the other way moved: wait on
				continue
			}
			t.idle.Store(true)
			t.end()
			return
		case err == io.EOF:
			closeWrite(dst)
			return
		default:
			t.end()
			return
		}
	}
}

// closeWrite half-closes a connection, or closes it when it cannot.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
