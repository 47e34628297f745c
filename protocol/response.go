package protocol

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// maxBodyBuffer is how much body a ResponseWriter buffers before it commits
// the header (chunked on HTTP/1.1, close-delimited on 1.0) and streams.
const maxBodyBuffer = 16 << 10

var (
	// ErrBodyNotAllowed is returned by Write for HEAD-less statuses that
	// cannot have a body (1xx, 204, 304).
	ErrBodyNotAllowed = http.ErrBodyNotAllowed
	// ErrContentLength is returned by Write past the declared Content-Length.
	ErrContentLength = http.ErrContentLength
	// ErrHijacked is returned by writes after Hijack.
	ErrHijacked = http.ErrHijacked
	// ErrCommitted is returned by Hijack and SendFile when they come too late.
	ErrCommitted = errors.New("protocol: response header already written")
)

// ResponseWriter writes one response. Without an explicit Content-Length the
// body is buffered; if the handler returns with the whole body in the buffer,
// Content-Length is set, otherwise HTTP/1.1 gets chunked encoding and 1.0 is
// close-delimited. HEAD responses carry headers only.
type ResponseWriter struct {
	c           *conn
	req         *Request
	hdr         ResponseHeader
	status      int
	body        []byte // buffered body, before the head is committed
	written     int64  // body bytes accepted from the handler
	wroteHeader bool   // the status is fixed
	committed   bool   // the head is in the write buffer or sent
	chunked     bool
	close       bool
	hijacked    bool
	// trailers: the body ends with trailer fields (from trailerSrc, when
	// set, else the handler's, from Trailer), so it is never given a
	// Content-Length of its own.
	trailers   bool
	trailerSrc trailerSource
	trailer    ResponseHeader // scratch for trailerSrc, or Trailer's fields
	hook       HeadHook       // SetHeadHook's, until the head is committed
	filter     BodyFilter     // SetBodyFilter's, until the body is complete
	filtered   bool           // SetBodyFilter was called: the length is unknown
	chunkHead  [20]byte       // scratch for a chunk's size line
}

// BodyFilter transforms a response's body on its way out (serve's
// compression): it takes the body the handler writes and writes what it
// makes to the ResponseWriter's RawBody, in the response's framing.
type BodyFilter interface {
	// Write takes body bytes, in order.
	Write(p []byte) (int, error)
	// Flush writes out what the filter holds: it is called before every
	// flush of the response, so that a streamed event is never held back.
	Flush() error
	// Close writes the end of the body, when the handler has returned.
	Close() error
}

// SetBodyFilter makes f transform the body; it is meant for a HeadHook,
// which knows the status and fields the body goes out with. Since a
// filter changes the body's length, the declared length is dropped: an
// HTTP/1.1 response is then chunked. f may be nil for a response that has
// no body (HEAD), whose fields describe the body a GET would get.
func (w *ResponseWriter) SetBodyFilter(f BodyFilter) {
	if w.committed {
		return
	}
	w.hdr.contentLength = -1
	w.filter = f
	w.filtered = true
}

// RawBody is where a BodyFilter writes: the body, framed as committed.
func (w *ResponseWriter) RawBody() io.Writer { return (*rawBody)(w) }

// rawBody is the ResponseWriter seen by its BodyFilter.
type rawBody ResponseWriter

func (b *rawBody) Write(p []byte) (int, error) {
	if err := (*ResponseWriter)(b).writeRaw(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// HeadHook is told when a response's head is about to be written, once
// per response, whoever wrote it: route middleware (serve's headers) sets
// header fields there on every response, a handler's errors included.
type HeadHook interface {
	// BeforeHead may change w's header fields, status and declared
	// length; it must not write a body.
	BeforeHead(w *ResponseWriter, r *Request)
}

// SetHeadHook makes h run just before the head of this response is
// committed (the first flush, or when the handler returns). It holds
// through Reset, and is forgotten for the next request.
func (w *ResponseWriter) SetHeadHook(h HeadHook) { w.hook = h }

// trailerSource supplies a chunked response's trailer fields when the
// handler has returned (FromHTTP's writer).
type trailerSource interface {
	fillTrailer(t *ResponseHeader)
}

func (w *ResponseWriter) reset(r *Request) {
	w.req = r
	w.hdr.reset()
	w.status = http.StatusOK
	w.body = w.body[:0]
	w.written = 0
	w.wroteHeader = false
	w.committed = false
	w.chunked = false
	w.close = false
	w.trailers = false
	w.trailerSrc = nil
	w.hook = nil
	w.filter = nil
	w.filtered = false
}

// Header returns the header fields to send; changes after the first body byte
// is flushed have no effect.
func (w *ResponseWriter) Header() *ResponseHeader { return &w.hdr }

// WriteHeader sets the status code (default 200). An informational status
// (1xx other than 101) is sent at once with the current header fields, and
// the final status can still be set afterwards. Codes outside 100-999 and
// calls after the first are ignored.
func (w *ResponseWriter) WriteHeader(status int) {
	if w.wroteHeader || w.committed || w.hijacked || status < 100 || status > 999 {
		return
	}
	if status < 200 && status != http.StatusSwitchingProtocols {
		if w.req.ProtoMinor == 0 {
			return // RFC 9110 §15.2: no 1xx to HTTP/1.0 clients.
		}
		c := w.c
		c.wbuf = appendStatusLine(c.wbuf, status)
		c.wbuf = w.hdr.appendTo(c.wbuf)
		c.wbuf = append(c.wbuf, "\r\n"...)
		c.flush()
		return
	}
	w.status = status
	w.wroteHeader = true
}

// Trailer returns the fields to send after the body, in the trailer
// section of a chunked response (RFC 9112 §7.1.2). Asked for before the head
// is committed, it keeps the response from getting a Content-Length of its
// own, so that an HTTP/1.1 response is chunked; where there is no trailer
// section (a declared Content-Length, HEAD, an HTTP/1.0 client, a head
// already sent with a length) the fields are dropped. They are sent when
// the handler returns, with the rules of the header fields.
func (w *ResponseWriter) Trailer() *ResponseHeader {
	if !w.trailers {
		w.trailers = true
		w.trailer.reset()
	}
	return &w.trailer
}

// SetContentLength declares the body length up front (for streaming).
func (w *ResponseWriter) SetContentLength(n int64) {
	if !w.committed && n >= 0 {
		w.hdr.contentLength = n
	}
}

// bodyAllowed reports whether the status may carry a body (RFC 9110 §6.4.1).
func (w *ResponseWriter) bodyAllowed() bool {
	return w.status >= 200 && w.status != http.StatusNoContent && w.status != http.StatusNotModified
}

// Write appends to the body.
func (w *ResponseWriter) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, ErrHijacked
	}
	if !w.bodyAllowed() {
		return 0, ErrBodyNotAllowed
	}
	if cl := w.hdr.contentLength; cl >= 0 && w.written+int64(len(p)) > cl {
		return 0, ErrContentLength
	}
	w.written += int64(len(p))
	if w.req.isHead() {
		return len(p), nil
	}
	if !w.committed {
		if len(w.body)+len(p) <= maxBodyBuffer {
			w.body = append(w.body, p...)
			return len(p), nil
		}
		w.commit(false)
		if err := w.writeBody(w.body); err != nil {
			return 0, err
		}
		w.body = w.body[:0]
	}
	if err := w.writeBody(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteString appends to the body.
func (w *ResponseWriter) WriteString(s string) (int, error) {
	if !w.committed && !w.hijacked && w.bodyAllowed() && len(w.body)+len(s) <= maxBodyBuffer &&
		(w.hdr.contentLength < 0 || w.written+int64(len(s)) <= w.hdr.contentLength) {
		// The common case without the string conversion.
		w.written += int64(len(s))
		if !w.req.isHead() {
			w.body = append(w.body, s...)
		}
		return len(s), nil
	}
	return w.Write([]byte(s))
}

// writeBody sends p through the body filter, if any, with the committed
// framing.
func (w *ResponseWriter) writeBody(p []byte) error {
	if w.filter != nil {
		if len(p) == 0 {
			return nil
		}
		_, err := w.filter.Write(p)
		return err
	}
	return w.writeRaw(p)
}

// writeRaw sends p with the committed framing.
func (w *ResponseWriter) writeRaw(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	c := w.c
	if w.chunked {
		// The scratch lives in w: a local array would escape (c.send).
		h := strconv.AppendInt(w.chunkHead[:0], int64(len(p)), 16)
		h = append(h, '\r', '\n')
		if err := c.write(h); err != nil {
			return err
		}
		if err := c.write(p); err != nil {
			return err
		}
		return c.write(crlf)
	}
	return c.write(p)
}

var crlf = []byte("\r\n")

// ReadFrom copies r to the body; an *os.File with a declared Content-Length
// goes out with sendfile(2) (SendFile, from the file's current offset).
func (w *ResponseWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.hdr.contentLength >= 0 && w.bodyAllowed() && !w.req.isHead() && !w.hijacked {
		// Regular files only: sendfile(2) cannot read pipes or devices.
		if f, lr := fileOf(r); f != nil {
			if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
				if off, err := f.Seek(0, io.SeekCurrent); err == nil {
					return w.sendFileFrom(f, lr, off, fi.Size())
				}
			}
		}
	}
	// The copy buffer is pooled: an HTTP/2 stream's static file comes
	// through here (its connection is not a socket), one per request.
	bp := copyBufPool.Get().(*[copyBufSize]byte)
	defer copyBufPool.Put(bp)
	buf := bp[:]
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// copyBufSize is ReadFrom's copy buffer's size.
const copyBufSize = 32 << 10

// copyBufPool holds ReadFrom's copy buffers. (The ResponseWriter copies
// what it is given before Write returns, so a buffer is free again when
// ReadFrom returns.)
var copyBufPool = sync.Pool{New: func() any { return new([copyBufSize]byte) }}

// fileOf returns the file r reads, directly or through the LimitedReader lr.
func fileOf(r io.Reader) (f *os.File, lr *io.LimitedReader) {
	if l, ok := r.(*io.LimitedReader); ok {
		lr, r = l, l.R
	}
	f, _ = r.(*os.File)
	return f, lr
}

// sendFileFrom is ReadFrom for a regular file of the given size at offset
// off: it sends what is left of the declared length (and of lr) until the
// file ends, and moves the file's offset past what went.
func (w *ResponseWriter) sendFileFrom(f *os.File, lr *io.LimitedReader, off, size int64) (int64, error) {
	n := min(w.hdr.contentLength-w.written, max(size-off, 0))
	if lr != nil {
		n = min(n, lr.N)
	}
	before := w.written
	err := w.SendFile(f, off, n)
	sent := w.written - before
	f.Seek(off+sent, io.SeekStart)
	if lr != nil {
		lr.N -= sent
	}
	return sent, err
}

// SendFile sends n bytes of f from offset with sendfile(2) (zero-copy).
// SetContentLength must have been called for the full body length.
func (w *ResponseWriter) SendFile(f interface{ Fd() uintptr }, offset, n int64) error {
	if w.hijacked {
		return ErrHijacked
	}
	if w.hdr.contentLength < 0 || w.written+n > w.hdr.contentLength {
		return ErrContentLength
	}
	if !w.bodyAllowed() {
		return ErrBodyNotAllowed
	}
	if w.req.isHead() {
		w.written += n
		return nil
	}
	w.commit(false)
	if w.filter != nil {
		// The head's hook filters the body: it cannot go out as it is.
		ra, ok := f.(io.ReaderAt)
		if !ok {
			return errors.New("protocol: SendFile with a body filter needs an io.ReaderAt")
		}
		_, err := w.ReadFrom(io.NewSectionReader(ra, offset, n))
		return err
	}
	if len(w.body) > 0 {
		// Written before, still buffered: it goes first.
		if err := w.writeBody(w.body); err != nil {
			return err
		}
		w.body = w.body[:0]
	}
	c := w.c
	if c.werr != nil {
		return c.werr
	}
	src := int(f.Fd())
	// The head (and any responses batched before it) goes out with MSG_MORE,
	// so that the kernel sends it in the same segments as the file's first
	// bytes instead of as a small packet of its own.
	pending := c.wbuf
	var serr error
	// polled: step runs under rc.Write, which waits between calls; then a
	// call that made progress moves the write deadline on, so that
	// WriteTimeout bounds the time without progress, not the whole file.
	polled, progressed := false, false
	wait := func() bool {
		if polled && progressed {
			c.extendWriteDeadline()
		}
		progressed = false
		return false // wait for the poller
	}
	more := 0
	if n > 0 {
		more = unix.MSG_MORE // the file follows at once (an empty one must not leave the head corked)
	}
	step := func(fd uintptr) bool {
		for len(pending) > 0 {
			m, err := rawSend(int(fd), pending, more)
			if m > 0 {
				pending = pending[m:]
				progressed = true
			}
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return wait()
			case err != nil:
				serr = err
				return true
			}
		}
		for n > 0 {
			m, err := sendfile(int(fd), src, &offset, min(n, maxSendfileChunk))
			if m > 0 {
				n -= int64(m)
				w.written += int64(m)
				progressed = true
			}
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return wait()
			case err != nil:
				serr = err
			case m == 0:
				serr = io.ErrUnexpectedEOF // the file is shorter
			default:
				continue
			}
			return true
		}
		return true
	}
	// In a turn the descriptor is at hand: try at once, and wait (off the
	// event loop) only for what the socket did not take.
	if !c.t.writeNow(step) {
		t, err := c.offLoop()
		if err != nil {
			return err
		}
		c.extendWriteDeadline()
		polled, progressed = true, false
		ok, werr := t.waitWrite(step)
		if !ok {
			// Not a socket: copy through the net.Conn.
			if err := c.flush(); err != nil {
				return err
			}
			ra, ok := f.(io.ReaderAt)
			if !ok {
				return errors.New("protocol: SendFile needs a socket or an io.ReaderAt")
			}
			_, err := w.ReadFrom(io.NewSectionReader(ra, offset, n))
			return err
		}
		if werr != nil && serr == nil {
			serr = werr
		}
	}
	c.wbuf = c.wbuf[:0]
	if serr != nil {
		c.werr = serr
		return serr
	}
	return nil
}

// maxSendfileChunk bounds one sendfile(2) call.
const maxSendfileChunk = 1 << 30

// sendfile is sendfile(2).
func sendfile(out, in int, offset *int64, n int64) (int, error) {
	return unix.Sendfile(out, in, offset, int(n))
}

// Flush sends the status line, headers and buffered body now.
func (w *ResponseWriter) Flush() error {
	if w.hijacked {
		return ErrHijacked
	}
	if !w.committed {
		w.commit(false)
		if err := w.writeBody(w.body); err != nil {
			return err
		}
		w.body = w.body[:0]
	}
	if w.filter != nil {
		if err := w.filter.Flush(); err != nil {
			return err
		}
	}
	return w.c.flush()
}

// Reset forgets the status, header fields, trailer and buffered body set
// so far, so that the handler can answer differently (a proxy whose
// upstream failed before a byte of its response went out). It reports
// false, changing nothing, once the head has been committed (Flush, or a
// body over the buffer) or the connection hijacked.
func (w *ResponseWriter) Reset() bool {
	if w.committed || w.hijacked {
		return false
	}
	keepClose, keepHook := w.close, w.hook
	w.reset(w.req)
	w.close = keepClose // SetClose still holds: the request's body may be unread
	w.hook = keepHook
	return true
}

// Status returns the status code sent or to be sent.
func (w *ResponseWriter) Status() int { return w.status }

// BytesWritten returns the body bytes written so far.
func (w *ResponseWriter) BytesWritten() int64 { return w.written }

// SetClose marks the connection to close after this response (Connection: close).
func (w *ResponseWriter) SetClose() { w.close = true }

// WillBlock tells the server that the handler is about to wait for
// something other than this connection: an upstream, a lock, a timer. On an
// event loop (see LoopSafe) the connection then moves to a goroutine of its
// own, for good, so that the loop's other connections do not wait with it.
// Responses to earlier pipelined requests that are still queued go out
// first, so that their clients do not wait for this one. It is cheap to
// call when in doubt.
func (w *ResponseWriter) WillBlock() {
	w.c.leaveLoop()
	w.c.flushBeforeRead()
}

// ReturnToLoop asks that the connection, once WillBlock has taken it off
// its event loop, go back to that loop as soon as this request is done, if
// its response went out at once and nothing of the next request is
// buffered (one epoll_ctl), instead of staying on its goroutine while its
// client keeps it busy: the reverse proxy's goroutine path, so that the
// connection's next request may be served on the loop.
func (w *ResponseWriter) ReturnToLoop() { w.c.rejoinLoop = true }

// Hijack hands the connection over to the caller: the server writes no
// response and forgets the connection. The bufio.Reader holds any bytes the
// server had read past the request head. It fails once the response head
// has been sent.
func (w *ResponseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, ErrHijacked
	}
	if w.committed {
		return nil, nil, ErrCommitted
	}
	return w.c.hijack()
}

// commit writes the status line and header fields into the write buffer.
// final means the handler is done and w.body is the whole body.
func (w *ResponseWriter) commit(final bool) {
	if w.committed {
		return
	}
	if h := w.hook; h != nil {
		w.hook = nil
		h.BeforeHead(w, w.req)
	}
	w.committed = true
	c := w.c
	r := w.req
	b := appendStatusLine(c.wbuf, w.status)
	if !w.hdr.hasDate {
		b = append(b, c.srv.dateLine()...)
	}
	cl := w.hdr.contentLength
	switch {
	case !w.bodyAllowed():
		if w.status == http.StatusNotModified && cl >= 0 {
			b = appendContentLength(b, cl)
		}
	case cl >= 0:
		b = appendContentLength(b, cl)
	case final && r.isHead() && (w.written == 0 || w.trailers):
		// Unknown for HEAD: say nothing rather than a wrong 0.
	case final && !w.trailers && !w.filtered:
		b = appendContentLength(b, w.written)
	case r.isHead():
		// Flushed before the handler finished: the length is unknown, and
		// no body (so no chunked framing) follows.
	case r.ProtoMinor >= 1:
		w.chunked = true
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	default:
		w.close = true // HTTP/1.0: the body ends when the connection does.
	}
	if w.close || w.hdr.close || r.Close || c.srv.draining.Load() {
		w.close = true
		b = append(b, "Connection: close\r\n"...)
	} else if r.ProtoMinor == 0 {
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	b = w.hdr.appendTo(b)
	b = append(b, "\r\n"...)
	c.wbuf = b
}

// finish completes the response after the handler returned.
func (w *ResponseWriter) finish() {
	if !w.committed {
		w.commit(true)
		if w.chunked || w.filter != nil { // (when trailers follow, or filtered)
			w.writeBody(w.body)
		} else if len(w.body) > 0 {
			w.c.write(w.body)
		}
		w.body = w.body[:0]
	}
	if f := w.filter; f != nil {
		w.filter = nil
		f.Close()
	}
	if w.chunked {
		t := &w.trailer
		if w.trailerSrc != nil {
			t.reset()
			w.trailerSrc.fillTrailer(t)
		}
		if len(t.fields) == 0 || w.trailerSrc == nil && !w.trailers {
			w.c.write(lastChunk)
			return
		}
		// RFC 9112 §7.1.2: the last chunk, the trailer section, CRLF.
		b := append(make([]byte, 0, 64), "0\r\n"...)
		b = t.appendTo(b)
		w.c.write(append(b, "\r\n"...))
		return
	}
	if cl := w.hdr.contentLength; cl >= 0 && w.written < cl && w.bodyAllowed() && !w.req.isHead() {
		// The body is shorter than declared: the client can only notice
		// if the connection ends.
		w.close = true
	}
}

var lastChunk = []byte("0\r\n\r\n")

// appendStatusLine writes the status line. The version is always
// HTTP/1.1, also to HTTP/1.0 clients: RFC 9110 §6.2 asks a server to send the
// highest minor version it conforms to; how the body is framed still follows
// the request's version.
func appendStatusLine(b []byte, status int) []byte {
	b = append(b, "HTTP/1.1 "...)
	if status == http.StatusOK {
		return append(b, "200 OK\r\n"...)
	}
	b = append(b, byte('0'+status/100), byte('0'+status/10%10), byte('0'+status%10), ' ')
	text := http.StatusText(status)
	if text == "" {
		text = "Unknown"
	}
	b = append(b, text...)
	return append(b, "\r\n"...)
}

func appendContentLength(b []byte, n int64) []byte {
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, n, 10)
	return append(b, "\r\n"...)
}

func (r *Request) isHead() bool { return string(r.Method) == "HEAD" }
