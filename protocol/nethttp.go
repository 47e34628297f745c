package protocol

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"github.com/forkd/forkd/internal/httplex"
)

// FromHTTP adapts a net/http Handler to the native API. See the package
// documentation for what the adapter does not do.
func FromHTTP(h http.Handler) Handler { return httpAdapter{h: h} }

type httpAdapter struct{ h http.Handler }

// Serve builds an *http.Request from r and calls the net/http handler.
func (a httpAdapter) Serve(w *ResponseWriter, r *Request) {
	req, ok := newHTTPRequest(r)
	if !ok {
		w.SetClose()
		w.WriteHeader(http.StatusBadRequest)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteString("400 Bad Request\n")
		return
	}
	ctx := newRequestContext(w.c, r)
	defer ctx.finish()
	defer w.c.endUserDeadlines()
	req = req.WithContext(ctx)
	hw := &httpWriter{w: w, header: make(http.Header), ctx: ctx}
	if r.ContentLength != 0 {
		hw.body = &httpBody{r: r, req: req, ctx: ctx}
		req.Body = hw.body
	} else {
		ctx.bodyRead()
	}
	w.trailerSrc = hw
	a.h.ServeHTTP(hw, req)
	if !hw.w.hijacked {
		hw.finish()
	}
}

// newHTTPRequest converts r the way net/http's server would have parsed it.
func newHTTPRequest(r *Request) (*http.Request, bool) {
	target := string(r.Target)
	var u *url.URL
	if target == "*" {
		u = &url.URL{Path: "*"}
	} else {
		var err error
		if u, err = url.ParseRequestURI(target); err != nil {
			return nil, false
		}
	}
	hdr := make(http.Header, r.Header.Len())
	var trailer http.Header
	for i := 0; i < r.Header.Len(); i++ {
		f := r.Header.At(i)
		k := textproto.CanonicalMIMEHeaderKey(string(f.Name))
		switch k {
		case "Host":
			continue // in req.Host, as net/http does
		case "Transfer-Encoding":
			continue // in req.TransferEncoding
		case "Trailer":
			// Announced trailers are keys with no values until the body's
			// EOF, as in net/http.
			httplex.ForEachElement(f.Value, func(el []byte) {
				if trailer == nil {
					trailer = make(http.Header)
				}
				trailer[textproto.CanonicalMIMEHeaderKey(string(el))] = nil
			})
		}
		hdr[k] = append(hdr[k], string(f.Value))
	}
	if len(r.ID) > 0 && r.IDField != "" {
		hdr[textproto.CanonicalMIMEHeaderKey(r.IDField)] = []string{string(r.ID)}
	}
	req := &http.Request{
		Method:        method(r.Method),
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    r.ProtoMajor,
		ProtoMinor:    r.ProtoMinor,
		Header:        hdr,
		Body:          http.NoBody,
		ContentLength: r.ContentLength,
		Close:         r.Close,
		Host:          string(r.Host),
		RequestURI:    target,
		Trailer:       trailer,
	}
	switch {
	case r.h2:
		// The engine read the stream's request as HTTP/1.1; the
		// handler sees what the client spoke, as under net/http's
		// own HTTP/2.
		req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/2.0", 2, 0
	case r.ProtoMinor == 0:
		req.Proto = "HTTP/1.0"
	}
	if r.chunked {
		req.TransferEncoding = []string{"chunked"}
	}
	if r.RemoteAddr != nil {
		req.RemoteAddr = r.RemoteAddr.String()
	}
	return req, true
}

// method returns common methods without allocating.
func method(b []byte) string {
	switch string(b) {
	case "GET":
		return http.MethodGet
	case "HEAD":
		return http.MethodHead
	case "POST":
		return http.MethodPost
	case "PUT":
		return http.MethodPut
	case "DELETE":
		return http.MethodDelete
	case "OPTIONS":
		return http.MethodOptions
	case "PATCH":
		return http.MethodPatch
	}
	return string(b)
}

// httpBody is the request body; at EOF it fills req.Trailer and lets the
// request context watch for the client going away.
type httpBody struct {
	r      *Request
	req    *http.Request
	ctx    *requestContext
	eof    bool
	closed bool // discarded when the response began (httpWriter.beforeHead)
}

func (b *httpBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.r.Body.Read(p)
	if err == io.EOF && !b.eof {
		b.eof = true
		for i := 0; i < b.r.Trailer.Len(); i++ {
			f := b.r.Trailer.At(i)
			if b.req.Trailer == nil {
				b.req.Trailer = make(http.Header)
			}
			k := textproto.CanonicalMIMEHeaderKey(string(f.Name))
			b.req.Trailer[k] = append(b.req.Trailer[k], string(f.Value))
		}
		b.ctx.bodyRead()
	}
	return n, err
}

// Close does nothing: the server drains or discards what is left.
func (b *httpBody) Close() error { return nil }

// sniffLen is how many bytes net/http's content sniffing looks at.
const sniffLen = 512

// httpWriter is the http.ResponseWriter (with Flusher, Hijacker,
// io.ReaderFrom and the methods http.ResponseController looks for) over a
// native ResponseWriter. It follows net/http's response: the header map is
// copied when the status is fixed (WriteHeader, or the first Write), a
// missing Content-Type is sniffed from the first 512 body bytes (held back
// until there are that many, or a Flush, or the handler returns), and
// trailers are the declared Trailer names and TrailerPrefix keys.
type httpWriter struct {
	w           *ResponseWriter
	header      http.Header
	ctx         *requestContext
	body        *httpBody // nil when the request has none
	fullDuplex  bool
	status      int
	wroteHeader bool
	// sniffing: the Content-Type waits for the first body bytes, held in
	// pending.
	sniffing bool
	pending  []byte
	declared []string // trailer names from the Trailer field
}

func (hw *httpWriter) Header() http.Header { return hw.header }

// WriteHeader follows net/http's: a 1xx (but 101) goes out at once and
// the final status can follow; later calls are ignored; a code outside
// 100-999 panics.
func (hw *httpWriter) WriteHeader(code int) {
	if hw.w.hijacked {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if hw.wroteHeader {
		return
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		hw.copyHeader()
		hw.w.WriteHeader(code)
		return
	}
	hw.wroteHeader = true
	hw.status = code
	f := hw.copyHeader()
	hw.sniffing = f&(hasType|hasTE|hasCE) == 0 && bodyAllowedForStatus(code)
	for _, v := range hw.header["Trailer"] {
		httplex.ForEachElement([]byte(v), func(el []byte) {
			k := textproto.CanonicalMIMEHeaderKey(string(el))
			if validTrailer(k) {
				hw.declared = append(hw.declared, k)
			}
		})
	}
	hw.w.trailers = f&(hasTrailers|hasTE) != 0
	hw.w.WriteHeader(code)
}

// What copyHeader saw in the header map, for WriteHeader: net/http sniffs
// the Content-Type only when none is there (even empty), and there is no
// Transfer-Encoding or Content-Encoding; trailers (or a Transfer-Encoding)
// mean the response gets no Content-Length of its own.
const (
	hasType = 1 << iota
	hasTE
	hasCE
	hasTrailers
)

// copyHeader copies the header map into the native header, in one pass
// that also notes what WriteHeader needs to know.
func (hw *httpWriter) copyHeader() (seen int) {
	h := hw.w.Header()
	h.reset()
	for k, vs := range hw.header {
		switch {
		case k == "Content-Type":
			seen |= hasType
		case k == "Transfer-Encoding" && len(vs) > 0 && vs[0] != "":
			seen |= hasTE
		case k == "Content-Encoding" && len(vs) > 0 && vs[0] != "":
			seen |= hasCE
		case k == "Trailer":
			seen |= hasTrailers
		case strings.HasPrefix(k, http.TrailerPrefix):
			seen |= hasTrailers
			continue // sent after the body
		}
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	return seen
}

// bodyAllowedForStatus is net/http's rule (RFC 9110 §6.4.1).
func bodyAllowedForStatus(code int) bool {
	return code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
}

func (hw *httpWriter) Write(p []byte) (int, error) {
	if !hw.wroteHeader {
		hw.WriteHeader(http.StatusOK)
	}
	if hw.sniffing && !hw.w.hijacked && bodyAllowedForStatus(hw.status) {
		if hw.pending == nil {
			hw.pending = make([]byte, 0, sniffLen)
		}
		n := min(len(p), sniffLen-len(hw.pending))
		hw.pending = append(hw.pending, p[:n]...)
		if len(hw.pending) < sniffLen {
			return len(p), nil
		}
		if err := hw.sniff(); err != nil {
			return 0, err
		}
		m, err := hw.write(p[n:])
		return n + m, err
	}
	return hw.write(p)
}

// write is the native Write, after beforeHead when it sends the head.
func (hw *httpWriter) write(p []byte) (int, error) {
	if !hw.w.committed && len(hw.w.body)+len(p) > maxBodyBuffer {
		hw.beforeHead()
	}
	return hw.w.Write(p)
}

// maxPostHandlerReadBytes is how much unread request body net/http
// discards when the response head goes out.
const maxPostHandlerReadBytes = 256 << 10

// beforeHead does what net/http does when the response head goes out and
// the handler has not called EnableFullDuplex: it reads and discards the
// rest of the request body (up to 256 KiB; a longer one closes the
// connection after the response), and later reads of it fail with
// http.ErrBodyReadAfterClose. That spares a client that sends its whole
// request before it reads the response from waiting on us while we wait on
// it. A body that was announced with Expect: 100-continue and not asked
// for is left alone: the connection closes after the response.
func (hw *httpWriter) beforeHead() {
	b := hw.body
	if hw.fullDuplex || hw.w.committed || b == nil || b.closed || b.eof || hw.w.c.body.expect {
		return
	}
	_, err := io.CopyN(io.Discard, b, maxPostHandlerReadBytes+1)
	switch err {
	case io.EOF:
		b.closed = true
	default:
		hw.w.SetClose() // too long, or broken: what follows cannot be a request
	}
}

// sniff sets the Content-Type from the bytes held back, and writes them.
func (hw *httpWriter) sniff() error {
	if !hw.sniffing {
		return nil
	}
	hw.sniffing = false
	if len(hw.pending) == 0 {
		return nil
	}
	hw.w.Header().Set("Content-Type", http.DetectContentType(hw.pending))
	_, err := hw.w.Write(hw.pending)
	hw.pending = nil
	return err
}

func (hw *httpWriter) WriteString(s string) (int, error) {
	if !hw.wroteHeader || hw.sniffing {
		return hw.Write([]byte(s))
	}
	return hw.w.WriteString(s)
}

// ReadFrom lets io.Copy from an *os.File use sendfile(2) when the handler
// set Content-Length. As in net/http, the first 512 bytes are copied
// first when the Content-Type is to be sniffed.
func (hw *httpWriter) ReadFrom(r io.Reader) (int64, error) {
	if !hw.wroteHeader {
		hw.WriteHeader(http.StatusOK)
	}
	var n int64
	if hw.sniffing {
		n0, err := io.Copy(writerOnly{hw}, io.LimitReader(r, int64(sniffLen-len(hw.pending))))
		n += n0
		if err != nil || hw.sniffing {
			return n, err // the source ended before 512 bytes
		}
	}
	hw.beforeHead() // (ReadFrom may send the head at once)
	n1, err := hw.w.ReadFrom(r)
	return n + n1, err
}

// writerOnly hides ReadFrom from io.Copy.
type writerOnly struct{ io.Writer }

// finish completes the response when the handler returns.
func (hw *httpWriter) finish() {
	if !hw.wroteHeader {
		hw.WriteHeader(http.StatusOK)
	}
	hw.sniff()
}

// Flush implements http.Flusher.
func (hw *httpWriter) Flush() { hw.FlushError() }

// FlushError is Flush with its error, for http.ResponseController.
func (hw *httpWriter) FlushError() error {
	if !hw.wroteHeader {
		hw.WriteHeader(http.StatusOK)
	}
	if err := hw.sniff(); err != nil {
		return err
	}
	hw.beforeHead()
	return hw.w.Flush()
}

// Hijack implements http.Hijacker.
func (hw *httpWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, rw, err := hw.w.Hijack()
	if err == nil {
		hw.ctx.stopWatching() // the connection is the handler's now, as in net/http
	}
	return nc, rw, err
}

// SetReadDeadline is http.ResponseController's: it bounds the reads of
// the request body (the zero time: no limit); the next request gets the
// server's timeouts again.
func (hw *httpWriter) SetReadDeadline(t time.Time) error { return hw.w.c.setUserReadDeadline(t) }

// SetWriteDeadline is http.ResponseController's: it bounds the writes of
// this response (the zero time: no limit) instead of Limits.WriteTimeout.
func (hw *httpWriter) SetWriteDeadline(t time.Time) error {
	return hw.w.c.setUserWriteDeadline(t)
}

// EnableFullDuplex is http.ResponseController's: the handler may go on
// reading the request body after the response has begun (see beforeHead).
func (hw *httpWriter) EnableFullDuplex() error {
	hw.fullDuplex = true
	return nil
}

// fillTrailer puts the trailer fields into t after the body, as net/http's
// finalTrailers: the TrailerPrefix keys, then the declared names.
func (hw *httpWriter) fillTrailer(t *ResponseHeader) {
	for k, vs := range hw.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			for _, v := range vs {
				t.Add(name, v)
			}
		}
	}
	for _, k := range hw.declared {
		for _, v := range hw.header[k] {
			t.Add(k, v)
		}
	}
}

// validTrailer reports whether k may be declared as a trailer: net/http
// ignores fields that framing, routing, authentication or the payload's
// processing need up front (RFC 9110 §6.5.1).
func validTrailer(k string) bool {
	switch k {
	case "Authorization", "Cache-Control", "Connection", "Content-Encoding", "Content-Length",
		"Content-Range", "Content-Type", "Expect", "Host", "Keep-Alive", "Max-Forwards",
		"Pragma", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "Range",
		"Realm", "Te", "Trailer", "Transfer-Encoding", "Www-Authenticate":
		return false
	}
	return true
}
