package h2

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forkd/forkd/protocol"
)

// wrapConn returns nc reading h.Preread first, with h's addresses; a TLS
// connection keeps its ConnectionState, which x/net checks (RFC 9113
// §9.2) and puts in Request.TLS.
func wrapConn(nc net.Conn, h protocol.HandOff) net.Conn {
	c := &prereadConn{Conn: nc, rest: h.Preread, remote: h.RemoteAddr, local: h.LocalAddr}
	if cs, ok := nc.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return &tlsConn{prereadConn: c, cs: cs}
	}
	return c
}

type prereadConn struct {
	net.Conn
	rest          []byte
	remote, local net.Addr
}

func (c *prereadConn) Read(p []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *prereadConn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

func (c *prereadConn) LocalAddr() net.Addr {
	if c.local != nil {
		return c.local
	}
	return c.Conn.LocalAddr()
}

type tlsConn struct {
	*prereadConn
	cs interface{ ConnectionState() tls.ConnectionState }
}

func (c *tlsConn) ConnectionState() tls.ConnectionState { return c.cs.ConnectionState() }

// connHandler answers the streams of one connection.
type connHandler struct {
	s             *Server
	remote, local net.Addr
}

// errStreamDone ends the engine's writes once the stream has its answer.
var errStreamDone = errors.New("h2: stream done")

// streamConns holds stream connections for the next streams: each comes
// with the buffers a stream needs (its request head, chunk framing, a
// partial response line), so that a stream allocates none of them.
var streamConns = sync.Pool{New: func() any { return new(streamConn) }}

// ServeHTTP serves one stream through the engine (see the package doc), on
// this goroutine: the engine's writes are parsed and go to w as they come.
func (h *connHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	growStack(0)
	sc := streamConns.Get().(*streamConn)
	sc.headBuf = appendRequestHead(sc.headBuf[:0], r)
	sc.head = sc.headBuf
	sc.r = r
	sc.rc = *http.NewResponseController(w) // (by value: no allocation)
	sc.remote, sc.local = h.remote, h.local
	sc.resp = respWriter{w: w, noBody: r.Method == "HEAD", sc: sc, buf: sc.resp.buf[:0]}
	if r.ContentLength != 0 { // x/net: 0 when the stream ended with its head
		sc.body = r.Body
		sc.chunked = r.ContentLength < 0
	}
	// The engine may still read (and discard, bounded) what is left of
	// the body after its answer, as after an HTTP/1.1 answer: meanwhile
	// the stream stays open, so a body shorter or longer than its
	// content-length is still seen as the stream error it is (RFC 9113
	// §8.1.1).
	h.s.streams.ServeConn(r.Context(), sc)
	sc.finish()
	if !sc.resp.complete() {
		// The answer is torn or missing: reset the stream rather than
		// end it as if complete. (The stream connection is not reused:
		// a handler that hijacked it may hold it still.)
		panic(http.ErrAbortHandler)
	}
	if sc.closed.Load() && sc.body == nil {
		// The engine is done with it (it closes what it does not hand
		// to a hijacker). One that carried a body is not reused: a
		// read of it that a handler left running elsewhere, cut by
		// finish, may not have returned yet.
		sc.reset()
		streamConns.Put(sc)
	}
}

// streamStackFrame sizes growStack's frame: with what is below it, the
// stack of a stream's goroutine grows to 16 KiB at once.
const streamStackFrame = 12 << 10

// growStack grows the stack of the goroutine that calls it, while the
// goroutine is shallow, to what the engine needs to serve a stream.
//
// x/net runs each stream's handler on a goroutine of its own, which
// starts with the runtime's average stack (a few KiB: most goroutines
// are small), and the engine (its request loop, the routes, a static
// file's path through SendFile and ReadFrom) runs deeper than that. Left
// alone, the stack then grew two or three times per stream, each time
// copying every frame below and adjusting its pointers: about a tenth of
// a worker's CPU time on 4 KiB static files over HTTP/2. Grown here, in
// one step with three frames to copy, it is done for the price of
// zeroing the frame; the stack goes back to the runtime's cache when the
// stream ends.
//
//go:noinline
func growStack(i int) byte {
	var b [streamStackFrame]byte
	return b[i]
}

// appendRequestHead appends r's head, as HTTP/1.1 for the engine, to b.
func appendRequestHead(b []byte, r *http.Request) []byte {
	b = append(b, r.Method...)
	b = append(b, ' ')
	b = append(b, r.RequestURI...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, r.Host...)
	b = append(b, "\r\n"...)
	for k, vv := range r.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive",
			"Proxy-Connection", "Upgrade", "Expect":
			// Framing and connection fields are this hop's (x/net sends
			// 100 Continue itself when the body is first read).
			continue
		}
		for _, v := range vv {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	switch {
	case r.ContentLength > 0 || r.ContentLength == 0 && r.Header["Content-Length"] != nil:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, r.ContentLength, 10)
		b = append(b, "\r\n"...)
	case r.ContentLength < 0:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	return append(b, "\r\n"...)
}

// streamConn is one stream's exchange as the engine sees it: Read gives
// the request head, then its body (chunked when its length is unknown),
// then EOF; Write takes the response, which resp writes to the stream.
type streamConn struct {
	head    []byte // the rest of headBuf to be read
	headBuf []byte
	r       *http.Request
	body    io.Reader // nil: no body
	chunked bool
	out     []byte // chunk framing waiting to be read
	cbuf    []byte // chunked: body bytes read
	ended   bool   // the body (and its framing) is all read
	rc      http.ResponseController
	resp    respWriter
	closed  atomic.Bool // the engine closed it (Server.Close may, on its goroutine)

	remote, local net.Addr

	mu   sync.Mutex
	done bool      // the stream has its answer: no more deadlines, reads end
	wdl  time.Time // the write deadline the stream has
}

// reset readies c for another stream, keeping its buffers.
func (c *streamConn) reset() {
	buf := c.resp.buf[:0]
	*c = streamConn{headBuf: c.headBuf[:0], out: c.out[:0], cbuf: c.cbuf}
	c.resp.buf = buf
}

// finish ends the exchange: a body read the engine waits in is cut, and
// later reads see EOF.
func (c *streamConn) finish() {
	c.mu.Lock()
	already := c.done
	c.done = true
	c.mu.Unlock()
	if c.body != nil && !already {
		_ = c.rc.SetReadDeadline(time.Now())
	}
}

func (c *streamConn) isDone() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done
}

func (c *streamConn) Read(p []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(p, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	if len(c.out) > 0 {
		n := copy(p, c.out)
		c.out = c.out[n:]
		return n, nil
	}
	if c.body == nil || c.ended || c.isDone() {
		return 0, io.EOF
	}
	if !c.chunked {
		n, err := c.body.Read(p)
		if err == io.EOF {
			c.ended = true
			if n > 0 {
				err = nil
			}
		}
		return n, err
	}
	return c.readChunk(p)
}

// readChunk reads body bytes as one chunk, or the last chunk and the
// trailers at the body's end, into c.out, and gives p what fits.
func (c *streamConn) readChunk(p []byte) (int, error) {
	if c.cbuf == nil {
		c.cbuf = make([]byte, 16<<10)
	}
	n, err := c.body.Read(c.cbuf)
	out := c.out[:0]
	if n > 0 {
		out = strconv.AppendInt(out, int64(n), 16)
		out = append(out, "\r\n"...)
		out = append(out, c.cbuf[:n]...)
		out = append(out, "\r\n"...)
	}
	switch {
	case err == io.EOF:
		out = c.lastChunk(out)
		err = nil
	case err != nil && n > 0:
		err = nil // again on the next Read
	}
	if err != nil {
		return 0, err
	}
	m := copy(p, out)
	c.out = out[m:]
	return m, nil
}

// lastChunk appends the last chunk and the request's trailers.
func (c *streamConn) lastChunk(b []byte) []byte {
	c.ended = true
	b = append(b, "0\r\n"...)
	for k, vv := range c.r.Trailer {
		for _, v := range vv {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	return append(b, "\r\n"...)
}

func (c *streamConn) Write(p []byte) (int, error) {
	return c.resp.Write(p)
}

func (c *streamConn) Close() error {
	c.closed.Store(true)
	return nil
}

// HTTP2Stream tells the engine that its requests are HTTP/2 (Request.Proto).
func (c *streamConn) HTTP2Stream() {}

var _ protocol.HTTP2Stream = (*streamConn)(nil)

func (c *streamConn) LocalAddr() net.Addr  { return c.local }
func (c *streamConn) RemoteAddr() net.Addr { return c.remote }

func (c *streamConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline is the stream's, while its body is being read.
func (c *streamConn) SetReadDeadline(t time.Time) error {
	if c.body == nil || c.ended {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return nil
	}
	return ignoreUnsupported(c.rc.SetReadDeadline(t))
}

// SetWriteDeadline is the stream's, until it has its answer. Each one
// x/net is given costs a message to its connection's goroutine and a
// timer, and the engine moves its deadline on at every write, often by
// next to nothing (twice for one small response): a deadline later than
// the stream's by less than 1/64 of the time the stream's has left is
// not passed on (it may then come that much early).
func (c *streamConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return nil
	}
	if !t.IsZero() && !c.wdl.IsZero() && !t.Before(c.wdl) && t.Sub(c.wdl) < time.Until(c.wdl)/64 {
		return nil
	}
	c.wdl = t
	return ignoreUnsupported(c.rc.SetWriteDeadline(t))
}

func ignoreUnsupported(err error) error {
	if errors.Is(err, http.ErrNotSupported) {
		return nil
	}
	return err
}
