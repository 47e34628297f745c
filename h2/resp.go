package h2

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"
)

// respWriter parses the HTTP/1.1 response the engine writes for a stream,
// as it comes, and writes it to the stream: its status and fields (less
// the connection-specific ones, RFC 9113 §8.2.2), its body, its trailers.
// What one engine write brings goes out at once (a server-sent event, a
// flushed chunk), unless it ends the response (then x/net sends it with
// the end of the stream when the handler returns, in one go) or is only
// the head of a body of known length (which follows).
type respWriter struct {
	w      http.ResponseWriter
	sc     *streamConn
	noBody bool // a HEAD request's response

	state   int
	status  int      // 0 until the status line is read
	chunked bool     // Transfer-Encoding: chunked
	length  int64    // Content-Length, -1 when none
	trailed bool     // trailer fields were read
	left    int64    // body (or chunk) bytes to come
	buf     []byte   // a line not yet whole
	vals    []string // the fields' values (see field)
	err     error
}

const (
	rsHead       = iota // status line and fields
	rsLength            // a body of known length
	rsUntilClose        // a body that ends with the engine's writes
	rsChunkSize
	rsChunkData
	rsChunkEnd // the CRLF after a chunk's data
	rsTrailers
	rsDone
)

var errBadResponse = errors.New("h2: malformed response from the engine")

// maxRespLine bounds a response line the engine writes (its own fields'
// sizes are the handler's).
const maxRespLine = 1 << 20

// complete reports whether the whole response went to the stream.
func (rw *respWriter) complete() bool {
	return rw.err == nil && (rw.state == rsDone || rw.state == rsUntilClose)
}

func (rw *respWriter) Write(p []byte) (int, error) {
	if rw.err != nil {
		return 0, rw.err
	}
	n := len(p)
	wrote := false
	for len(p) > 0 && rw.err == nil {
		switch rw.state {
		case rsHead, rsChunkSize, rsTrailers:
			var line []byte
			var ok bool
			line, p, ok = rw.line(p)
			if !ok {
				continue
			}
			switch rw.state {
			case rsHead:
				// A head whose body has a known length need not go
				// out before the body (a static file's, say: the
				// engine writes its head, then the file).
				wrote = rw.headLine(line) && rw.state != rsLength || wrote
			case rsChunkSize:
				rw.chunkSize(line)
			default:
				rw.trailer(line)
			}
		case rsLength, rsChunkData, rsUntilClose:
			k := len(p)
			if rw.state != rsUntilClose {
				k = int(min(int64(k), rw.left))
				rw.left -= int64(k)
			}
			if _, err := rw.w.Write(p[:k]); err != nil {
				rw.err = err
				break
			}
			wrote = true
			p = p[k:]
			switch {
			case rw.left > 0 || rw.state == rsUntilClose:
			case rw.state == rsLength:
				rw.state = rsDone
			default:
				rw.state, rw.left = rsChunkEnd, 2
			}
		case rsChunkEnd:
			k := int(min(int64(len(p)), rw.left))
			rw.left -= int64(k)
			p = p[k:]
			if rw.left == 0 {
				rw.state = rsChunkSize
			}
		case rsDone:
			rw.err = errStreamDone
		}
	}
	if rw.err != nil {
		return n - len(p), rw.err
	}
	// A response with trailers goes out before the handler returns, even
	// when whole: x/net would otherwise give it the Content-Length of the
	// body it holds, and a client such as curl takes the body's end for
	// the stream's and never reads the trailers that follow.
	if wrote && (rw.state != rsDone || rw.trailed) {
		if err := rw.sc.rc.Flush(); err != nil {
			rw.err = err
			return n, err
		}
	}
	return n, nil
}

// line returns the next whole line of p (without its CRLF) and the rest of
// p; ok is false when p ends first (what there was is kept).
func (rw *respWriter) line(p []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		if len(rw.buf)+len(p) > maxRespLine {
			rw.err = errBadResponse
		}
		rw.buf = append(rw.buf, p...)
		return nil, nil, false
	}
	line, rest = p[:i], p[i+1:]
	if len(rw.buf) > 0 {
		rw.buf = append(rw.buf, line...)
		line = rw.buf
		rw.buf = rw.buf[:0] // (line is used before buf is appended to again)
	}
	return bytes.TrimSuffix(line, []byte("\r")), rest, true
}

// headLine takes a line of the head; it reports whether the head went out.
func (rw *respWriter) headLine(line []byte) bool {
	if rw.status == 0 {
		// "HTTP/1.1 200 OK"
		if len(line) < 12 || string(line[:5]) != "HTTP/" || line[8] != ' ' {
			rw.err = errBadResponse
			return false
		}
		st, err := strconv.Atoi(string(line[9:12]))
		if err != nil || st < 100 {
			rw.err = errBadResponse
			return false
		}
		rw.status, rw.length, rw.chunked, rw.trailed = st, -1, false, false
		clear(rw.w.Header())
		return false
	}
	if len(line) > 0 {
		rw.field(line, "")
		return false
	}
	// The end of the head.
	st := rw.status
	if st < 200 {
		if st == http.StatusEarlyHints {
			rw.w.WriteHeader(st)
		}
		rw.status = 0 // the final response's head follows
		return false
	}
	rw.w.WriteHeader(st)
	switch {
	case rw.noBody || st == http.StatusNoContent || st == http.StatusNotModified:
		rw.state = rsDone
	case rw.chunked:
		rw.state = rsChunkSize
	case rw.length == 0:
		rw.state = rsDone
	case rw.length > 0:
		rw.state, rw.left = rsLength, rw.length
	default:
		rw.state = rsUntilClose
	}
	return true
}

// field adds the field on line to the head, or, with prefix
// http.TrailerPrefix, to the trailers.
func (rw *respWriter) field(line []byte, prefix string) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		rw.err = errBadResponse
		return
	}
	name, value := line[:i], bytes.TrimSpace(line[i+1:])
	switch {
	case asciiEqualFold(name, "Content-Length") && prefix == "":
		n, err := strconv.ParseInt(string(value), 10, 64)
		if err != nil || n < 0 {
			rw.err = errBadResponse
			return
		}
		rw.length = n
	case asciiEqualFold(name, "Transfer-Encoding"):
		rw.chunked = prefix == ""
		return
	case asciiEqualFold(name, "Connection"), asciiEqualFold(name, "Keep-Alive"),
		asciiEqualFold(name, "Proxy-Connection"), asciiEqualFold(name, "Upgrade"):
		return
	}
	k := headerKey(name)
	if prefix != "" {
		k = prefix + k
	}
	h := rw.w.Header()
	v := headerValue(name, value)
	if len(h[k]) > 0 {
		h[k] = append(h[k], v)
		return
	}
	// Each field's one value is a slice of one array per response, not
	// an allocation of its own (full: an append to it copies).
	if rw.vals == nil {
		rw.vals = make([]string, 0, 8)
	}
	rw.vals = append(rw.vals, v)
	n := len(rw.vals)
	h[k] = rw.vals[n-1 : n : n]
}

// headerKey returns name's canonical form; the names the engine and the
// routes commonly write cost no allocation.
func headerKey(name []byte) string {
	switch string(name) {
	case "Date":
		return "Date"
	case "Content-Length":
		return "Content-Length"
	case "Content-Type":
		return "Content-Type"
	case "Vary":
		return "Vary"
	case "ETag":
		return "Etag"
	case "Last-Modified":
		return "Last-Modified"
	case "Accept-Ranges":
		return "Accept-Ranges"
	case "Cache-Control":
		return "Cache-Control"
	case "Content-Encoding":
		return "Content-Encoding"
	case "Server":
		return "Server"
	}
	return http.CanonicalHeaderKey(string(name))
}

// lastDate is the Date value last seen: it changes once a second, and
// every response has one.
var lastDate atomic.Pointer[string]

// headerValue returns value as a string; common values, and the Date of
// the second, cost no allocation.
func headerValue(name, value []byte) string {
	switch string(value) {
	case "text/plain; charset=utf-8":
		return "text/plain; charset=utf-8"
	case "application/octet-stream":
		return "application/octet-stream"
	case "bytes":
		return "bytes"
	case "Accept-Encoding":
		return "Accept-Encoding"
	}
	if string(name) != "Date" {
		return string(value)
	}
	if d := lastDate.Load(); d != nil && *d == string(value) {
		return *d
	}
	d := string(value)
	lastDate.Store(&d)
	return d
}

func (rw *respWriter) chunkSize(line []byte) {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
	switch {
	case err != nil || n < 0:
		rw.err = errBadResponse
	case n == 0:
		rw.state = rsTrailers
	default:
		rw.state, rw.left = rsChunkData, n
	}
}

func (rw *respWriter) trailer(line []byte) {
	if len(line) == 0 {
		rw.state = rsDone
		return
	}
	rw.field(line, http.TrailerPrefix)
	rw.trailed = true
}

// asciiEqualFold reports whether b is s, ignoring ASCII case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c, d := b[i], s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}
