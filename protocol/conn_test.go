package protocol

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func smallLimits(s *Server) { s.Limits = testLimits() }

// checkRefused asserts a single error response with Connection: close and
// a short fixed body, followed by the server closing the connection.
func checkRefused(t *testing.T, out string, status int) {
	t.Helper()
	rs := readResponses(t, out, "GET")
	r := rs[0]
	if r.StatusCode != status {
		t.Fatalf("status %d, want %d", r.StatusCode, status)
	}
	if !r.Close || !strings.Contains(out, "\r\nConnection: close\r\n") {
		t.Errorf("no Connection: close: %q", out)
	}
	if want := fmt.Sprintf("%d %s\n", status, http.StatusText(status)); bodyOf(r) != want {
		t.Errorf("body %q, want %q", bodyOf(r), want)
	}
}

func TestRejectsOverTheWire(t *testing.T) { inModes(t, testRejectsOverTheWire) }

func testRejectsOverTheWire(t *testing.T) {
	_, addr := startServer(t, echo, smallLimits)
	for _, tc := range badRequests {
		t.Run(tc.name, func(t *testing.T) {
			// Whatever follows must not be served.
			checkRefused(t, exchange(t, addr, tc.raw+"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), tc.status)
		})
	}
}

// TestShortBadRequestLineAnsweredAtOnce sends request lines that have
// ended too short to hold a version, and nothing more: the 400 must not
// wait for bytes that never come (a server that waits answers 408 after
// ReadHeaderTimeout, a minute here, and fails at the client's deadline).
func TestShortBadRequestLineAnsweredAtOnce(t *testing.T) {
	inModes(t, testShortBadRequestLineAnsweredAtOnce)
}

func testShortBadRequestLineAnsweredAtOnce(t *testing.T) {
	_, addr := startServer(t, echo, func(s *Server) { s.Limits.ReadHeaderTimeout = time.Minute })
	for _, raw := range []string{"GET / \r\n\r\n", "GET / HTTP\r\n\r\n", "GET / X\r\n\r\n"} {
		checkRefused(t, exchange(t, addr, raw), 400)
	}
}

// clientHello returns the first record a TLS client sends: its
// ClientHello.
func clientHello(t *testing.T) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer b.Close()
	go func() {
		defer a.Close()
		tls.Client(a, &tls.Config{ServerName: "a.test"}).Handshake()
	}()
	buf := make([]byte, 16<<10)
	n, err := b.Read(buf)
	if err != nil || n < 6 || buf[0] != 0x16 {
		t.Fatalf("no ClientHello: %q, %v", buf[:n], err)
	}
	return buf[:n]
}

// TestNoRequestAnsweredAtFirstByte sends the beginning of what can be no
// request, a TLS ClientHello on a plain listener or a control byte, and
// nothing more: the 400 comes at once, at the first byte, instead of after
// ReadHeaderTimeout (a minute here: a server that waits fails at the
// client's deadline), on a new connection and after a request on one.
func TestNoRequestAnsweredAtFirstByte(t *testing.T) {
	inModes(t, testNoRequestAnsweredAtFirstByte)
}

func testNoRequestAnsweredAtFirstByte(t *testing.T) {
	_, addr := startServer(t, echo, func(s *Server) { s.Limits.ReadHeaderTimeout = time.Minute })
	hello := clientHello(t)
	for _, raw := range []string{string(hello), string(hello[:1]), "\x00", "\x01GET / HTTP/1.1\r\n", " GET", "\nGET /"} {
		checkRefused(t, exchange(t, addr, raw), 400)
		out := exchange(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"+raw)
		rs := readResponses(t, out, "GET", "GET")
		if rs[0].StatusCode != 200 || rs[1].StatusCode != 400 || !rs[1].Close {
			t.Fatalf("%q after a request: %d, %d", raw, rs[0].StatusCode, rs[1].StatusCode)
		}
	}
}

func TestBadChunkedBodies(t *testing.T) { inModes(t, testBadChunkedBodies) }

func testBadChunkedBodies(t *testing.T) {
	_, addr := startServer(t, echo, smallLimits)
	head := "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	for _, tc := range []struct {
		name, body string
		status     int
	}{
		{"bad size", "z\r\nabc\r\n0\r\n\r\n", 400},
		{"bad ext", "3;=\r\nabc\r\n0\r\n\r\n", 400},
		{"bare LF size", "3\nabc\r\n0\r\n\r\n", 400},
		{"missing data CRLF", "3\r\nabcd\r\n0\r\n\r\n", 400},
		{"bad trailer", "3\r\nabc\r\n0\r\nX : y\r\n\r\n", 400},
		{"too large", "400\r\n" + strings.Repeat("a", 1024) + "\r\n1\r\na\r\n0\r\n\r\n", 413},
		{"size overflow", "fffffffffffffffff\r\n", 400},
		{"line too long", "1" + strings.Repeat(";a=b", 2000) + "\r\n", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkRefused(t, exchange(t, addr, head+tc.body), tc.status)
		})
	}
}

func TestKeepAliveAndPipelining(t *testing.T) { inModes(t, testKeepAliveAndPipelining) }

func testKeepAliveAndPipelining(t *testing.T) {
	s, addr := startServer(t, echo, nil)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	// Three pipelined requests in one write, then one more on the same conn.
	io.WriteString(c, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"+
		"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"+
		"POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1;x=y\r\nc\r\n0\r\nX-T: v\r\n\r\n")
	want := []string{"GET /1 host=a body=", "POST /2 host=a body=hello", "POST /3 host=a body=abc trailer:X-T=v"}
	for i, w := range want {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if b := bodyOf(resp); b != w || resp.Close {
			t.Fatalf("response %d: %q close=%v", i, b, resp.Close)
		}
	}
	io.WriteString(c, "GET /4 HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || bodyOf(resp) != "GET /4 host=a body=" {
		t.Fatalf("%v %v", resp, err)
	}
	if st := s.Stats(); st.Requests != 4 || st.Status[1] != 4 || st.OpenConns != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestPipelineBatching checks that pipelined responses go out in one write.
func TestPipelineBatching(t *testing.T) { inModes(t, testPipelineBatching) }

func testPipelineBatching(t *testing.T) {
	_, addr := startServer(t, hello, nil)
	c := dial(t, addr)
	req := "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	io.WriteString(c, strings.Repeat(req, 10))
	buf := make([]byte, 64<<10)
	total := 0
	for total == 0 || strings.Count(string(buf[:total]), "Hello, World!") < 10 {
		n, err := c.Read(buf[total:])
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	readResponses(t, string(buf[:total]), strings.Split(strings.Repeat("GET,", 10), ",")[:10]...)
}

// TestPipelinedResponseNotHeldBack pipelines a complete request with one
// whose body has not fully arrived: the first response must go out before
// the server waits for the rest of the second body.
func TestPipelinedResponseNotHeldBack(t *testing.T) { inModes(t, testPipelinedResponseNotHeldBack) }

func testPipelinedResponseNotHeldBack(t *testing.T) {
	for _, second := range []string{
		"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nabcd",
		"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcd",
	} {
		_, addr := startServer(t, echo, nil)
		c := dial(t, addr)
		br := bufio.NewReader(c)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"+second)
		// The rest of the body is sent only once the first response is
		// in: a server that holds it back fails at the client's deadline.
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("first response: %v", err)
		}
		if b := bodyOf(resp); b != "GET / host=a body=" {
			t.Fatalf("first response %q", b)
		}
		rest := "e"
		if strings.Contains(second, "chunked") {
			rest = "e\r\n0\r\n\r\n"
		}
		io.WriteString(c, rest)
		resp, err = http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("second response: %v", err)
		}
		if b := bodyOf(resp); b != "POST /echo host=a body=abcde" {
			t.Fatalf("second response %q", b)
		}
	}
}

// TestOptionsStar checks that the server answers OPTIONS * itself.
func TestOptionsStar(t *testing.T) { inModes(t, testOptionsStar) }

func testOptionsStar(t *testing.T) {
	_, addr := startServer(t, HandlerFunc(func(w *ResponseWriter, r *Request) {
		t.Errorf("handler called for %s %s", r.Method, r.Target)
	}), nil)
	out := exchange(t, addr, "OPTIONS * HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nab"+
		"OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	for i, r := range readResponses(t, out, "OPTIONS", "OPTIONS") {
		if r.StatusCode != 200 && r.StatusCode != 204 || r.Header.Get("Allow") == "" || bodyOf(r) != "" {
			t.Errorf("response %d: %d Allow=%q in %q", i, r.StatusCode, r.Header.Get("Allow"), out)
		}
	}
}

func TestHTTP10(t *testing.T) { inModes(t, testHTTP10) }

func testHTTP10(t *testing.T) {
	_, addr := startServer(t, echo, nil)
	// Without keep-alive: Connection: close and the server closes.
	out := exchange(t, addr, "GET /a HTTP/1.0\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200 OK\r\n") || !strings.Contains(out, "Connection: close\r\n") {
		t.Fatalf("%q", out)
	}
	// With keep-alive: answered with keep-alive, conn stays open.
	c := dial(t, addr)
	br := bufio.NewReader(c)
	for i := 0; i < 2; i++ {
		io.WriteString(c, "GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Header.Get("Connection") != "keep-alive" || bodyOf(resp) != "GET /b host= body=" {
			t.Fatalf("%v", resp.Header)
		}
	}
}

func TestHTTP10Streaming(t *testing.T) { inModes(t, testHTTP10Streaming) }

func testHTTP10Streaming(t *testing.T) {
	big := strings.Repeat("x", maxBodyBuffer+10)
	_, addr := startServer(t, HandlerFunc(func(w *ResponseWriter, r *Request) {
		w.WriteString(big)
	}), nil)
	out := exchange(t, addr, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	i := strings.Index(out, "\r\n\r\n")
	head, body := out[:i], out[i+4:]
	if strings.Contains(head, "Content-Length") || strings.Contains(head, "chunked") || !strings.Contains(head, "Connection: close") || body != big {
		t.Fatalf("head %q, body %d bytes", head, len(body))
	}
}

func TestChunkedResponse(t *testing.T) { inModes(t, testChunkedResponse) }

func testChunkedResponse(t *testing.T) {
	_, addr := startServer(t, HandlerFunc(func(w *ResponseWriter, r *Request) {
		w.WriteString("part1,")
		w.Flush()
		w.Write([]byte(strings.Repeat("y", maxBodyBuffer+1)))
	}), nil)
	c := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("TE %v", resp.TransferEncoding)
	}
	if b := bodyOf(resp); b != "part1,"+strings.Repeat("y", maxBodyBuffer+1) {
		t.Fatalf("body %d bytes", len(b))
	}
}

func TestContentLengthDeclared(t *testing.T) { inModes(t, testContentLengthDeclared) }

func testContentLengthDeclared(t *testing.T) {
	_, addr := startServer(t, HandlerFunc(func(w *ResponseWriter, r *Request) {
		w.SetContentLength(5)
		w.WriteString("abc")
		w.Flush()
		w.WriteString("de")
		if _, err := w.WriteString("f"); !errors.Is(err, ErrContentLength) {
			panic("no ErrContentLength")
		}
	}), nil)
	c := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.ContentLength != 5 || bodyOf(resp) != "abcde" {
		t.Fatalf("%v %v", resp, err)
	}
}

func TestHEAD(t *testing.T) { inModes(t, testHEAD) }

func testHEAD(t *testing.T) {
	_, addr := startServer(t, hello, nil)
	c := dial(t, addr)
	io.WriteString(c, "HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	out, _ := io.ReadAll(c)
	rs := readResponses(t, string(out), "HEAD", "GET")
	if rs[0].Header.Get("Content-Length") != "13" || bodyOf(rs[1]) != "Hello, World!" {
		t.Fatalf("%v %q", rs[0].Header, out)
	}
	if strings.Count(string(out), "Hello") != 1 {
		t.Fatalf("HEAD carried a body: %q", out)
	}
}

func TestExpectContinue(t *testing.T) { inModes(t, testExpectContinue) }

func testExpectContinue(t *testing.T) {
	_, addr := startServer(t, echo, nil)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("%q %v", line, err)
	}
	if blank, _ := br.ReadString('\n'); blank != "\r\n" {
		t.Fatalf("%q", blank)
	}
	io.WriteString(c, "abc")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || bodyOf(resp) != "POST /e host=a body=abc" || resp.Close {
		t.Fatalf("%v %v", resp, err)
	}
}

// TestExpectContinueUnread: a handler that answers without reading gets no
// 100 Continue sent, and the connection closes.
func TestExpectContinueUnread(t *testing.T) { inModes(t, testExpectContinueUnread) }

func testExpectContinueUnread(t *testing.T) {
	_, addr := startServer(t, hello, nil)
	out := exchange(t, addr, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
	rs := readResponses(t, out, "POST")
	if rs[0].StatusCode != 200 || !rs[0].Close || strings.Contains(out, "100 Continue") {
		t.Fatalf("%q", out)
	}
}

func TestUnreadBodyDrained(t *testing.T) { inModes(t, testUnreadBodyDrained) }

func testUnreadBodyDrained(t *testing.T) {
	_, addr := startServer(t, hello, nil)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789"+
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"+
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	for i := 0; i < 3; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.Close || bodyOf(resp) != "Hello, World!" {
			t.Fatalf("%d: %v %v", i, resp, err)
		}
	}
}

func TestUnreadBodyTooLongCloses(t *testing.T) { inModes(t, testUnreadBodyTooLongCloses) }

func testUnreadBodyTooLongCloses(t *testing.T) {
	_, addr := startServer(t, hello, func(s *Server) { s.Limits.BodyBytes = 1 << 20 })
	c := dial(t, addr)
	io.WriteString(c, fmt.Sprintf("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", maxDrain+1))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || !resp.Close {
		t.Fatalf("%v %v", resp, err)
	}
}

func TestConnectionCloseFromHandler(t *testing.T) { inModes(t, testConnectionCloseFromHandler) }

func testConnectionCloseFromHandler(t *testing.T) {
	_, addr := startServer(t, HandlerFunc(func(w *ResponseWriter, r *Request) {
		w.SetClose()
		w.WriteString("bye")
	}), nil)
	out := exchange(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
	rs := readResponses(t, out, "GET")
	if !rs[0].Close {
		t.Fatal("no close")
	}
}

func TestResponseHeaderRules(t *testing.T) { inModes(t, testResponseHeaderRules) }

func testResponseHeaderRules(t *testing.T) {
	_, addr := startServer(t, HandlerFunc(func(w *ResponseWriter, r *Request) {
		h := w.Header()
		h.Set("X-Split", "a\r\nInjected: yes")
		h.Set("Bad Name", "v")
		h.Add("X-Multi", "1")
		h.Add("X-Multi", "2")
		h.SetBytes("X-Bytes", []byte("bytes"))
		h.Set("X-Gone", "1")
		h.Del("x-gone")
		h.Set("Transfer-Encoding", "gzip")
		h.Set("Date", "Thu, 01 Jan 1970 00:00:00 GMT")
		if h.Get("x-bytes") != "bytes" || h.Get("X-Multi") != "1" {
			panic("Get")
		}
		w.WriteHeader(http.StatusTeapot)
		w.WriteString("tea")
	}), nil)
	out := exchange(t, addr, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	rs := readResponses(t, out, "GET")
	h := rs[0].Header
	if rs[0].StatusCode != 418 || h.Get("Injected") != "" || h.Get("X-Split") != "a  Injected: yes" ||
		h.Get("Bad Name") != "" || len(h["X-Multi"]) != 2 || h.Get("X-Bytes") != "bytes" || h.Get("X-Gone") != "" ||
		len(rs[0].TransferEncoding) != 0 || h.Get("Date") != "Thu, 01 Jan 1970 00:00:00 GMT" || len(h["Date"]) != 1 {
		t.Fatalf("%q", out)
	}
}

func TestNoBodyStatuses(t *testing.T) { inModes(t, testNoBodyStatuses) }

func testNoBodyStatuses(t *testing.T) {
	_, addr := startServer(t, HandlerFunc(func(w *ResponseWriter, r *Request) {
		w.WriteHeader(http.StatusNoContent)
		if _, err := w.WriteString("x"); err != ErrBodyNotAllowed {
			panic("body allowed")
		}
	}), nil)
	out := exchange(t, addr, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 204 No Content\r\n") || strings.Contains(out, "Content-Length") {
		t.Fatalf("%q", out)
	}
}

func TestInformational(t *testing.T) { inModes(t, testInformational) }

func testInformational(t *testing.T) {
	_, addr := startServer(t, HandlerFunc(func(w *ResponseWriter, r *Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteString("ok")
	}), nil)
	out := exchange(t, addr, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n") {
		t.Fatalf("%q", out)
	}
}

func TestPanicGives500(t *testing.T) { inModes(t, testPanicGives500) }

func testPanicGives500(t *testing.T) {
	s, addr := startServer(t, HandlerFunc(func(w *ResponseWriter, r *Request) {
		panic("boom")
	}), nil)
	checkRefused(t, exchange(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 500)
	if s.Stats().Status[4] != 1 {
		t.Fatal(s.Stats())
	}
}

func TestHooks(t *testing.T) { inModes(t, testHooks) }

func testHooks(t *testing.T) {
	var done atomic.Int32
	var mu sync.Mutex
	var logged []string
	_, addr := startServer(t, hello, func(s *Server) {
		s.OnRequestDone = func() { done.Add(1) }
		s.Log = func(r *Request, w *ResponseWriter, start time.Time) {
			mu.Lock()
			defer mu.Unlock()
			if start.IsZero() {
				logged = append(logged, "zero start")
			}
			logged = append(logged, fmt.Sprintf("%s %s %d %d", r.Method, r.Path, w.Status(), w.BytesWritten()))
		}
	})
	exchange(t, addr, "GET /x HTTP/1.1\r\nHost: a\r\n\r\nGET /y HTTP/1.1\r\n\r\n")
	mu.Lock()
	defer mu.Unlock()
	if done.Load() != 2 || strings.Join(logged, ";") != "GET /x 200 13;GET /y 400 16" {
		t.Fatalf("%d %q", done.Load(), logged)
	}
}

func TestLargeHeadGrowsBuffer(t *testing.T) { inModes(t, testLargeHeadGrowsBuffer) }

func testLargeHeadGrowsBuffer(t *testing.T) {
	_, addr := startServer(t, echo, nil)
	big := strings.Repeat("v", 20000)
	c := dial(t, addr)
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: a\r\nX-Big: "+big+"\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n")
	br := bufio.NewReader(c)
	for _, want := range []string{"GET /big host=a body=", "GET /next host=a body="} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil || bodyOf(resp) != want {
			t.Fatalf("%v %v", resp, err)
		}
	}
}

func TestLargeBodies(t *testing.T) { inModes(t, testLargeBodies) }

func testLargeBodies(t *testing.T) {
	_, addr := startServer(t, HandlerFunc(func(w *ResponseWriter, r *Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			panic(err)
		}
		w.Write(b)
	}), nil)
	body := strings.Repeat("0123456789abcdef", 1<<14) // 256 KiB
	var chunked strings.Builder
	for i := 0; i < len(body); i += 10000 {
		part := body[i:min(i+10000, len(body))]
		fmt.Fprintf(&chunked, "%x\r\n%s\r\n", len(part), part)
	}
	chunked.WriteString("0\r\n\r\n")
	c := dial(t, addr)
	br := bufio.NewReader(c)
	go func() {
		io.WriteString(c, fmt.Sprintf("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
		io.WriteString(c, "PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"+chunked.String())
	}()
	for i := 0; i < 2; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if b := bodyOf(resp); b != body {
			t.Fatalf("%d: body %d bytes", i, len(b))
		}
	}
}

func TestReadHeaderTimeout(t *testing.T) { inModes(t, testReadHeaderTimeout) }

func testReadHeaderTimeout(t *testing.T) {
	_, addr := startServer(t, hello, func(s *Server) { s.Limits.ReadHeaderTimeout = 50 * time.Millisecond })
	// Part of a request: 408.
	checkRefused(t, exchange(t, addr, "GET / HTTP/1.1\r\nHost"), 408)
	// Nothing at all: a silent close.
	if out := exchange(t, addr, ""); out != "" {
		t.Fatalf("%q", out)
	}
}

// TestReadHeaderTimeoutOnTime trickles request heads a byte at a time,
// without end: each gets its 408 ReadHeaderTimeout after its first byte,
// though bytes keep coming (they do not move the deadline), and not a
// second later, whenever in the event loops' once-a-second sweep its
// deadline falls: the heads start 200 ms apart, so that their deadlines
// cover a whole second of it. The bound is generous (twice the timeout);
// a sweep that waited for its next round would answer some head 0.8 s or
// more late.
func TestReadHeaderTimeoutOnTime(t *testing.T) { inModes(t, testReadHeaderTimeoutOnTime) }

func testReadHeaderTimeoutOnTime(t *testing.T) {
	const (
		timeout = 500 * time.Millisecond
		every   = 100 * time.Millisecond // a byte
		heads   = 5
		apart   = 200 * time.Millisecond
	)
	_, addr := startServer(t, hello, func(s *Server) { s.Limits.ReadHeaderTimeout = timeout })
	head := "GET /" + strings.Repeat("a", 200) // 20 s of bytes: it never ends
	type result struct {
		took time.Duration
		resp *http.Response
		err  error
	}
	results := make(chan result, heads)
	for i := range heads {
		go func() {
			<-time.After(time.Duration(i) * apart)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				results <- result{err: err}
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			start := time.Now()
			if _, err := io.WriteString(c, head[:1]); err != nil {
				results <- result{err: err}
				return
			}
			stop := make(chan struct{})
			go func() {
				tick := time.NewTicker(every)
				defer tick.Stop()
				for k := 1; k < len(head); k++ {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					if _, err := io.WriteString(c, head[k:k+1]); err != nil {
						return // the server has answered and closed
					}
				}
			}()
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			r := result{took: time.Since(start), resp: resp, err: err}
			close(stop)
			results <- r
		}()
	}
	for range heads {
		r := <-results
		if r.err != nil {
			t.Fatalf("no answer to a trickled head: %v", r.err)
		}
		if r.resp.StatusCode != 408 {
			t.Fatalf("status %d, want 408", r.resp.StatusCode)
		}
		t.Logf("408 after %v", r.took)
		if r.took < timeout || r.took >= 2*timeout {
			t.Errorf("408 after %v, want it after ReadHeaderTimeout (%v), counted from the first byte", r.took, timeout)
		}
	}
}

// TestCutHeadClosedAtOnce: a client that sends part of a head, or of a
// PROXY header, and then closes its end is closed at once without an
// answer, not at ReadHeaderTimeout (a minute here: a server that waits
// fails the client's deadline). Its bytes and its FIN are both in the
// socket before the server first reads it (the server's one connection
// slot is taken until then), so the end of the stream brings no readiness
// of its own after the read that returns the bytes.
func TestCutHeadClosedAtOnce(t *testing.T) { inModes(t, testCutHeadClosedAtOnce) }

func testCutHeadClosedAtOnce(t *testing.T) {
	const proxyHeader = "PROXY TCP4 192.0.2.7 127.0.0.1 40000 80\r\n"
	for _, proxied := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, addr := serveOn(t, ln, hello, func(s *Server) {
			s.Limits.ReadHeaderTimeout = time.Minute
			s.Limits.MaxConnections = 1
		}, ListenOptions{ProxyProtocol: proxied, Trusted: loopback})
		first, cut := getReq, "GET / HTTP/1.1\r\nHost"
		if proxied {
			first, cut = proxyHeader+getReq, proxyHeader[:20]
		}
		hold := dial(t, addr)
		io.WriteString(hold, first)
		if resp, err := http.ReadResponse(bufio.NewReader(hold), nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("first connection: %v %v", resp, err)
		}
		c := dial(t, addr)
		io.WriteString(c, cut)
		c.(*net.TCPConn).CloseWrite()
		waitDelivered(t, c)
		hold.Close() // the slot is free: the server takes c, FIN and all
		b, err := io.ReadAll(c)
		if err != nil || len(b) > 0 {
			t.Fatalf("proxied %v: a head cut short got %q, %v; want the connection closed at once, unanswered", proxied, b, err)
		}
	}
}

func TestIdleTimeout(t *testing.T) { inModes(t, testIdleTimeout) }

func testIdleTimeout(t *testing.T) {
	_, addr := startServer(t, hello, func(s *Server) { s.Limits.IdleTimeout = 50 * time.Millisecond })
	out := exchange(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	rs := readResponses(t, out, "GET")
	if rs[0].Close {
		t.Fatal("first response closed")
	}
}

func TestBodyReadTimeout(t *testing.T) { inModes(t, testBodyReadTimeout) }

func testBodyReadTimeout(t *testing.T) {
	var got atomic.Value
	_, addr := startServer(t, HandlerFunc(func(w *ResponseWriter, r *Request) {
		_, err := io.ReadAll(r.Body)
		got.Store(fmt.Sprint(err))
		w.WriteString("x")
	}), func(s *Server) { s.Limits.IdleTimeout = 50 * time.Millisecond })
	checkRefused(t, exchange(t, addr, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc"), 408)
	if !strings.Contains(got.Load().(string), "timeout") {
		t.Fatal(got.Load())
	}
}

func TestWriteTimeout(t *testing.T) { inModes(t, testWriteTimeout) }

func testWriteTimeout(t *testing.T) {
	errc := make(chan error, 1)
	_, addr := startServer(t, HandlerFunc(func(w *ResponseWriter, r *Request) {
		chunk := []byte(strings.Repeat("x", 1<<16))
		for {
			if _, err := w.Write(chunk); err != nil {
				errc <- err
				return
			}
		}
	}), func(s *Server) { s.Limits.WriteTimeout = 50 * time.Millisecond })
	c := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n") // and never read
	select {
	case err := <-errc:
		if !isTimeout(err) {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("write never timed out")
	}
}

// smallSendBuffer gives the sockets accepted on ln a small fixed send
// buffer (accepted sockets inherit it), so that a large response waits for
// the client many times instead of filling the kernel's buffers.
func smallSendBuffer(t *testing.T, ln net.Listener) {
	t.Helper()
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 16<<10)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestWriteTimeoutIsProgress checks that WriteTimeout bounds the time
// without progress, not the whole response: a client reading a large body
// slowly but steadily for more than 5 write timeouts gets all of it, with
// the body written in one Write and sent with SendFile; a client that
// stops reading is cut.
func TestWriteTimeoutIsProgress(t *testing.T) { inModes(t, testWriteTimeoutIsProgress) }

func testWriteTimeoutIsProgress(t *testing.T) {
	const size = 3 << 20
	// Long enough that a loaded machine does not stall a steady reader for
	// as long; the reads below take 2.7 s at least.
	const wt = 500 * time.Millisecond
	body := make([]byte, size)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	path := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(path, body, 0o644); err != nil {
		t.Fatal(err)
	}
	werr := map[string]chan error{"/write": make(chan error, 1), "/file": make(chan error, 1), "/stalled": make(chan error, 1)}
	h := HandlerFunc(func(w *ResponseWriter, r *Request) {
		w.SetContentLength(size)
		var err error
		if string(r.Path) == "/write" {
			_, err = w.Write(body)
		} else {
			var f *os.File
			if f, err = os.Open(path); err == nil {
				err = w.SendFile(f, 0, size)
				f.Close()
			}
		}
		werr[string(r.Path)] <- err
	})
	_, addr := startServerOn(t, h, func(s *Server) { s.Limits.WriteTimeout = wt }, smallSendBuffer)
	// read makes one request for path and reads the body at a steady pace
	// (16 KiB, then a pause). It returns what it got, the longest time
	// between two reads coming back, and how long the body took.
	read := func(t *testing.T, path string) (got int, gap, took time.Duration) {
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) {
				syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10)
			})
		}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n")
		start := time.Now()
		br := bufio.NewReaderSize(c, 16<<10)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16<<10)
		last := time.Now()
		for {
			n, err := resp.Body.Read(buf)
			if now := time.Now(); now.Sub(last) > gap {
				gap = now.Sub(last)
			}
			last = time.Now()
			if !bytes.Equal(buf[:n], body[got:got+n]) {
				t.Fatalf("body differs at %d", got)
			}
			got += n
			if err != nil {
				return got, gap, time.Since(start)
			}
			time.Sleep(14 * time.Millisecond) // the reader's pace
		}
	}
	for _, path := range []string{"/write", "/file"} {
		t.Run(path[1:], func(t *testing.T) {
			t.Parallel()
			// A machine so loaded that the reader (or the server) stops
			// for about a write timeout makes the server cut the client,
			// rightly: such an attempt proves nothing and is made again.
			// A cut without such a pause is the failure.
			for attempt := 1; ; attempt++ {
				got, gap, took := read(t, path)
				herr := <-werr[path]
				if got != size && gap > wt/2 && attempt < 10 {
					t.Logf("attempt %d: cut after a pause of %v (the machine stalled); again", attempt, gap)
					continue
				}
				if got != size {
					t.Fatalf("got %d of %d bytes (longest pause between reads %v)", got, size, gap)
				}
				if herr != nil {
					t.Fatalf("handler: %v", herr)
				}
				if took < 5*wt {
					t.Fatalf("read in %v, not slower than 5 write timeouts: the test proves nothing", took)
				}
				return
			}
		})
	}
	t.Run("stalled", func(t *testing.T) {
		t.Parallel()
		c := dial(t, addr)
		io.WriteString(c, "GET /stalled HTTP/1.1\r\nHost: a\r\n\r\n") // and never read
		select {
		case err := <-werr["/stalled"]:
			if !isTimeout(err) {
				t.Fatalf("SendFile to a client that stopped reading: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("SendFile never timed out")
		}
	})
}

// TestReadFromFile checks ReadFrom of a file (sendfile) from its current
// offset, through a LimitedReader, and that the file's offset moves on.
func TestReadFromFile(t *testing.T) { inModes(t, testReadFromFile) }

func testReadFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("0123456789abcdefghij"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := startServer(t, HandlerFunc(func(w *ResponseWriter, r *Request) {
		f, err := os.Open(path)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		f.Seek(5, io.SeekStart)
		w.SetContentLength(8)
		n, err := w.ReadFrom(io.LimitReader(f, 8))
		if off, _ := f.Seek(0, io.SeekCurrent); n != 8 || err != nil || off != 13 {
			t.Errorf("ReadFrom: %d %v, offset %d", n, err, off)
		}
	}), nil)
	if st, body := get(t, addr, "/"); st != 200 || body != "56789abc" {
		t.Fatalf("%d %q", st, body)
	}
}

func TestMaxConnections(t *testing.T) { inModes(t, testMaxConnections) }

func testMaxConnections(t *testing.T) {
	s, addr := startServer(t, hello, func(s *Server) { s.Limits.MaxConnections = 1 })
	c1 := dial(t, addr)
	br1 := bufio.NewReader(c1)
	io.WriteString(c1, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if _, err := http.ReadResponse(br1, nil); err != nil {
		t.Fatal(err)
	}
	// The second connection completes its TCP handshake in the backlog but
	// is not accepted while the first is open.
	c2 := dial(t, addr)
	io.WriteString(c2, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	c2.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := c2.Read(make([]byte, 1)); n != 0 || !isTimeout(err) {
		t.Fatalf("second connection served: %d %v", n, err)
	}
	if s.Stats().OpenConns != 1 {
		t.Fatalf("%+v", s.Stats())
	}
	c1.Close()
	c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := http.ReadResponse(bufio.NewReader(c2), nil); err != nil {
		t.Fatal(err)
	}
}

func TestServeSeveralListeners(t *testing.T) {
	s := &Server{Handler: hello}
	var wg sync.WaitGroup
	var addrs []string
	for i := 0; i < 2; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Serve(ln); err != ErrServerClosed {
				t.Errorf("Serve: %v", err)
			}
		}()
	}
	for _, a := range addrs {
		rs := readResponses(t, exchange(t, a, "GET / HTTP/1.0\r\n\r\n"), "GET")
		if bodyOf(rs[0]) != "Hello, World!" {
			t.Fatal(rs)
		}
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := s.Serve(ln); err != ErrServerClosed {
		t.Fatal(err)
	}
}

// TestShutdownDrain covers the graceful drain: an in-flight request
// finishes with Connection: close, and an idle keep-alive client that sends
// its next request during the shutdown still gets an answer, with
// Connection: close, instead of a cut connection.
func TestShutdownDrain(t *testing.T) { inModes(t, testShutdownDrain) }

func testShutdownDrain(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	s, addr := startServer(t, HandlerFunc(func(w *ResponseWriter, r *Request) {
		if string(r.Path) == "/slow" {
			w.WillBlock() // it waits: off the loop, whose other connections go on
			close(entered)
			<-release
		}
		w.WriteString("ok")
	}), func(s *Server) { s.IdleGrace = 5 * time.Second })

	idle := dial(t, addr)
	idleR := bufio.NewReader(idle)
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, err := http.ReadResponse(idleR, nil); err != nil || resp.Close || bodyOf(resp) != "ok" {
		t.Fatalf("%v %v", resp, err)
	}
	busy := dial(t, addr)
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-entered

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	// Wait until Shutdown has begun: it closes done first thing.
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not begin")
	}

	io.WriteString(idle, "GET /again HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(idleR, nil)
	if err != nil || !resp.Close || bodyOf(resp) != "ok" {
		t.Fatalf("idle client during shutdown: %v %v", resp, err)
	}
	close(release)
	resp, err = http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil || !resp.Close || bodyOf(resp) != "ok" {
		t.Fatalf("in-flight: %v %v", resp, err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if n := s.Stats().OpenConns; n != 0 {
		t.Fatalf("open conns %d", n)
	}
}

// TestShutdownClosesIdle: connections that stay idle past the grace close.
func TestShutdownClosesIdle(t *testing.T) { inModes(t, testShutdownClosesIdle) }

func testShutdownClosesIdle(t *testing.T) {
	s, addr := startServer(t, hello, func(s *Server) { s.IdleGrace = 20 * time.Millisecond })
	c := dial(t, addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err != nil || bodyOf(resp) == "" {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("want EOF, got %v", err)
	}
}

// TestShutdownSparesFreshConnections: under Shutdown, a connection that
// has carried no request yet (a client that has just connected, or just
// finished its TLS handshake) is not cut after IdleGrace, as an idle
// keep-alive one is: it keeps its ReadHeaderTimeout for its first request,
// which is answered with Connection: close.
func TestShutdownSparesFreshConnections(t *testing.T) {
	inModes(t, testShutdownSparesFreshConnections)
}

func testShutdownSparesFreshConnections(t *testing.T) {
	const grace = 20 * time.Millisecond
	s, addr := startServer(t, hello, func(s *Server) {
		s.IdleGrace = grace
		s.Limits.ReadHeaderTimeout = time.Minute
	})
	used := dial(t, addr)
	usedR := bufio.NewReader(used)
	io.WriteString(used, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, err := http.ReadResponse(usedR, nil); err != nil || bodyOf(resp) == "" {
		t.Fatal(err)
	}
	fresh := dial(t, addr)
	for deadline := time.Now().Add(10 * time.Second); s.Stats().OpenConns != 2; {
		if time.Now().After(deadline) {
			t.Fatalf("the second connection was not accepted: %+v", s.Stats())
		}
		runtime.Gosched()
	}

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	// The keep-alive connection is closed once idle for the grace...
	if _, err := usedR.ReadByte(); err != io.EOF {
		t.Fatalf("idle keep-alive connection during shutdown: %v, want EOF", err)
	}
	// ...the fresh one is not, even well past it.
	fresh.SetReadDeadline(time.Now().Add(10 * grace))
	if n, err := fresh.Read(make([]byte, 1)); !isTimeout(err) {
		t.Fatalf("fresh connection during shutdown: read %d, %v; want it open", n, err)
	}
	fresh.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(fresh, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(fresh), nil)
	if err != nil || !resp.Close || bodyOf(resp) != "Hello, World!" {
		t.Fatalf("fresh connection's request during shutdown: %v %v", resp, err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
}

func TestShutdownContextCloses(t *testing.T) { inModes(t, testShutdownContextCloses) }

func testShutdownContextCloses(t *testing.T) {
	block, entered := make(chan struct{}), make(chan struct{})
	defer close(block)
	s, addr := startServer(t, HandlerFunc(func(w *ResponseWriter, r *Request) {
		close(entered)
		<-block
	}), nil)
	c := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
}

func TestHijack(t *testing.T) { inModes(t, testHijack) }

func testHijack(t *testing.T) {
	kind := make(chan string, 1)
	_, addr := startServer(t, HandlerFunc(func(w *ResponseWriter, r *Request) {
		nc, rw, err := w.Hijack()
		if err != nil {
			panic(err)
		}
		defer nc.Close()
		kind <- fmt.Sprintf("%T", nc)
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\n\r\n")
		rw.Flush()
		line, _ := rw.ReadString('\n')
		rw.WriteString("echo:" + line)
		rw.Flush()
	}), nil)
	out := exchange(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\nping\n")
	if out != "HTTP/1.1 101 Switching Protocols\r\n\r\necho:ping\n" {
		t.Fatalf("%q", out)
	}
	// What net/http's handlers get: a connection that left its event
	// loop is no different.
	if k := <-kind; k != "*net.TCPConn" {
		t.Errorf("Hijack gave a %s, not a *net.TCPConn", k)
	}
}

// TestRequestArrivesDuringHandler sends a second request, in a write of its
// own, while the handler of the first still runs. The keep-alive loop must
// answer it without waiting for more input (serveTurns skips the read after a
// short one and relies on the poller's readiness to wake it).
func TestRequestArrivesDuringHandler(t *testing.T) { inModes(t, testRequestArrivesDuringHandler) }

func testRequestArrivesDuringHandler(t *testing.T) {
	entered, sent := make(chan struct{}), make(chan struct{})
	_, addr := startServer(t, HandlerFunc(func(w *ResponseWriter, r *Request) {
		if string(r.Target) == "/wait" {
			entered <- struct{}{}
			<-sent
		}
		w.WriteString(string(r.Target))
	}), nil)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	for i := 0; i < 3; i++ {
		io.WriteString(c, "GET /wait HTTP/1.1\r\nHost: a\r\n\r\n")
		<-entered // the server read the first request on its own
		io.WriteString(c, "GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
		waitDelivered(t, c) // the second is in the server's socket
		sent <- struct{}{}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for _, want := range []string{"/wait", "/next"} {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("round %d, %s: %v", i, want, err)
			}
			if b := bodyOf(resp); b != want {
				t.Fatalf("round %d: got %q, want %q", i, b, want)
			}
		}
	}
}

// TestBodiesInAndOutOfCallback mixes requests whose body arrives with the
// head (served inside serveTurns' callback) with ones whose body comes
// later, chunked, or after 100-continue (served outside it) on one
// connection.
func TestBodiesInAndOutOfCallback(t *testing.T) { inModes(t, testBodiesInAndOutOfCallback) }

func testBodiesInAndOutOfCallback(t *testing.T) {
	entered := make(chan struct{}, 1)
	_, addr := startServer(t, HandlerFunc(func(w *ResponseWriter, r *Request) {
		if string(r.Path) == "/b" {
			entered <- struct{}{}
		}
		echo(w, r)
	}), nil)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	expect := func(want string) {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if b := bodyOf(resp); b != want {
			t.Fatalf("got %q, want %q", b, want)
		}
	}
	io.WriteString(c, "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
	expect("POST /a host=a body=abc")
	io.WriteString(c, "POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nde")
	<-entered // the handler runs with part of the body
	io.WriteString(c, "fghi")
	expect("POST /b host=a body=defghi")
	io.WriteString(c, "POST /c HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
	line, _ := br.ReadString('\n')
	br.ReadString('\n')
	if line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("interim %q", line)
	}
	io.WriteString(c, "jk")
	expect("POST /c host=a body=jk")
	io.WriteString(c, "GET /d HTTP/1.1\r\nHost: a\r\n\r\n")
	expect("GET /d host=a body=")
}

// TestCloseDuringHandler closes the server while a handler runs and then
// hijacks: Close must return at once, and the handler must not deadlock.
func TestCloseDuringHandler(t *testing.T) { inModes(t, testCloseDuringHandler) }

func testCloseDuringHandler(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	finished := make(chan error, 1)
	s, addr := startServer(t, HandlerFunc(func(w *ResponseWriter, r *Request) {
		close(entered)
		<-release
		nc, _, err := w.Hijack()
		if err == nil {
			nc.Close()
		}
		finished <- err
	}), nil)
	c := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	<-entered
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a running handler")
	}
	close(release)
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
		t.Fatal("handler stuck after Close")
	}
}
