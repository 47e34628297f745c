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
