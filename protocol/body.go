package protocol

import (
	"bytes"
	"errors"
	"io"
	"net/http"

	"github.com/forkd/forkd/protocol/internal/wire"
)

const (
	// directRead is the read size from which body bytes go straight from the
	// socket into the caller's buffer instead of through the read buffer.
	directRead = 8 << 10
	// maxDrain is how much unread request body the server discards to keep
	// a connection alive; a longer rest closes the connection instead.
	maxDrain = 256 << 10
)

var (
	// ErrBodyTooLarge is returned by a request body that exceeds
	// Limits.BodyBytes while its chunks are decoded; the response is 413.
	ErrBodyTooLarge = errors.New("protocol: request body too large")
	// ErrMalformedChunk is returned by a request body whose chunked framing
	// is invalid (RFC 9112 §7.1); the response is 400.
	ErrMalformedChunk = errors.New("protocol: malformed chunked encoding")
)

const (
	bodyNone = iota
	bodyLength
	bodyChunked
)

// bodyReader is a request body, framed by Content-Length or chunked
// (RFC 9112 §6). It reads from the connection's read buffer and refills it
// behind the request head, which the Request still aliases.
type bodyReader struct {
	c      *conn
	mode   uint8
	chunks wire.Chunked // the framing of a chunked body
	done   bool
	expect bool  // 100 Continue not sent yet
	n      int64 // bytes left in a Content-Length body
	err    error // sticky
	status int   // the error status a failed body maps to
}

func (b *bodyReader) reset(r *Request) {
	b.err, b.status = nil, 0
	b.expect = r.expectContinue
	b.chunks.Reset()
	b.done = false
	switch {
	case r.chunked:
		b.mode = bodyChunked
	case r.ContentLength > 0:
		b.mode = bodyLength
		b.n = r.ContentLength
	default:
		b.mode = bodyNone
		b.done = true
		b.expect = false
	}
}

// Read reads the decoded body. The first Read of a request that expects
// 100-continue sends the interim response (RFC 9110 §10.1.1).
func (b *bodyReader) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.expect {
		b.sendContinue()
	}
	return b.read(p, len(p))
}

func (b *bodyReader) sendContinue() {
	b.expect = false
	c := b.c
	if c.resp.committed || c.resp.hijacked {
		return
	}
	c.wbuf = append(c.wbuf, "HTTP/1.1 100 Continue\r\n\r\n"...)
	c.flush()
}

func (b *bodyReader) fail(status int, err error) (int, error) {
	b.status, b.err = status, err
	return 0, err
}

// readErr maps a failed socket read to the body's error.
func (b *bodyReader) readErr(err error) (int, error) {
	if isTimeout(err) {
		return b.fail(http.StatusRequestTimeout, err)
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return b.fail(http.StatusBadRequest, err)
}

// read reads up to max body bytes into p, or discards them when p is nil.
func (b *bodyReader) read(p []byte, max int) (int, error) {
	if b.mode == bodyChunked {
		return b.readChunked(p, max)
	}
	c := b.c
	if c.r == c.w {
		if len(p) >= directRead {
			n, err := c.readDirect(p[:min(int64(len(p)), b.n)])
			if n == 0 {
				return b.readErr(err)
			}
			return b.consumed(n)
		}
		if err := c.fill(); err != nil {
			return b.readErr(err)
		}
	}
	n := int(min(int64(c.w-c.r), int64(max), b.n))
	if p != nil {
		copy(p, c.rbuf[c.r:c.r+n])
	}
	c.r += n
	return b.consumed(n)
}

func (b *bodyReader) consumed(n int) (int, error) {
	b.n -= int64(n)
	if b.n == 0 {
		b.done = true
		return n, io.EOF
	}
	return n, nil
}

func (b *bodyReader) readChunked(p []byte, max int) (int, error) {
	c := b.c
	d := &b.chunks
	for {
		used, step := d.Next(c.rbuf[c.r:c.w])
		c.r += used
		switch step {
		case wire.ChunkNeed:
			if err := c.fill(); err != nil {
				return b.readErr(err)
			}
		case wire.ChunkBad:
			return b.fail(http.StatusBadRequest, ErrMalformedChunk)
		case wire.ChunkData:
			if d.Total() > c.srv.lim.BodyBytes {
				return b.fail(http.StatusRequestEntityTooLarge, ErrBodyTooLarge)
			}
			if c.r == c.w {
				if len(p) >= directRead && d.Left() >= directRead {
					n, err := c.readDirect(p[:min(int64(len(p)), d.Left())])
					if n == 0 {
						return b.readErr(err)
					}
					d.Consume(n)
					return n, nil
				}
				if err := c.fill(); err != nil {
					return b.readErr(err)
				}
			}
			n := int(min(int64(c.w-c.r), int64(max), d.Left()))
			if p != nil {
				copy(p, c.rbuf[c.r:c.r+n])
			}
			c.r += n
			d.Consume(n)
			return n, nil
		default: // wire.ChunkTrailer
			if !fieldsComplete(c.rbuf[c.r:c.w]) {
				if c.w-c.r > c.srv.lim.HeaderBytes {
					return b.fail(http.StatusRequestHeaderFieldsTooLarge, ErrMalformedChunk)
				}
				if err := c.fill(); err != nil {
					return b.readErr(err)
				}
				continue
			}
			// RFC 9112 §7.1.2: trailer fields have the header field syntax.
			tr := &c.req.Trailer
			pos := c.r
			for {
				name, value, next, st := wire.ParseFieldLine(c.rbuf[:c.w], pos)
				if st != 0 {
					tr.reset()
					return b.fail(http.StatusBadRequest, ErrMalformedChunk)
				}
				pos = next
				if name == nil {
					break
				}
				if len(tr.fields) >= c.srv.lim.HeaderCount {
					tr.reset()
					return b.fail(http.StatusRequestHeaderFieldsTooLarge, ErrMalformedChunk)
				}
				tr.fields = append(tr.fields, Field{Name: name, Value: value})
			}
			c.r = pos
			b.done = true
			return 0, io.EOF
		}
	}
}

// drain discards what is left of the body, up to maxDrain bytes, and
// reports whether the body is now fully read.
func (b *bodyReader) drain() bool {
	for budget := maxDrain; !b.done && b.err == nil && budget > 0; {
		n, err := b.read(nil, budget)
		budget -= n
		if err != nil && err != io.EOF {
			return false
		}
	}
	return b.done
}

// fieldsComplete reports whether b holds a complete field section: an
// empty line right away, or a line feed followed by an empty line.
func fieldsComplete(b []byte) bool {
	if len(b) >= 2 && b[0] == '\r' && b[1] == '\n' {
		return true
	}
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return false
		}
		i += j + 1
		if i < len(b) && b[i] == '\n' || i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return true
		}
	}
}
