package protocol

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// inLoopModes runs f in the serving modes with event loops whose handlers
// run inline until they call WillBlock themselves.
func inLoopModes(t *testing.T, f func(t *testing.T)) {
	for _, m := range []string{"loop-inline", "gomaxprocs1"} {
		t.Run(m, f)
	}
}

// heldNow reports whether the connection of w is held: off its loop with
// no net.Conn yet (leaveLoop). Only its handler may ask.
func heldNow(w *ResponseWriter) bool {
	nt, ok := w.c.t.(*netTransport)
	return ok && nt.raw >= 0 && nt.nc == nil
}

// A handler that calls WillBlock on a loop keeps its connection held, with
// no net.Conn, and a response that the socket takes at once goes out
// without one: for a client that closes after it (Connection: close), and
// for one that sends another request, which the connection then waits for
// on a net.Conn of its own (and serves there).
func TestHeldAnswers(t *testing.T) { inLoopModes(t, testHeldAnswers) }

func testHeldAnswers(t *testing.T) {
	held := make(chan bool, 4)
	h := HandlerFunc(func(w *ResponseWriter, r *Request) {
		w.WillBlock()
		held <- heldNow(w)
		w.WriteString("ok " + string(r.Path))
	})
	_, addr := startServer(t, h, nil)

	out := exchange(t, addr, "GET /close HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	if !<-held {
		t.Error("the connection was not held after WillBlock")
	}
	resps := readResponses(t, out, "GET")
	if resps[0].StatusCode != 200 || bodyOf(resps[0]) != "ok /close" {
		t.Fatalf("got %q", out)
	}

	c := dial(t, addr)
	br := bufioReader(c)
	for _, path := range []string{"/one", "/two"} {
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if b := bodyOf(resp); b != "ok "+path {
			t.Fatalf("%s: %q", path, b)
		}
		if first := <-held; path == "/one" && !first {
			t.Errorf("%s: the connection was not held after WillBlock", path)
		}
	}
}

// A held connection's response that the socket does not take at once
// waits on a net.Conn made for it then, and arrives whole.
func TestHeldBigResponse(t *testing.T) { inLoopModes(t, testHeldBigResponse) }

func testHeldBigResponse(t *testing.T) {
	body := strings.Repeat("x", 16<<20) // more than loopback's socket buffers
	heldAfter := make(chan bool, 1)
	h := HandlerFunc(func(w *ResponseWriter, r *Request) {
		w.WillBlock()
		w.WriteString(body)
		w.Flush()
		heldAfter <- heldNow(w)
	})
	_, addr := startServer(t, h, nil)
	out := exchange(t, addr, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	resps := readResponses(t, out, "GET")
	if b := bodyOf(resps[0]); len(b) != len(body) {
		t.Fatalf("body of %d bytes, want %d", len(b), len(body))
	}
	if <-heldAfter {
		t.Error("still held after a write that had to wait")
	}
}

// Close cuts a held connection whose handler is still at work, as it cuts
// one on a net.Conn: the handler's response never reaches the client.
func TestHeldClose(t *testing.T) { inLoopModes(t, testHeldClose) }

func testHeldClose(t *testing.T) {
	entered := make(chan bool, 1)
	release := make(chan struct{})
	h := HandlerFunc(func(w *ResponseWriter, r *Request) {
		w.WillBlock()
		entered <- heldNow(w)
		<-release
		w.WriteString("too late")
	})
	s, addr := startServer(t, h, nil)
	c := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if !<-entered {
		t.Fatal("the connection was not held after WillBlock")
	}
	s.Close()
	close(release)
	b, err := io.ReadAll(c)
	if len(b) != 0 {
		t.Fatalf("read %q (%v) after Close, want nothing", b, err)
	}
}

// Bytes that arrive while the connection is held (a pipelined request)
// wake its old loop, which no longer has it and ignores them; the request
// is served once the first one is done, on the connection's net.Conn.
func TestHeldPipelined(t *testing.T) { inLoopModes(t, testHeldPipelined) }

func testHeldPipelined(t *testing.T) {
	entered := make(chan bool, 1)
	release := make(chan struct{})
	h := HandlerFunc(func(w *ResponseWriter, r *Request) {
		if string(r.Path) == "/block" {
			w.WillBlock()
			entered <- heldNow(w)
			<-release
		}
		w.WriteString("ok " + string(r.Path))
	})
	_, addr := startServer(t, h, nil)
	c := dial(t, addr)
	io.WriteString(c, "GET /block HTTP/1.1\r\nHost: a\r\n\r\n")
	if !<-entered {
		t.Fatal("the connection was not held after WillBlock")
	}
	io.WriteString(c, "GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
	waitDelivered(t, c)
	// The loop goes on serving others meanwhile.
	if st, body := get(t, addr, "/other"); st != 200 || body != "ok /other" {
		t.Fatalf("another connection: %d %q", st, body)
	}
	close(release)
	br := bufioReader(c)
	for _, path := range []string{"/block", "/next"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if b := bodyOf(resp); b != "ok "+path {
			t.Fatalf("%s: %q", path, b)
		}
	}
}
