package protocol

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestFromHTTP(t *testing.T) { inModes(t, testFromHTTP) }

func testFromHTTP(t *testing.T) {
	_, addr := startServer(t, FromHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("X-Method", r.Method)
		fmt.Fprintf(w, "%s %s %s %s host=%s q=%s len=%d te=%v close=%v ua=%s remote=%v trailer=%v ctx=%v body=%s",
			r.Proto, r.Method, r.URL.Path, r.RequestURI, r.Host, r.URL.Query().Get("q"), r.ContentLength, r.TransferEncoding,
			r.Close, r.Header.Get("User-Agent"), r.RemoteAddr != "", r.Trailer, r.Context().Value(http.LocalAddrContextKey) != nil, body)
	})), nil)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "POST /p%20x?q=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: ua\r\nContent-Length: 3\r\n\r\nabc"+
		"PUT /c HTTP/1.1\r\nHost: h\r\nTrailer: X-T\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nX-T: v\r\n\r\n")
	for _, want := range []string{
		"HTTP/1.1 POST /p x /p%20x?q=1 host=h q=1 len=3 te=[] close=false ua=ua remote=true trailer=map[] ctx=true body=abc",
		"HTTP/1.1 PUT /c /c host=h q= len=-1 te=[chunked] close=false ua= remote=true trailer=map[X-T:[v]] ctx=true body=hi",
	} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if b := bodyOf(resp); b != want {
			t.Fatalf("\ngot  %q\nwant %q", b, want)
		}
		if resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || resp.Header.Get("X-Method") == "" {
			t.Fatalf("%v", resp.Header)
		}
	}
}

func TestFromHTTPFlushAndStatus(t *testing.T) { inModes(t, testFromHTTPFlushAndStatus) }

func testFromHTTPFlushAndStatus(t *testing.T) {
	_, addr := startServer(t, FromHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "one\n")
		w.(http.Flusher).Flush()
		io.WriteString(w, "two\n")
	})), nil)
	out := exchange(t, addr, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	rs := readResponses(t, out, "GET")
	if rs[0].StatusCode != 202 || bodyOf(rs[0]) != "one\ntwo\n" || !strings.Contains(out, "Transfer-Encoding: chunked") {
		t.Fatalf("%q", out)
	}
}

func TestFromHTTPServeFile(t *testing.T) { inModes(t, testFromHTTPServeFile) }

func testFromHTTPServeFile(t *testing.T) {
	dir := t.TempDir()
	content := strings.Repeat("file content\n", 5000)
	if err := os.WriteFile(filepath.Join(dir, "f.txt"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := startServer(t, FromHTTP(http.FileServer(http.Dir(dir))), nil)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	for i := 0; i < 2; i++ {
		io.WriteString(c, "GET /f.txt HTTP/1.1\r\nHost: h\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if b := bodyOf(resp); b != content || resp.ContentLength != int64(len(content)) {
			t.Fatalf("got %d bytes, CL %d", len(b), resp.ContentLength)
		}
	}
	io.WriteString(c, "GET /f.txt HTTP/1.1\r\nHost: h\r\nRange: bytes=0-3\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 206 || bodyOf(resp) != "file" {
		t.Fatalf("%v %v", resp, err)
	}
}

func TestFromHTTPHijack(t *testing.T) { inModes(t, testFromHTTPHijack) }

func testFromHTTPHijack(t *testing.T) {
	_, addr := startServer(t, FromHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nc, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			panic(err)
		}
		defer nc.Close()
		rw.WriteString("raw\n")
		rw.Flush()
	})), nil)
	if out := exchange(t, addr, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"); out != "raw\n" {
		t.Fatalf("%q", out)
	}
}

func TestFromHTTPBadURL(t *testing.T) { inModes(t, testFromHTTPBadURL) }

func testFromHTTPBadURL(t *testing.T) {
	_, addr := startServer(t, FromHTTP(http.NotFoundHandler()), nil)
	checkRefused(t, exchange(t, addr, "GET /%zz HTTP/1.1\r\nHost: h\r\n\r\n"), 400)
}

func TestFromHTTPSendFileNative(t *testing.T) { inModes(t, testFromHTTPSendFileNative) }

func testFromHTTPSendFileNative(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "f")
	if err := os.WriteFile(name, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := startServer(t, HandlerFunc(func(w *ResponseWriter, r *Request) {
		f, err := os.Open(name)
		if err != nil {
			panic(err)
		}
		defer f.Close()
		w.SetContentLength(4)
		if err := w.SendFile(f, 3, 4); err != nil {
			panic(err)
		}
	}), nil)
	rs := readResponses(t, exchange(t, addr, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"), "GET")
	if bodyOf(rs[0]) != "3456" {
		t.Fatal(bodyOf(rs[0]))
	}
}

// TestSendFilePipelined sends file bodies between buffered responses on one
// pipelined connection: the batched responses and each head go out ahead of
// the file in order, large files included (sendfile then waits for the
// socket to drain).
func TestSendFilePipelined(t *testing.T) { inModes(t, testSendFilePipelined) }

func testSendFilePipelined(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "f")
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i % 251)
	}
	if err := os.WriteFile(name, big, 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := startServer(t, HandlerFunc(func(w *ResponseWriter, r *Request) {
		if string(r.Path) == "/small" {
			w.WriteString("small")
			return
		}
		f, err := os.Open(name)
		if err != nil {
			panic(err)
		}
		defer f.Close()
		w.SetContentLength(int64(len(big)) - 7)
		if err := w.SendFile(f, 7, int64(len(big))-7); err != nil {
			panic(err)
		}
	}), nil)
	req := "GET /small HTTP/1.1\r\nHost: h\r\n\r\n" +
		"GET /file HTTP/1.1\r\nHost: h\r\n\r\n" +
		"GET /small HTTP/1.1\r\nHost: h\r\n\r\n" +
		"HEAD /file HTTP/1.1\r\nHost: h\r\n\r\n" +
		"GET /file HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
	rs := readResponses(t, exchange(t, addr, req), "GET", "GET", "GET", "HEAD", "GET")
	for i, want := range []string{"small", string(big[7:]), "small", "", string(big[7:])} {
		if got := bodyOf(rs[i]); got != want {
			t.Errorf("response %d: %d body bytes, want %d", i, len(got), len(want))
		}
	}
	if cl := rs[3].Header.Get("Content-Length"); cl != strconv.Itoa(len(big)-7) {
		t.Errorf("HEAD Content-Length = %q", cl)
	}
}
