package protocol

import (
	"strings"
	"testing"
)

// TestHeadFlush checks that a HEAD response whose head goes out before the
// handler returns (Flush) is not framed as chunked: no body, no last
// chunk, and the next response follows it directly.
func TestHeadFlush(t *testing.T) { inModes(t, testHeadFlush) }

func testHeadFlush(t *testing.T) {
	_, addr := startServer(t, HandlerFunc(func(w *ResponseWriter, r *Request) {
		w.WriteString("streamed")
		w.Flush()
		w.WriteString(" body")
	}), nil)
	out := exchange(t, addr, "HEAD / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	rs := readResponses(t, out, "HEAD", "GET")
	if strings.Contains(out[:strings.Index(out, "\r\n\r\n")], "Transfer-Encoding") || bodyOf(rs[1]) != "streamed body" {
		t.Fatalf("%q", out)
	}
}

// TestTrailer checks ResponseWriter.Trailer: the fields follow the last
// chunk of an HTTP/1.1 response, also a short one that would otherwise
// get a Content-Length; an HTTP/1.0 response and a HEAD response have no
// trailer section; the next response on the connection has no stale ones.
func TestTrailer(t *testing.T) { inModes(t, testTrailer) }

func testTrailer(t *testing.T) {
	_, addr := startServer(t, HandlerFunc(func(w *ResponseWriter, r *Request) {
		w.WriteString("body")
		if r.Path[len(r.Path)-1] == 't' {
			w.Trailer().Set("X-Sum", "42")
		}
	}), nil)
	out := exchange(t, addr, "GET /t HTTP/1.1\r\nHost: h\r\n\r\nHEAD /t HTTP/1.1\r\nHost: h\r\n\r\n"+
		"GET /n HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	rs := readResponses(t, out, "GET", "HEAD", "GET")
	if got := bodyOf(rs[0]); got != "body" || rs[0].Trailer.Get("X-Sum") != "42" ||
		!strings.Contains(out, "\r\n0\r\nX-Sum: 42\r\n\r\nHTTP/1.1 200 OK\r\n") {
		t.Errorf("GET with a trailer: body %q, trailer %v\n%q", got, rs[0].Trailer, out)
	}
	if n := strings.Count(out, "X-Sum"); n != 1 {
		t.Errorf("trailer sent %d times: %q", n, out)
	}
	if got := bodyOf(rs[2]); got != "body" || rs[2].ContentLength != 4 || len(rs[2].Trailer) != 0 {
		t.Errorf("next response: body %q, length %d, trailer %v", got, rs[2].ContentLength, rs[2].Trailer)
	}
	out = exchange(t, addr, "GET /t HTTP/1.0\r\n\r\n")
	if strings.Contains(out, "X-Sum") || !strings.HasSuffix(out, "\r\n\r\nbody") {
		t.Errorf("HTTP/1.0: %q", out)
	}
}
