package protocol

import (
	"net/http"

	"github.com/forkd/forkd/internal/httplex"
	"github.com/forkd/forkd/protocol/internal/wire"
)

// statusNeedMore is the parse result for a head that is not complete yet.
const statusNeedMore = wire.NeedMore

// maxEmptyLines bounds the empty lines ignored before a request line
// (RFC 9112 §2.2 asks servers to ignore at least one).
const maxEmptyLines = 4

// parseRequest parses the request head at the start of b into r: the request
// line, the header fields and the empty line that ends them (RFC 9112 §2.1).
// It returns the number of bytes consumed and 0, or an HTTP error status, or
// statusNeedMore when b ends before the head does. r's slices alias b. A
// head whose first byte cannot begin a request (wire.CanStartRequest) is
// refused from that byte on, however short b is: conn.parseHead relies on
// that to answer it at once instead of waiting for the head to end.
func parseRequest(r *Request, b []byte, lim *Limits) (int, int) {
	r.reset()
	start := 0
	for empty := 0; ; empty++ {
		if len(b)-start < 2 {
			if len(b) > start && b[start] != '\r' {
				break
			}
			return 0, statusNeedMore
		}
		if b[start] != '\r' || b[start+1] != '\n' {
			break
		}
		if empty == maxEmptyLines {
			return 0, http.StatusBadRequest
		}
		start += 2
	}
	n, st := parseRequestLine(r, b[start:], lim.RequestLine)
	if st != 0 {
		return 0, st
	}
	pos := start + n

	var (
		hosts, teElems, chunkedCount int
		clSeen, clTooBig, teSeen     bool
		teLastChunked, teUnknown     bool
		connClose, connKeepAlive     bool
		expect, expectFailed         bool
		cl                           int64
	)
	absolute := r.Host != nil
	hs := pos
	for {
		name, value, next, st := wire.ParseFieldLine(b, pos)
		if st != 0 {
			if st == statusNeedMore && len(b)-hs > lim.HeaderBytes {
				return 0, http.StatusRequestHeaderFieldsTooLarge
			}
			return 0, st
		}
		if name == nil {
			pos = next
			break
		}
		if next-hs > lim.HeaderBytes || len(r.Header.fields) >= lim.HeaderCount {
			return 0, http.StatusRequestHeaderFieldsTooLarge
		}
		pos = next
		r.Header.fields = append(r.Header.fields, Field{Name: name, Value: value})

		switch len(name) {
		case 4:
			if !httplex.EqualFold(name, "host") {
				break
			}
			// RFC 9112 §3.2: more than one Host field is a 400.
			hosts++
			if hosts > 1 {
				return 0, http.StatusBadRequest
			}
			for _, c := range value {
				if !wire.IsHost(c) {
					return 0, http.StatusBadRequest
				}
			}
			if !absolute {
				r.Host = value
			}
		case 6:
			if !httplex.EqualFold(name, "expect") {
				break
			}
			if httplex.EqualFold(value, "100-continue") {
				expect = true
			} else {
				expectFailed = true
			}
		case 10:
			if !httplex.EqualFold(name, "connection") {
				break
			}
			httplex.ForEachElement(value, func(el []byte) {
				if httplex.EqualFold(el, "close") {
					connClose = true
				} else if httplex.EqualFold(el, "keep-alive") {
					connKeepAlive = true
				}
			})
		case 14:
			if !httplex.EqualFold(name, "content-length") {
				break
			}
			// RFC 9112 §6.3: an invalid Content-Length is unrecoverable.
			// Repeats, even identical ones or lists, are refused too.
			if clSeen || len(value) == 0 {
				return 0, http.StatusBadRequest
			}
			clSeen = true
			for _, c := range value {
				if c < '0' || c > '9' {
					return 0, http.StatusBadRequest
				}
				if cl > (1<<62)/10 {
					clTooBig = true
					continue
				}
				cl = cl*10 + int64(c-'0')
			}
		case 17:
			if !httplex.EqualFold(name, "transfer-encoding") {
				break
			}
			teSeen = true
			bad := false
			httplex.ForEachElement(value, func(el []byte) {
				teElems++
				if httplex.EqualFold(el, "chunked") {
					chunkedCount++
					teLastChunked = true
					return
				}
				teLastChunked = false
				for _, c := range el {
					if !wire.IsToken(c) && c != ';' && c != '=' && c != ' ' && c != '\t' && c != '"' {
						bad = true
					}
				}
				teUnknown = true
			})
			if bad {
				return 0, http.StatusBadRequest
			}
		}
	}

	if r.ProtoMinor == 1 && hosts == 0 {
		// RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400.
		return 0, http.StatusBadRequest
	}
	switch {
	case teSeen:
		// RFC 9112 §6.1: Transfer-Encoding with Content-Length is a smuggling
		// vector; in an HTTP/1.0 request the framing is faulty.
		if clSeen || r.ProtoMinor == 0 || teElems == 0 {
			return 0, http.StatusBadRequest
		}
		if chunkedCount != 1 || !teLastChunked {
			// RFC 9112 §6.3: without a final chunked the length of a
			// request body cannot be determined; 400, then close.
			return 0, http.StatusBadRequest
		}
		if teUnknown {
			// RFC 9112 §6.1: a transfer coding we do not understand.
			return 0, http.StatusNotImplemented
		}
		r.chunked = true
		r.ContentLength = -1
	case clSeen:
		if clTooBig || cl > lim.BodyBytes {
			return 0, http.StatusRequestEntityTooLarge
		}
		r.ContentLength = cl
	}
	if expectFailed {
		// RFC 9110 §10.1.1: an expectation other than 100-continue.
		return 0, http.StatusExpectationFailed
	}
	// RFC 9110 §10.1.1: a 100-continue expectation in HTTP/1.0 is ignored.
	r.expectContinue = expect && r.ProtoMinor == 1 && r.ContentLength != 0
	if r.ProtoMinor == 1 {
		r.Close = connClose
	} else {
		r.Close = connClose || !connKeepAlive
	}
	return pos, 0
}

// parseRequestLine parses the request line at the start of b into r
// (wire.ParseRequestLine) and applies what HTTP/1.1 makes of it: the
// version, CONNECT, and the target's form.
func parseRequestLine(r *Request, b []byte, limit int) (int, int) {
	method, target, major, minor, n, st := wire.ParseRequestLine(b, limit)
	if st != 0 {
		return 0, st
	}
	r.Method, r.Target = method, target
	r.ProtoMajor, r.ProtoMinor = major, minor
	if r.ProtoMajor != 1 {
		return 0, http.StatusHTTPVersionNotSupported
	}
	if r.ProtoMinor > 1 {
		// RFC 9112 §2.3: a later 1.x minor version is served as the
		// highest one we implement.
		r.ProtoMinor = 1
	}
	if string(r.Method) == "CONNECT" {
		// forkd is not a proxy: no tunnels.
		return 0, http.StatusNotImplemented
	}
	if st := parseTarget(r); st != 0 {
		return 0, st
	}
	return n, 0
}

// parseTarget splits r.Target into Path, Query and, for the absolute form,
// Host (RFC 9112 §3.2).
func parseTarget(r *Request) int {
	host, path, query, ok := wire.SplitTarget(r.Target)
	if !ok {
		return http.StatusBadRequest
	}
	if len(path) == 1 && path[0] == '*' && string(r.Method) != "OPTIONS" {
		// The asterisk form is for OPTIONS only (RFC 9112 §3.2.4).
		return http.StatusBadRequest
	}
	if len(path) == 0 {
		r.slash[0] = '/' // an absolute form without a path
		path = r.slash[:]
	}
	r.Host, r.Path, r.Query = host, path, query
	return 0
}
