package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/httplex"
	"github.com/forkd/forkd/internal/tlsconn"
	"github.com/forkd/forkd/protocol"
	"github.com/hashicorp/go-hclog"
)

// Proxy defaults for zero durations in the configuration.
const (
	defaultConnectTimeout  = 5 * time.Second
	defaultResponseTimeout = 60 * time.Second
	proxyIdlePerUpstream   = 32
	proxyIdleTimeout       = 30 * time.Second
	proxyBufSize           = 32 << 10
)

// upstream is one parsed upstream address.
type upstream struct {
	network string // "tcp" or "unix"
	addr    string
}

// proxy forwards requests to a set of upstreams.
type proxy struct {
	upstreams      []upstream
	next           atomic.Uint32
	connectTimeout time.Duration
	transport      *http.Transport
	logger         hclog.Logger
	bufs           sync.Pool // *[]byte of proxyBufSize
}

// dialError marks a failure to connect to every upstream.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connect to upstreams: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// parseUpstream parses "host:port" or "unix:/path".
func parseUpstream(s string) (upstream, error) {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if !strings.HasPrefix(path, "/") {
			return upstream{}, fmt.Errorf("upstream %q: unix socket path must be absolute", s)
		}
		return upstream{network: "unix", addr: path}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return upstream{}, fmt.Errorf("upstream %q: %w", s, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return upstream{}, fmt.Errorf("upstream %q: bad port", s)
	}
	if host == "" {
		return upstream{}, fmt.Errorf("upstream %q: missing host", s)
	}
	return upstream{network: "tcp", addr: s}, nil
}

func newProxy(c *config.Proxy, logger hclog.Logger) (*proxy, error) {
	if len(c.Upstreams) == 0 {
		return nil, errors.New("proxy: at least one upstream is required")
	}
	p := &proxy{
		connectTimeout: c.ConnectTimeout,
		logger:         logger,
	}
	p.bufs.New = func() any { b := make([]byte, proxyBufSize); return &b }
	for _, s := range c.Upstreams {
		u, err := parseUpstream(s)
		if err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
		p.upstreams = append(p.upstreams, u)
	}
	if p.connectTimeout <= 0 {
		p.connectTimeout = defaultConnectTimeout
	}
	respTimeout := c.ResponseTimeout
	if respTimeout <= 0 {
		respTimeout = defaultResponseTimeout
	}
	p.transport = &http.Transport{
		Proxy:                 nil, // never an environment proxy
		DialContext:           p.dial,
		MaxIdleConnsPerHost:   proxyIdlePerUpstream * len(p.upstreams),
		IdleConnTimeout:       proxyIdleTimeout,
		ResponseHeaderTimeout: respTimeout,
		DisableCompression:    true, // pass Content-Encoding through untouched
		WriteBufferSize:       proxyBufSize,
		ReadBufferSize:        proxyBufSize,
	}
	return p, nil
}

// dial connects to the next upstream in round-robin order, failing over to
// the following ones when a connect fails.
func (p *proxy) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	start := p.next.Add(1) - 1
	var errs []error
	for i := range p.upstreams {
		u := p.upstreams[(int(start)+i)%len(p.upstreams)]
		d := net.Dialer{Timeout: p.connectTimeout}
		conn, err := d.DialContext(ctx, u.network, u.addr)
		if err == nil {
			return conn, nil
		}
		p.logger.Warn("upstream connect failed", "upstream", u.addr, "error", err)
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, &dialError{err: errors.Join(errs...)}
}

// Close closes the idle upstream connections.
func (p *proxy) Close() error {
	p.transport.CloseIdleConnections()
	return nil
}

// serveRoute forwards r and streams the response back.
func (p *proxy) serveRoute(w *protocol.ResponseWriter, r *protocol.Request, rp *reqPath) {
	w.WillBlock() // the upstream makes us wait
	out, body := p.outRequest(r, rp)
	if body != nil {
		// The Transport may still read the body from its own goroutine
		// after RoundTrip returns (an upstream that answered early); it must
		// be done before the connection moves on to the next request.
		defer body.detach()
		if r.Header.Get("Expect") != nil {
			// The first body read sends "100 Continue" to the client; do it
			// here, before any response can be under way.
			body.prefetch()
		}
	}
	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		if body != nil && body.failed.Load() {
			// The client's body was refused (too large, malformed, timed
			// out); the protocol answers with the matching status.
			p.logger.Debug("request body read failed")
			return
		}
		writeError(w, p.errorStatus(err))
		return
	}
	defer resp.Body.Close()

	if resp.StatusCode < 200 { // 101 after we removed Upgrade, or a stray 1xx
		p.logger.Warn("upstream sent an unexpected interim status", "status", resp.StatusCode)
		writeError(w, 502)
		return
	}
	h := w.Header()
	connHdr := resp.Header["Connection"]
	for k, vv := range resp.Header {
		if k == "Content-Length" || isHopByHop(k) || namedInConnection(connHdr, k) {
			continue
		}
		for i, v := range vv {
			if i == 0 {
				h.Set(k, v)
			} else {
				h.Add(k, v)
			}
		}
	}
	hasBody := bodyAllowed(resp.StatusCode) && string(r.Method) != "HEAD"
	if bodyAllowed(resp.StatusCode) && resp.ContentLength >= 0 {
		w.SetContentLength(resp.ContentLength)
	}
	w.WriteHeader(resp.StatusCode)
	if !hasBody {
		return
	}
	// Send the head now: the first body bytes of a stream may be long in
	// coming.
	if err := w.Flush(); err != nil {
		return
	}
	bp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bp)
	buf := *bp
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return // the client went away
			}
			// Pass what arrived on at once: streaming responses (server-sent
			// events, long downloads) must not wait for a full buffer.
			if werr := w.Flush(); werr != nil {
				return
			}
		}
		if rerr == io.EOF {
			return
		}
		if rerr != nil {
			// The head is out; all that is left is to cut the connection so
			// that the client sees a truncated response, not a complete one
			// (net/http's convention, which the protocol honours).
			p.logger.Warn("upstream response body failed", "error", rerr)
			panic(http.ErrAbortHandler)
		}
	}
}

// errorStatus maps a RoundTrip error to 502 or 504 and logs it.
func (p *proxy) errorStatus(err error) int {
	var de *dialError
	var ne net.Error
	switch {
	case errors.As(err, &de):
		return 502 // already logged per upstream by dial
	case errors.As(err, &ne) && ne.Timeout():
		p.logger.Warn("upstream response timed out")
		return 504
	}
	// Log the error's type only: some net/http errors quote request bytes.
	p.logger.Warn("upstream request failed", "error_type", fmt.Sprintf("%T", err))
	return 502
}

// outRequest builds the upstream request for r.
func (p *proxy) outRequest(r *protocol.Request, rp *reqPath) (*http.Request, *proxyBody) {
	var target string
	if rp.flags&pathNormalized == 0 {
		target = string(r.Path)
	} else {
		target = string(appendEscapedPath(make([]byte, 0, len(rp.path)+16), rp.path))
	}
	u := &url.URL{
		Scheme:     "http",
		Host:       "upstream",
		Opaque:     target,
		RawQuery:   string(r.Query),
		ForceQuery: r.Query != nil && len(r.Query) == 0,
	}
	out := &http.Request{
		Method:     string(r.Method),
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header, r.Header.Len()+4),
		Host:       string(r.Host),
	}
	var connVals [][]byte
	for i := 0; i < r.Header.Len(); i++ {
		if f := r.Header.At(i); httplex.EqualFold(f.Name, "Connection") {
			connVals = append(connVals, f.Value)
		}
	}
	var xff []string
	for i := 0; i < r.Header.Len(); i++ {
		f := r.Header.At(i)
		name := string(f.Name)
		key := http.CanonicalHeaderKey(name)
		switch key {
		case "Host", "Content-Length", "Expect":
			// Host travels in out.Host, the length in out.ContentLength;
			// 100-continue is the protocol's business with the client.
			continue
		case "X-Forwarded-For":
			xff = append(xff, string(httplex.TrimOWS(f.Value)))
			continue
		case "X-Forwarded-Proto", "X-Forwarded-Host":
			continue
		}
		if isHopByHop(key) || namedInConnectionBytes(connVals, name) {
			continue
		}
		out.Header[key] = append(out.Header[key], string(f.Value))
	}
	if ip := remoteIP(r.RemoteAddr); ip != "" {
		xff = append(xff, ip)
	}
	if len(xff) > 0 {
		out.Header["X-Forwarded-For"] = []string{strings.Join(xff, ", ")}
	}
	proto := "http"
	if tlsconn.IsTLS(r.LocalAddr) {
		proto = "https"
	}
	out.Header["X-Forwarded-Proto"] = []string{proto}
	if len(r.Host) > 0 {
		out.Header["X-Forwarded-Host"] = []string{out.Host}
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // no Go-http-client default
	}

	var body *proxyBody
	if r.ContentLength != 0 && r.Body != nil {
		body = &proxyBody{r: r.Body}
		out.Body = body
		out.ContentLength = r.ContentLength // -1: unknown, sent chunked
		if r.ContentLength < 0 {
			out.ContentLength = 0 // with a non-nil Body: unknown length
		}
	} else {
		out.Body = http.NoBody
	}
	return out, body
}

// remoteIP returns the client IP of a TCP peer, else "".
func remoteIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	return ""
}

// isHopByHop reports whether a canonical field name is hop-by-hop (RFC 9110
// section 7.6.1, plus the Proxy-* family and the obsolete Keep-Alive).
func isHopByHop(key string) bool {
	switch key {
	case "Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return strings.HasPrefix(key, "Proxy-")
}

// namedInConnection reports whether name is one of the options listed in the
// Connection field values.
func namedInConnection(vals []string, name string) bool {
	for _, v := range vals {
		if httplex.HasToken([]byte(v), name) {
			return true
		}
	}
	return false
}

// namedInConnectionBytes is namedInConnection for request field values.
func namedInConnectionBytes(vals [][]byte, name string) bool {
	for _, v := range vals {
		if httplex.HasToken(v, name) {
			return true
		}
	}
	return false
}

// proxyBody hands the client's request body to the Transport, which reads it
// from its own goroutine, and cuts it off when the handler returns.
type proxyBody struct {
	mu       sync.Mutex
	r        io.Reader
	pre      []byte // read ahead by prefetch, served first
	detached bool
	eof      bool
	failed   atomic.Bool // reading from the client failed
}

// errBodyDetached is returned by reads after the handler has returned.
var errBodyDetached = errors.New("serve: request body read after the handler returned")

func (b *proxyBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.detached {
		return 0, errBodyDetached
	}
	if len(b.pre) > 0 {
		n := copy(p, b.pre)
		b.pre = b.pre[n:]
		if len(b.pre) == 0 && b.eof {
			return n, io.EOF
		}
		return n, nil
	}
	if b.eof {
		return 0, io.EOF
	}
	n, err := b.r.Read(p)
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil:
		b.failed.Store(true)
	}
	return n, err
}

// Close is called by the Transport; the body belongs to the connection, so
// there is nothing to close.
func (b *proxyBody) Close() error { return nil }

// prefetch reads the first bytes of the body ahead.
func (b *proxyBody) prefetch() {
	buf := make([]byte, 16<<10)
	n, err := b.Read(buf)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pre = buf[:n]
	if err != nil && err != io.EOF {
		b.pre = nil // the error is sticky in the protocol's reader
	}
}

// detach waits for a read in progress and refuses further reads.
func (b *proxyBody) detach() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.detached = true
}
