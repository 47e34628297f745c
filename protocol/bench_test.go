package protocol

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
)

const helloRequest = "GET /hello HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"

// keepAliveClient sends one request and reads one whole response of a known
// size, without allocating.
type keepAliveClient struct {
	c    net.Conn
	req  []byte
	buf  []byte
	size int // response size, learned from the first response
}

func newKeepAliveClient(tb testing.TB, addr string, req string, pipeline int) *keepAliveClient {
	c := dial(tb, addr)
	c.SetDeadline(timeZero)
	k := &keepAliveClient{c: c, req: bytes.Repeat([]byte(req), pipeline), buf: make([]byte, 64<<10)}
	// Learn the size of one response.
	if _, err := c.Write([]byte(req)); err != nil {
		tb.Fatal(err)
	}
	n := 0
	for {
		m, err := c.Read(k.buf[n:])
		if err != nil {
			tb.Fatal(err)
		}
		n += m
		if i := bytes.Index(k.buf[:n], []byte("\r\n\r\n")); i >= 0 && bytes.HasSuffix(k.buf[:n], []byte("Hello, World!")) {
			break
		}
	}
	k.size = n * pipeline
	return k
}

func (k *keepAliveClient) roundTrip(tb testing.TB) {
	if _, err := k.c.Write(k.req); err != nil {
		tb.Fatal(err)
	}
	if _, err := io.ReadFull(k.c, k.buf[:k.size]); err != nil {
		tb.Fatal(err)
	}
}

// TestZeroAllocs measures steady-state allocations of a keep-alive GET
// through the native API over a loopback socket (client included).
func TestZeroAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	_, addr := startServer(t, hello, nil)
	for _, pipeline := range []int{1, 8} {
		k := newKeepAliveClient(t, addr, helloRequest, pipeline)
		for i := 0; i < 100; i++ {
			k.roundTrip(t)
		}
		if n := testing.AllocsPerRun(2000, func() { k.roundTrip(t) }); n != 0 {
			t.Errorf("pipeline %d: %v allocations per round trip, want 0", pipeline, n)
		}
	}
}

func benchServer(b *testing.B, pipeline int, native bool) {
	benchServerHandler(b, pipeline, native, hello)
}

func benchServerHandler(b *testing.B, pipeline int, native bool, h Handler) {
	var addr string
	if native {
		_, addr = startServer(b, h, nil)
	} else {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte("Hello, World!"))
		})}
		go hs.Serve(ln)
		b.Cleanup(func() { hs.Close() })
		addr = ln.Addr().String()
	}
	k := newKeepAliveClient(b, addr, helloRequest, pipeline)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += pipeline {
		k.roundTrip(b)
	}
}

// BenchmarkHello* compare the native server with net/http on a plaintext
// hello over loopback keep-alive connections; one op is one request.
func BenchmarkHelloNative(b *testing.B)            { benchServer(b, 1, true) }
func BenchmarkHelloNetHTTP(b *testing.B)           { benchServer(b, 1, false) }
func BenchmarkHelloLoop(b *testing.B)              { benchServerHandler(b, 1, true, Nonblocking(hello)) }
func BenchmarkHelloNativePipelined(b *testing.B)   { benchServer(b, 16, true) }
func BenchmarkHelloNetHTTPPipelined(b *testing.B)  { benchServer(b, 16, false) }
func BenchmarkHelloFromHTTP(b *testing.B)          { benchAdapter(b, 1) }
func BenchmarkHelloFromHTTPPipelined(b *testing.B) { benchAdapter(b, 16) }

// BenchmarkHelloFromHTTPContext is BenchmarkHelloFromHTTP with a handler
// that asks its context for Done, as database/sql and context.WithTimeout
// do: the request is watched for its client going away.
func BenchmarkHelloFromHTTPContext(b *testing.B) { benchAdapterWith(b, 1, true) }

func benchAdapter(b *testing.B, pipeline int) { benchAdapterWith(b, pipeline, false) }

func benchAdapterWith(b *testing.B, pipeline int, askDone bool) {
	_, addr := startServer(b, FromHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if askDone {
			select {
			case <-r.Context().Done():
				return
			default:
			}
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("Hello, World!"))
	})), nil)
	k := newKeepAliveClient(b, addr, helloRequest, pipeline)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += pipeline {
		k.roundTrip(b)
	}
}

var benchHead = []byte("GET /plaintext HTTP/1.1\r\nHost: localhost:8080\r\n" +
	"Accept: text/plain,text/html;q=0.9,application/xhtml+xml;q=0.9,application/xml;q=0.8,*/*;q=0.7\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/120.0\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n\r\n")

// BenchmarkParseRequest is the parser alone on a browser-like head.
func BenchmarkParseRequest(b *testing.B) {
	lim := DefaultLimits()
	var r Request
	b.SetBytes(int64(len(benchHead)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, st := parseRequest(&r, benchHead, &lim); st != 0 {
			b.Fatal(st)
		}
	}
}

// BenchmarkParseNetHTTP is http.ReadRequest on the same head.
func BenchmarkParseNetHTTP(b *testing.B) {
	rd := bytes.NewReader(benchHead)
	br := bufioReader(rd)
	b.SetBytes(int64(len(benchHead)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		rd.Reset(benchHead)
		br.Reset(rd)
		if _, err := http.ReadRequest(br); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkChurnLoop measures a connection's whole life on an event loop:
// connect, one request with Connection: close, the response, the close.
// One op is one connection (client included).
func BenchmarkChurnLoop(b *testing.B) {
	_, addr := startServer(b, Nonblocking(hello), nil)
	req := []byte("GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	buf := make([]byte, 4<<10)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		c.Close()
	}
}
