package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// The differential suite for FromHTTP: each handler of nethttpCases is
// served by net/http.Server and by a Server with FromHTTP (in every
// serving mode), the same raw requests go to both over loopback sockets,
// and the exchanges must match: status lines, header fields (but Date),
// decoded bodies and trailers, and whether the connection stays open
// afterwards. Where forkd differs on purpose the case names the
// difference (nethttpDifferences, also README's table), and the test
// checks that exactly that differs.

// diffCase is one handler and the raw requests sent to it on one
// connection; methods lists the method of each request, for reading the
// responses.
type diffCase struct {
	name    string
	h       http.HandlerFunc
	req     string
	methods []string
	// raw: compare the bytes the connection carries until EOF instead of
	// parsing responses (a hijacked connection).
	raw bool
	// differ names an expected difference (a key of nethttpDifferences).
	differ string
}

// nethttpDifferences are the documented ways FromHTTP differs from
// net/http's server (README, "The net/http adapter"). Each normalizes
// forkd's exchange f after checking that it differs from net/http's n
// exactly as documented.
var nethttpDifferences = map[string]func(t *testing.T, n, f *diffExchange){
	// net/http marks the connection for closing through an unexported
	// interface of its own ResponseWriter, which no other server can
	// implement; forkd drains the rest of the body (up to 256 KiB) and
	// keeps the connection.
	"maxbytes-keeps-connection": func(t *testing.T, n, f *diffExchange) {
		if !n.responses[0].close || f.responses[0].close || n.open || !f.open {
			t.Errorf("expected net/http to close and forkd to keep the connection: net/http %+v, forkd %+v", n, f)
		}
		f.responses[0].close = true
		f.open = false
	},
	// net/http answers HTTP/1.0 requests with an HTTP/1.0 status line;
	// forkd sends the highest version it supports, HTTP/1.1, as RFC 9110
	// §6.2 asks (the framing still follows the request's version).
	"status-line-1.1": func(t *testing.T, n, f *diffExchange) {
		for i := range f.responses {
			if n.responses[i].status[:9] != "HTTP/1.0 " || f.responses[i].status[:9] != "HTTP/1.1 " {
				t.Errorf("response %d: expected HTTP/1.0 from net/http and HTTP/1.1 from forkd: %q, %q", i, n.responses[i].status, f.responses[i].status)
			}
			f.responses[i].status = n.responses[i].status
		}
	},
	// net/http closes the connection without a response when a handler
	// panics; forkd answers 500 (and the worker lives on).
	"panic-500": func(t *testing.T, n, f *diffExchange) {
		if n.raw != "" || !strings.HasPrefix(f.raw, "HTTP/1.1 500 Internal Server Error\r\n") {
			t.Errorf("expected no response from net/http and a 500 from forkd: %q, %q", n.raw, f.raw)
		}
		f.raw = ""
	},
	// Neither server hands OPTIONS * to the handler; forkd's answer lists
	// the methods a handler may serve in Allow (RFC 9110 §9.3.7).
	"options-allow": func(t *testing.T, n, f *diffExchange) {
		i := len(f.responses) - 1
		if n.responses[i].header.Get("Allow") != "" || f.responses[i].header.Get("Allow") == "" {
			t.Errorf("expected Allow from forkd only")
		}
		f.responses[i].header.Del("Allow")
	},
	// net/http starts chunking once 2 KiB are buffered, forkd once
	// 16 KiB are: a body between the two gets a Content-Length from forkd
	// (a HEAD response too, where net/http then sends no length at all).
	"buffer-16k": func(t *testing.T, n, f *diffExchange) {
		for i := range f.responses {
			a, b := &n.responses[i], &f.responses[i]
			if a.header.Get("Content-Length") != "" || b.header.Get("Content-Length") == "" {
				continue
			}
			if len(b.te) != 0 || len(a.te) != 0 && !slices.Equal(a.te, []string{"chunked"}) {
				t.Errorf("response %d: expected chunked or no length from net/http and a Content-Length from forkd", i)
			}
			b.te = a.te
			b.header.Del("Content-Length")
		}
	},
}

// diffResponse is one response as compared.
type diffResponse struct {
	status  string // "HTTP/1.1 200 OK"
	header  http.Header
	te      []string // Transfer-Encoding
	body    string
	trailer http.Header
	close   bool
}

// diffExchange is what one connection carried.
type diffExchange struct {
	responses []diffResponse
	raw       string
	open      bool // a probe request after the responses was answered
}

// probePath is answered by every test server, so that the test can tell
// whether a connection is still open.
const probePath = "/__probe"

func withProbe(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == probePath {
			io.WriteString(w, "probe")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// startNetHTTP serves h with net/http's server on loopback.
func startNetHTTP(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

// runExchange sends c's requests on a new connection to addr and reads
// what comes back.
func runExchange(t *testing.T, addr string, c *diffCase) *diffExchange {
	t.Helper()
	conn := dial(t, addr)
	if _, err := io.WriteString(conn, c.req); err != nil {
		t.Fatal(err)
	}
	ex := &diffExchange{}
	if c.raw {
		b, err := io.ReadAll(conn)
		ex.raw = normalizeRaw(string(b))
		if err != nil {
			ex.raw += fmt.Sprintf("[not closed: %v]", err)
		}
		return ex
	}
	br := bufio.NewReader(conn)
	for _, m := range c.methods {
		for {
			resp, err := http.ReadResponse(br, &http.Request{Method: m})
			if err != nil {
				t.Fatalf("response %d: %v", len(ex.responses), err)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("response %d body: %v", len(ex.responses), err)
			}
			resp.Header.Del("Date")
			body = unrandomBoundary(resp.Header, body)
			ex.responses = append(ex.responses, diffResponse{
				status:  resp.Proto + " " + resp.Status,
				header:  resp.Header,
				te:      resp.TransferEncoding,
				body:    string(body),
				trailer: resp.Trailer,
				close:   resp.Close,
			})
			if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
				break
			}
		}
	}
	// Is the connection still open? A probe is answered only if it is.
	if _, err := io.WriteString(conn, "GET "+probePath+" HTTP/1.1\r\nHost: p\r\n\r\n"); err == nil {
		if resp, err := http.ReadResponse(br, nil); err == nil {
			ex.open = bodyOf(resp) == "probe"
		}
	}
	return ex
}

func TestFromHTTPDifferential(t *testing.T) {
	for _, c := range nethttpCases() {
		t.Run(c.name, func(t *testing.T) {
			want := runExchange(t, startNetHTTP(t, withProbe(c.h)), &c)
			inModes(t, func(t *testing.T) {
				_, addr := startServer(t, FromHTTP(withProbe(c.h)), nil)
				got := runExchange(t, addr, &c)
				if c.differ != "" {
					nethttpDifferences[c.differ](t, want, got)
				}
				compareExchanges(t, want, got)
			})
		})
	}
}

func compareExchanges(t *testing.T, n, f *diffExchange) {
	t.Helper()
	if n.raw != f.raw {
		t.Errorf("raw bytes:\nnet/http %q\nforkd    %q", n.raw, f.raw)
	}
	if len(n.responses) != len(f.responses) {
		t.Fatalf("%d responses from net/http, %d from forkd:\nnet/http %+v\nforkd    %+v", len(n.responses), len(f.responses), n.responses, f.responses)
	}
	for i := range n.responses {
		a, b := &n.responses[i], &f.responses[i]
		if a.status != b.status {
			t.Errorf("response %d: status line %q from net/http, %q from forkd", i, a.status, b.status)
		}
		if !sameHeader(a.header, b.header) {
			t.Errorf("response %d: header\nnet/http %v\nforkd    %v", i, a.header, b.header)
		}
		if !slices.Equal(a.te, b.te) {
			t.Errorf("response %d: Transfer-Encoding %q from net/http, %q from forkd", i, a.te, b.te)
		}
		if a.body != b.body {
			t.Errorf("response %d: body\nnet/http %q\nforkd    %q", i, clip(a.body), clip(b.body))
		}
		if !sameHeader(a.trailer, b.trailer) {
			t.Errorf("response %d: trailer\nnet/http %v\nforkd    %v", i, a.trailer, b.trailer)
		}
	}
	if n.open != f.open {
		t.Errorf("connection open afterwards: net/http %v, forkd %v", n.open, f.open)
	}
}

// normalizeRaw drops the Date field of a raw response head and sorts its
// fields, for comparing bytes that are not one whole response.
func normalizeRaw(s string) string {
	head, rest, ok := strings.Cut(s, "\r\n\r\n")
	if !ok || !strings.HasPrefix(head, "HTTP/1.") {
		return s
	}
	lines := strings.Split(head, "\r\n")
	fields := slices.DeleteFunc(lines[1:], func(l string) bool { return strings.HasPrefix(l, "Date: ") })
	slices.Sort(fields)
	return strings.Join(append(lines[:1], fields...), "\r\n") + "\r\n\r\n" + rest
}

// unrandomBoundary replaces the random boundary of a multipart body.
func unrandomBoundary(h http.Header, body []byte) []byte {
	_, b, ok := strings.Cut(h.Get("Content-Type"), "boundary=")
	if !ok {
		return body
	}
	h.Set("Content-Type", strings.ReplaceAll(h.Get("Content-Type"), b, "BOUNDARY"))
	return bytes.ReplaceAll(body, []byte(b), []byte("BOUNDARY"))
}

func sameHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + fmt.Sprintf("...(%d bytes)", len(s))
	}
	return s
}

func rawGet(path string, extra ...string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: example.com\r\n" + strings.Join(extra, "") + "\r\n"
}

func times(m string, n int) []string { return slices.Repeat([]string{m}, n) }

// nethttpCases is the table of handlers.
func nethttpCases() []diffCase {
	modTime := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	content := strings.Repeat("0123456789abcdef", 64)
	serveContent := func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "data.txt", modTime, strings.NewReader(content))
	}
	return []diffCase{
		{name: "hello", h: func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello")
		}, req: rawGet("/") + rawGet("/", "Connection: close\r\n"), methods: times("GET", 2)},
		{name: "http10", h: func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello")
		}, req: "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n", methods: times("GET", 2),
			differ: "status-line-1.1"},
		{name: "never-writes", h: func(w http.ResponseWriter, r *http.Request) {},
			req: rawGet("/") + "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", methods: []string{"GET", "HEAD"}},
		{name: "sniff-across-writes", h: func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "<ht")
			io.WriteString(w, "ml><body>hi</body></html>")
		}, req: rawGet("/"), methods: times("GET", 1)},
		{name: "sniff-after-flush", h: func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "<ht")
			w.(http.Flusher).Flush()
			io.WriteString(w, "ml><body>hi</body></html>")
		}, req: rawGet("/"), methods: times("GET", 1)},
		{name: "sniff-large", h: func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "%PDF-")
			io.WriteString(w, strings.Repeat("x", 5000))
		}, req: rawGet("/"), methods: times("GET", 1), differ: "buffer-16k"},
		{name: "sniff-suppressed", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = nil
			io.WriteString(w, "<html>")
		}, req: rawGet("/"), methods: times("GET", 1)},
		{name: "sniff-content-encoding", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			io.WriteString(w, "<html>")
		}, req: rawGet("/"), methods: times("GET", 1)},
		{name: "trailer-declared", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Sum, X-Other")
			io.WriteString(w, "body")
			w.Header().Set("X-Sum", "42")
			w.Header().Set("X-Other", "o")
		}, req: rawGet("/") + rawGet("/"), methods: times("GET", 2)},
		{name: "trailer-declared-http10", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "body")
			w.Header().Set("X-Sum", "42")
		}, req: "GET / HTTP/1.0\r\n\r\n", methods: times("GET", 1), differ: "status-line-1.1"},
		{name: "trailer-prefix", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "body")
			w.(http.Flusher).Flush()
			w.Header().Set(http.TrailerPrefix+"X-Late", "late")
		}, req: rawGet("/"), methods: times("GET", 1)},
		{name: "trailer-prefix-before-body", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(http.TrailerPrefix+"X-Early", "e")
			io.WriteString(w, "body")
		}, req: rawGet("/") + "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", methods: []string{"GET", "HEAD"}},
		{name: "trailer-hostile", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-T, Bad Name")
			io.WriteString(w, "body")
			w.Header().Set("X-T", "a\r\nInjected: 1")
			w.Header().Set("Content-Length", "99")
			w.Header().Set(http.TrailerPrefix+"Bad Name", "x")
			w.Header().Set(http.TrailerPrefix+"X-Ok", "ok")
		}, req: rawGet("/") + rawGet("/"), methods: times("GET", 2)},
		{name: "flush-streams", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "one\n")
			if err := http.NewResponseController(w).Flush(); err != nil {
				panic(err)
			}
			io.WriteString(w, "two\n")
		}, req: rawGet("/"), methods: times("GET", 1)},
		{name: "deadlines", h: func(w http.ResponseWriter, r *http.Request) {
			rc := http.NewResponseController(w)
			fmt.Fprintln(w, rc.SetReadDeadline(time.Now().Add(time.Minute)))
			fmt.Fprintln(w, rc.SetWriteDeadline(time.Now().Add(time.Minute)))
			fmt.Fprintln(w, rc.SetReadDeadline(time.Time{}))
			fmt.Fprintln(w, rc.SetWriteDeadline(time.Time{}))
		}, req: rawGet("/") + rawGet("/"), methods: times("GET", 2)},
		{name: "full-duplex", h: func(w http.ResponseWriter, r *http.Request) {
			if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
				panic(err)
			}
			io.WriteString(w, "head first\n")
			w.(http.Flusher).Flush()
			b, err := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%q %v\n", b, err)
		}, req: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", methods: times("POST", 1)},
		{name: "read-after-flush", h: func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "head first\n")
			w.(http.Flusher).Flush()
			b, err := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%q %v\n", b, err)
		}, req: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", methods: times("POST", 1)},
		{name: "hijack", h: func(w http.ResponseWriter, r *http.Request) {
			nc, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				panic(err)
			}
			defer nc.Close()
			rest, _ := rw.Reader.Peek(rw.Reader.Buffered())
			fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nbuffered %q\n", rest)
			rw.Flush()
		}, req: rawGet("/") + "extra", raw: true},
		{name: "maxbytes", h: func(w http.ResponseWriter, r *http.Request) {
			_, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 10))
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				http.Error(w, "too large", http.StatusRequestEntityTooLarge)
				return
			}
			io.WriteString(w, "ok")
		}, req: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 20\r\n\r\n01234567890123456789", methods: times("POST", 1),
			differ: "maxbytes-keeps-connection"},
		{name: "expect-continue-read", h: func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "got %s", b)
		}, req: "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello", methods: times("POST", 1)},
		{name: "expect-continue-unread", h: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no", http.StatusForbidden)
		}, req: "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello", methods: times("POST", 1)},
		{name: "head", h: func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "some body")
		}, req: "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n" + rawGet("/"), methods: []string{"HEAD", "GET"}},
		{name: "head-flush", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "streamed")
			w.(http.Flusher).Flush()
			io.WriteString(w, " body")
		}, req: "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n" + rawGet("/"), methods: []string{"HEAD", "GET"}},
		{name: "status-no-body", h: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNoContent)
			_, err := io.WriteString(w, "x")
			w.Header().Set("X-Err", fmt.Sprint(err))
		}, req: rawGet("/") + rawGet("/"), methods: times("GET", 2)},
		{name: "not-modified", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("ETag", `"v1"`)
			if r.Header.Get("If-None-Match") == `"v1"` {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			io.WriteString(w, "content")
		}, req: rawGet("/") + rawGet("/", "If-None-Match: \"v1\"\r\n"), methods: times("GET", 2)},
		{name: "short-body", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "short")
		}, req: rawGet("/"), raw: true},
		{name: "handler-closes", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		}, req: rawGet("/"), methods: times("GET", 1)},
		{name: "chunked-request", h: func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%q %v len=%d te=%v trailer=%v", b, err, r.ContentLength, r.TransferEncoding, r.Trailer)
		}, req: "POST / HTTP/1.1\r\nHost: h\r\nTrailer: X-T\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: v\r\n\r\n",
			methods: times("POST", 1)},
		{name: "head-large", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, strings.Repeat("x", 5000))
		}, req: "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", methods: []string{"HEAD"}, differ: "buffer-16k"},
		{name: "head-content-length", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "9")
			if r.Method != "HEAD" {
				io.WriteString(w, "some body")
			}
		}, req: "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n" + rawGet("/"), methods: []string{"HEAD", "GET"}},
		{name: "write-header-twice", h: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusCreated)
			w.WriteHeader(http.StatusTeapot)
			io.WriteString(w, "created")
		}, req: rawGet("/"), methods: times("GET", 1)},
		{name: "header-after-write-header", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Before", "1")
			w.WriteHeader(http.StatusAccepted)
			w.Header().Set("X-After", "1")
			io.WriteString(w, "x")
		}, req: rawGet("/"), methods: times("GET", 1)},
		{name: "early-hints", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "final")
		}, req: rawGet("/"), methods: times("GET", 1)},
		{name: "abort-handler", h: func(w http.ResponseWriter, r *http.Request) {
			panic(http.ErrAbortHandler)
		}, req: rawGet("/"), raw: true},
		{name: "panic", h: func(w http.ResponseWriter, r *http.Request) {
			panic("handler bug")
		}, req: rawGet("/"), raw: true, differ: "panic-500"},
		{name: "abort-after-flush", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}, req: rawGet("/"), raw: true},
		{name: "large-stream", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/octet-stream")
			chunk := bytes.Repeat([]byte("forkd!"), 1000)
			for range 200 {
				w.Write(chunk)
			}
		}, req: rawGet("/") + rawGet("/"), methods: times("GET", 2)},
		{name: "serve-content", h: serveContent, req: rawGet("/") +
			rawGet("/", "If-Modified-Since: "+modTime.Format(http.TimeFormat)+"\r\n") +
			rawGet("/", "Range: bytes=0-9\r\n") +
			rawGet("/", "Range: bytes=0-1,5-6\r\n") +
			rawGet("/", "Range: bytes=5000-\r\n") +
			rawGet("/", "If-Unmodified-Since: "+modTime.Add(-time.Hour).Format(http.TimeFormat)+"\r\n") +
			"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n",
			methods: []string{"GET", "GET", "GET", "GET", "GET", "GET", "HEAD"}},
		{name: "redirect", h: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/new?x=1", http.StatusFound)
		}, req: rawGet("/old") + "HEAD /old HTTP/1.1\r\nHost: h\r\n\r\n" + "POST /old HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
			methods: []string{"GET", "HEAD", "POST"}},
		{name: "cookies", h: func(w http.ResponseWriter, r *http.Request) {
			http.SetCookie(w, &http.Cookie{Name: "a", Value: "1", Path: "/", HttpOnly: true})
			http.SetCookie(w, &http.Cookie{Name: "b", Value: "2", MaxAge: 60})
			for _, c := range r.Cookies() {
				fmt.Fprintf(w, "%s=%s\n", c.Name, c.Value)
			}
		}, req: rawGet("/", "Cookie: x=1; y=2\r\n"), methods: times("GET", 1)},
		{name: "request-fields", h: func(w http.ResponseWriter, r *http.Request) {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			fmt.Fprintf(w, "remote=%s host=%s uri=%s url=%#v proto=%s close=%v\n", host, r.Host, r.RequestURI, *r.URL, r.Proto, r.Close)
		}, req: rawGet("/a%2Fb?q=1") +
			"GET http://other.example:8080/abs?x=y HTTP/1.1\r\nHost: ignored\r\n\r\n" +
			"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
			methods: []string{"GET", "GET", "OPTIONS"}, differ: "options-allow"},
		{name: "context-after-return", h: func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, r.Context().Err(), r.Context().Value(http.LocalAddrContextKey) != nil)
		}, req: rawGet("/"), methods: times("GET", 1)},
	}
}

// TestFromHTTPClientGone checks, against net/http, that a handler's
// request context is cancelled when its client goes away (half-closes,
// closes or resets the connection) while the handler runs, including
// after it read a request body, and not while the client waits.
func TestFromHTTPClientGone(t *testing.T) {
	type how int
	const (
		halfClose how = iota
		closeConn
		reset
	)
	cases := []struct {
		name string
		req  string
		how  how
	}{
		{"half-close", rawGet("/"), halfClose},
		{"close", rawGet("/"), closeConn},
		{"reset", rawGet("/"), reset},
		{"after-body", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", closeConn},
		{"chunked-body", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", halfClose},
	}
	run := func(t *testing.T, serve func(http.Handler) string, req string, h how) string {
		started := make(chan struct{}, 1)
		result := make(chan string, 1)
		addr := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.ReadAll(r.Body)
			started <- struct{}{}
			select {
			case <-r.Context().Done():
				result <- "cancelled: " + r.Context().Err().Error()
			case <-time.After(30 * time.Second):
				result <- "not cancelled"
			}
		}))
		c := dial(t, addr)
		io.WriteString(c, req)
		<-started
		switch h {
		case halfClose:
			c.(*net.TCPConn).CloseWrite()
		case reset:
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		default:
			c.Close()
		}
		return <-result
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := run(t, func(h http.Handler) string { return startNetHTTP(t, h) }, tc.req, tc.how)
			// Not loop-inline: a handler that waits on an event loop must
			// call WillBlock first (LoopSafe), and then it is loop-move.
			for _, m := range serveModes {
				if m.loop == loopInline {
					continue
				}
				t.Run(m.name, func(t *testing.T) {
					got := run(t, func(h http.Handler) string {
						_, addr := startServer(t, FromHTTP(h), nil)
						return addr
					}, tc.req, tc.how)
					if got != want {
						t.Errorf("forkd: %s; net/http: %s", got, want)
					}
				})
			}
		})
	}
}

// TestFromHTTPClientStays checks that a client that waits (pipelining its
// next request meanwhile) does not cancel the context.
func TestFromHTTPClientStays(t *testing.T) { inModes(t, testFromHTTPClientStays) }

func testFromHTTPClientStays(t *testing.T) {
	release := make(chan struct{})
	_, addr := startServer(t, FromHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if r.URL.Path == "/wait" {
			select {
			case <-ctx.Done():
			case <-release:
			}
		}
		fmt.Fprint(w, ctx.Err())
	})), nil)
	c := dial(t, addr)
	io.WriteString(c, rawGet("/wait")+rawGet("/next"))
	waitDelivered(t, c)
	close(release)
	br := bufio.NewReader(c)
	for _, want := range []string{"<nil>", "<nil>"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if b := bodyOf(resp); b != want {
			t.Fatalf("got %q, want %q", b, want)
		}
	}
}

// TestFromHTTPDeadlineErrors checks, against net/http, that the deadlines
// a handler sets through http.ResponseController bound its body reads and
// response writes.
func TestFromHTTPDeadlineErrors(t *testing.T) {
	run := func(t *testing.T, serve func(http.Handler) string) string {
		result := make(chan string, 1)
		addr := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rc := http.NewResponseController(w)
			var out []string
			if r.URL.Path == "/read" {
				rc.SetReadDeadline(time.Now().Add(-time.Second))
				_, err := r.Body.Read(make([]byte, 10))
				out = append(out, fmt.Sprintf("read timeout=%v", errors.Is(err, os.ErrDeadlineExceeded)))
			} else {
				rc.SetWriteDeadline(time.Now().Add(-time.Second))
				big := make([]byte, 1<<20)
				var err error
				for i := 0; i < 64 && err == nil; i++ {
					_, err = w.Write(big)
				}
				out = append(out, fmt.Sprintf("write timeout=%v", errors.Is(err, os.ErrDeadlineExceeded)))
			}
			result <- strings.Join(out, " ")
		}))
		c := dial(t, addr)
		io.WriteString(c, "POST /read HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n")
		got := <-result
		c2 := dial(t, addr)
		io.WriteString(c2, rawGet("/write")) // and never read
		return got + " " + <-result
	}
	want := run(t, func(h http.Handler) string { return startNetHTTP(t, h) })
	inModes(t, func(t *testing.T) {
		got := run(t, func(h http.Handler) string {
			_, addr := startServer(t, FromHTTP(h), nil)
			return addr
		})
		if got != want {
			t.Errorf("forkd: %s; net/http: %s", got, want)
		}
	})
}

// TestFromHTTPCloseCancels checks, against net/http, that Server.Close
// cancels the context of a request whose handler waits on it, whether the
// handler asked for Done before the Close (/armed) or after it.
func TestFromHTTPCloseCancels(t *testing.T) {
	for _, path := range []string{"/armed", "/late"} {
		t.Run(path[1:], func(t *testing.T) { testFromHTTPCloseCancels(t, path) })
	}
}

func testFromHTTPCloseCancels(t *testing.T, path string) {
	run := func(t *testing.T, serve func(http.Handler) (string, func())) string {
		started := make(chan struct{}, 1)
		result := make(chan string, 1)
		addr, closeServer := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var done <-chan struct{}
			if r.URL.Path == "/armed" {
				done = r.Context().Done()
			}
			started <- struct{}{}
			if done == nil {
				done = r.Context().Done()
			}
			select {
			case <-done:
				result <- "cancelled"
			case <-time.After(30 * time.Second):
				result <- "not cancelled"
			}
		}))
		c := dial(t, addr)
		io.WriteString(c, rawGet(path))
		<-started
		closeServer()
		return <-result
	}
	want := run(t, func(h http.Handler) (string, func()) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		hs := &http.Server{Handler: h}
		go hs.Serve(ln)
		return ln.Addr().String(), func() { hs.Close() }
	})
	for _, m := range serveModes {
		if m.loop == loopInline {
			continue // a handler that waits on a loop calls WillBlock: loop-move
		}
		t.Run(m.name, func(t *testing.T) {
			got := run(t, func(h http.Handler) (string, func()) {
				s, addr := startServer(t, FromHTTP(h), nil)
				return addr, func() { s.Close() }
			})
			if got != want {
				t.Errorf("forkd: %s; net/http: %s", got, want)
			}
		})
	}
}

// TestFromHTTPWatchReleased checks that watching requests for their
// client going away leaves no descriptor behind, also when the handler
// hijacks the connection.
func TestFromHTTPWatchReleased(t *testing.T) { inModes(t, testFromHTTPWatchReleased) }

func testFromHTTPWatchReleased(t *testing.T) {
	_, addr := startServer(t, FromHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done(): // arms the watch
		default:
		}
		if r.URL.Path == "/hijack" {
			nc, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				io.WriteString(nc, "hijacked")
				nc.Close()
			}
			return
		}
		io.WriteString(w, "ok")
	})), nil)
	c := dial(t, addr)
	br := bufio.NewReader(c)
	exchangeOK := func() {
		io.WriteString(c, rawGet("/"))
		resp, err := http.ReadResponse(br, nil)
		if err != nil || bodyOf(resp) != "ok" {
			t.Fatalf("%v %v", resp, err)
		}
	}
	exchangeOK() // the watcher is made
	before := openFDs(t)
	for range 50 {
		exchangeOK()
	}
	if out := exchange(t, addr, rawGet("/hijack")); out != "hijacked" {
		t.Fatalf("%q", out)
	}
	if after := openFDs(t); after > before+2 {
		t.Errorf("%d descriptors open before, %d after", before, after)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
