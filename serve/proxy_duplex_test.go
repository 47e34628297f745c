package serve

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forkd/forkd/config"
)

// upload sends a POST of size bytes with a Content-Length over a raw
// connection, the body from a goroutine of its own (which gives up quietly
// when the proxy stops reading), and reads the response while the body is
// still going out. It returns the response, its body, and whether the
// connection ended after it.
func upload(t *testing.T, addr string, size int) (*http.Response, string, bool) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(testTimeout))
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		_, _ = fmt.Fprintf(conn, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", size)
		buf := bytes.Repeat([]byte{'u'}, 64<<10)
		for left := size; left > 0; left -= len(buf) {
			if _, err := conn.Write(buf[:min(left, len(buf))]); err != nil {
				return
			}
		}
	}()
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response body: %v", err)
	}
	resp.Body.Close()
	ended := false
	if resp.Close {
		_, err = br.ReadByte()
		ended = err == io.EOF || errors.Is(err, syscall.ECONNRESET)
		if !ended {
			t.Fatalf("after the last response: %v, want the connection's end", err)
		}
	}
	conn.Close() // stops the body writer if the proxy still reads
	<-sent
	return resp, string(b), ended
}

// TestProxyEarlyAnswerClose: the upstream answers 413 after the head of a
// 10 MB upload and closes with the body unread; the client gets the 413,
// not a 502, and its connection is closed after it.
func TestProxyEarlyAnswerClose(t *testing.T) {
	up := rawUpstream(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 8\r\n\r\ntoo big\n")
	})
	addr := proxySite(t, config.Proxy{Upstreams: []string{up}})
	resp, body, ended := upload(t, addr, 10<<20)
	if resp.StatusCode != 413 || body != "too big\n" {
		t.Fatalf("%d %q, want the upstream's 413", resp.StatusCode, body)
	}
	if !resp.Close || !ended {
		t.Errorf("the connection goes on (Connection: close %v, ended %v) with most of the body unread", resp.Close, ended)
	}
	// The worker and the upstream are fine.
	if r := get(t, addr, "GET", "/local/"); r.body != "local" {
		t.Errorf("after an early answer: %d %q", r.status, r.body)
	}
}

// TestProxyEarlyAnswerDrain: the upstream answers 200 after the head and
// then reads the body on; the client gets the 200, announced as the last
// response on its connection (the rest of its body is not read). A body
// the upstream read whole before answering keeps the connection open.
func TestProxyEarlyAnswerDrain(t *testing.T) {
	const early = "/up"
	up := requestUpstream(t, func(c net.Conn, _ *bufio.Reader, req *http.Request) bool {
		if req.URL.Path == early {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly")
		}
		n, err := io.Copy(io.Discard, req.Body)
		if err != nil {
			return false
		}
		if req.URL.Path != early {
			s := strconv.FormatInt(n, 10)
			_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(s), s)
		}
		return true
	})
	addr := proxySite(t, config.Proxy{Upstreams: []string{up}})
	resp, body, ended := upload(t, addr, 10<<20)
	if resp.StatusCode != 200 || body != "early" || !resp.Close || !ended {
		t.Fatalf("early 200: %d %q, Connection: close %v, ended %v", resp.StatusCode, body, resp.Close, ended)
	}

	// Read whole (a streamed body over retry_body_buffer), then answered:
	// the next request goes on the same connection.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(testTimeout))
	const size = 1 << 20
	_, _ = fmt.Fprintf(conn, "POST /whole HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s", size, strings.Repeat("w", size))
	_, _ = io.WriteString(conn, "GET /local/ HTTP/1.1\r\nHost: a\r\n\r\n")
	br := bufio.NewReader(conn)
	for i, want := range []string{strconv.Itoa(size), "local"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != want || resp.Close {
			t.Fatalf("response %d: %d %q close %v, want %q", i, resp.StatusCode, b, resp.Close, want)
		}
	}
}

// TestProxyResetMidUpload: an upstream that resets the connection in the
// middle of the request body, before any answer, is a 502.
func TestProxyResetMidUpload(t *testing.T) {
	up := rawUpstream(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.CopyN(io.Discard, req.Body, 1<<20)
		_ = c.(*net.TCPConn).SetLinger(0)
	})
	addr := proxySite(t, config.Proxy{Upstreams: []string{up}, MaxFails: 0})
	resp, _, _ := upload(t, addr, 10<<20)
	if resp.StatusCode != 502 {
		t.Fatalf("%d, want 502", resp.StatusCode)
	}
}

// TestProxyAnswerBeforeReading: an upstream that sends a response larger
// than the socket buffers before it reads the request body (and reads it
// only then) does not deadlock the exchange. The body here is read whole
// first (retry_body_buffer), so the client connection stays open.
func TestProxyAnswerBeforeReading(t *testing.T) {
	const size = 8 << 20
	up := rawUpstream(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(testTimeout))
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
		if _, err := c.Write(bytes.Repeat([]byte{'d'}, size)); err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
	})
	addr := proxySite(t, config.Proxy{Upstreams: []string{up}, RetryBodyBuffer: 8 << 20})
	resp, body, _ := upload(t, addr, 4<<20)
	if resp.StatusCode != 200 || len(body) != size || resp.Close {
		t.Fatalf("%d, %d bytes, Connection: close %v; want 200, %d bytes, keep-alive", resp.StatusCode, len(body), resp.Close, size)
	}
}

// TestProxySlowReadingUpstream: an upstream that reads the request body
// more slowly than response_timeout in all, but never stalls that long,
// gets all of it: the wait for its answer does not time out while the
// body moves, also once all of it is written and the upstream is still
// taking it out of the socket buffers (megabytes of it on loopback).
func TestProxySlowReadingUpstream(t *testing.T) {
	// The whole upload outlasts the timeout (32 reads at timeout/20: 1.6
	// timeouts), while a stall of the test itself (-race on a busy
	// machine) would have to last 19/20 of it to trip it.
	const timeout = 2 * time.Second
	up := rawUpstream(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(testTimeout))
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		var n int64
		for {
			m, err := io.CopyN(io.Discard, req.Body, 64<<10)
			n += m
			if err != nil {
				break
			}
			time.Sleep(timeout / 20) // the pace of a slow reader
		}
		s := strconv.FormatInt(n, 10)
		_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(s), s)
	})
	addr := proxySite(t, config.Proxy{Upstreams: []string{up}, ResponseTimeout: timeout})
	const size = 2 << 20 // 32 reads: about 3.2 s
	resp, body, _ := upload(t, addr, size)
	if resp.StatusCode != 200 || body != strconv.Itoa(size) {
		t.Fatalf("%d %q, want 200 %d", resp.StatusCode, body, size)
	}
}
