package serve

import (
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/forkd/forkd/internal/httplex"
	"github.com/forkd/forkd/protocol"
	"github.com/forkd/forkd/protocol/upstream"
)

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
