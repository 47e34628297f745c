package serve

import (
	"bufio"
	"bytes"

	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/protocol"
)

var codingNames = []string{"gzip", "br", "zstd"}

// noDecodeClient sends Accept-Encoding itself and reads bodies as sent.
func noDecodeClient(t *testing.T) *http.Client {
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: testTimeout}
}

func fetch(t *testing.T, c *http.Client, method, url, ae string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ae != "" {
		req.Header.Set("Accept-Encoding", ae)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestRespondCompress(t *testing.T) {
	long := strings.Repeat("forkd compresses what it is asked to. ", 40)
	routes := []config.Route{
		{Prefix: "/long", Respond: &config.Respond{Status: 200, Body: long, Headers: map[string]string{"Content-Type": "text/plain", "ETag": `"v1"`}}},
		{Prefix: "/short", Respond: &config.Respond{Status: 200, Body: "short", Headers: map[string]string{"Content-Type": "text/plain"}}},
		{Prefix: "/binary", Respond: &config.Respond{Status: 200, Body: long, Headers: map[string]string{"Content-Type": "application/octet-stream"}}},
		{Prefix: "/notransform", Respond: &config.Respond{Status: 200, Body: long, Headers: map[string]string{"Content-Type": "text/plain", "Cache-Control": "no-transform"}}},
		{Prefix: "/encoded", Respond: &config.Respond{Status: 200, Body: long, Headers: map[string]string{"Content-Type": "text/plain", "Content-Encoding": "x-custom"}}},
		{Prefix: "/empty", Respond: &config.Respond{Status: 204, Headers: map[string]string{"Content-Type": "text/plain"}}},
		{Prefix: "/off", Compress: nil, Respond: &config.Respond{Status: 200, Body: long, Headers: map[string]string{"Content-Type": "text/plain"}}},
	}
	h := newHandler(t, []config.Site{{Name: "s", Compress: compressBlock(), Routes: routes[:6]},
		{Name: "o", Hosts: []string{"off.example"}, Routes: routes[6:]}}, Options{})
	addr := startServer(t, h, nil)
	c := noDecodeClient(t)
	base := "http://" + addr
	for _, enc := range codingNames {
		resp, b := fetch(t, c, "GET", base+"/long", enc)
		if got := resp.Header.Get("Content-Encoding"); got != enc {
			t.Fatalf("%s: Content-Encoding %q", enc, got)
		}
		if got := decode(t, enc, b); string(got) != long {
			t.Fatalf("%s: decodes to %q", enc, got)
		}
		if resp.Header.Get("Vary") != "Accept-Encoding" || resp.Header.Get("ETag") != `W/"v1"` || resp.ContentLength != -1 {
			t.Errorf("%s: %v, length %d", enc, resp.Header, resp.ContentLength)
		}
		hd, _ := fetch(t, c, "HEAD", base+"/long", enc)
		if hd.Header.Get("Content-Encoding") != enc || hd.Header.Get("Content-Length") != "" {
			t.Errorf("%s: HEAD %v", enc, hd.Header)
		}
	}
	// HTTP/1.0: no chunks, the body ends with the connection.
	r10 := rawRequest(t, addr, "GET", "GET /long HTTP/1.0\r\nHost: x\r\nAccept-Encoding: zstd\r\n\r\n")
	if r10.header.Get("Content-Encoding") != "zstd" || string(decode(t, "zstd", []byte(r10.body))) != long {
		t.Errorf("HTTP/1.0: %v", r10.header)
	}
	resp, b := fetch(t, c, "GET", base+"/long", "")
	if string(b) != long || resp.Header.Get("Vary") != "Accept-Encoding" || resp.Header.Get("ETag") != `"v1"` ||
		resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("identity: %v", resp.Header)
	}
	for _, path := range []string{"/short", "/binary", "/notransform", "/encoded", "/empty"} {
		resp, b := fetch(t, c, "GET", base+path, "gzip, br, zstd")
		if enc := resp.Header.Get("Content-Encoding"); enc != "" && enc != "x-custom" {
			t.Errorf("%s: Content-Encoding %q", path, enc)
		}
		if resp.StatusCode == 200 && string(b) != long && string(b) != "short" {
			t.Errorf("%s: body %q", path, b)
		}
	}
	// A site without compress: nothing changes.
	req, _ := http.NewRequest("GET", base+"/off", nil)
	req.Host = "off.example"
	req.Header.Set("Accept-Encoding", "gzip")
	r2, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.Header.Get("Content-Encoding") != "" || r2.Header.Get("Vary") != "" || r2.ContentLength != int64(len(long)) {
		t.Errorf("no compress block: %v", r2.Header)
	}
}

// proxyCompressSite proxies / to up with the default compress block.
func proxyCompressSite(t *testing.T, up string) string {
	t.Helper()
	px := config.Proxy{Upstreams: []string{up}, Keepalive: config.DefaultKeepalive, RetryBodyBuffer: config.DefaultRetryBodyBuffer,
		ConnectTimeout: time.Second, ResponseTimeout: testTimeout, Balance: config.BalanceRoundRobin, Host: config.ProxyHostClient}
	h := newHandler(t, []config.Site{{Name: "p", Routes: []config.Route{{Prefix: "/", Proxy: &px, Compress: compressBlock()}}}}, Options{})
	return startServer(t, h, nil)
}

func TestProxyCompress(t *testing.T) {
	body := strings.Repeat("upstream bytes, compressed on the way. ", 200)
	us := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		switch r.URL.Path {
		case "/fixed":
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			io.WriteString(w, body)
		case "/chunked":
			w.Header().Set("Trailer", "X-Sum")
			for i := 0; i < len(body); i += 1000 {
				io.WriteString(w, body[i:min(i+1000, len(body))])
				w.(http.Flusher).Flush()
			}
			w.Header().Set("X-Sum", "done")
		case "/encoded":
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			io.WriteString(zw, body)
			zw.Close()
		}
	}))
	t.Cleanup(us.Close)
	addr := proxyCompressSite(t, upstreamAddr(us))
	c := noDecodeClient(t)
	for _, enc := range codingNames {
		for _, path := range []string{"/fixed", "/chunked"} {
			resp, b := fetch(t, c, "GET", "http://"+addr+path, enc)
			if resp.Header.Get("Content-Encoding") != enc || resp.Header.Get("Vary") != "Accept-Encoding" {
				t.Fatalf("%s %s: %v", enc, path, resp.Header)
			}
			if got := decode(t, enc, b); string(got) != body {
				t.Fatalf("%s %s: decodes to %d bytes, want %d", enc, path, len(got), len(body))
			}
			if path == "/chunked" && resp.Trailer.Get("X-Sum") != "done" {
				t.Errorf("%s: trailer %v", enc, resp.Trailer)
			}
		}
	}
	resp, b := fetch(t, c, "GET", "http://"+addr+"/encoded", "br, gzip")
	if resp.Header.Get("Content-Encoding") != "gzip" || string(decode(t, "gzip", b)) != body {
		t.Errorf("already encoded: %v", resp.Header)
	}
	resp, b = fetch(t, c, "GET", "http://"+addr+"/fixed", "identity")
	if resp.Header.Get("Content-Encoding") != "" || string(b) != body || resp.ContentLength != int64(len(body)) {
		t.Errorf("identity: %v", resp.Header)
	}
}

// streamReader decodes a compressed stream as it arrives.
func streamReader(t *testing.T, enc string, r io.Reader) io.Reader {
	switch enc {
	case "gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		return zr
	case "br":
		return brotli.NewReader(r)
	}
	zr, err := zstd.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(zr.Close)
	return zr
}

// TestProxyCompressSSE: a compressed event stream is flushed event by
// event: the client decodes the first event before the upstream sends
// the second (which it only sends once the client has the first).
func TestProxyCompressSSE(t *testing.T) {
	for _, enc := range codingNames {
		t.Run(enc, func(t *testing.T) {
			got1 := make(chan struct{})
			us := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				io.WriteString(w, "data: first\n\n")
				w.(http.Flusher).Flush()
				select {
				case <-got1:
				case <-time.After(testTimeout):
					return
				}
				io.WriteString(w, "data: second\n\n")
			}))
			t.Cleanup(us.Close)
			addr := proxyCompressSite(t, upstreamAddr(us))
			req, _ := http.NewRequest("GET", "http://"+addr+"/events", nil)
			req.Header.Set("Accept-Encoding", enc)
			resp, err := noDecodeClient(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.Header.Get("Content-Encoding") != enc {
				t.Fatalf("Content-Encoding %q", resp.Header.Get("Content-Encoding"))
			}
			br := bufio.NewReader(streamReader(t, enc, resp.Body))
			var ev bytes.Buffer
			for !bytes.HasSuffix(ev.Bytes(), []byte("\n\n")) {
				line, err := br.ReadBytes('\n')
				ev.Write(line)
				if err != nil {
					t.Fatalf("first event: %q, %v", ev.Bytes(), err)
				}
			}
			if ev.String() != "data: first\n\n" {
				t.Fatalf("first event %q", ev.String())
			}
			close(got1)
			rest, err := io.ReadAll(br)
			if err != nil || string(rest) != "data: second\n\n" {
				t.Fatalf("rest %q, %v", rest, err)
			}
		})
	}
}

// TestFallbackCompressOptIn: the embedding program's handler is
// compressed by its site's block only when marked protocol.Compressed.
func TestFallbackCompressOptIn(t *testing.T) {
	long := strings.Repeat("an embedded handler's response. ", 40)
	app := protocol.HandlerFunc(func(w *protocol.ResponseWriter, r *protocol.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteString(long)
	})
	site := []config.Site{{Name: "s", Compress: compressBlock(), Routes: []config.Route{
		{Prefix: "/r", Respond: &config.Respond{Status: 200, Body: long, Headers: map[string]string{"Content-Type": "text/plain"}}},
	}}}
	c := noDecodeClient(t)
	for _, tc := range []struct {
		name string
		h    protocol.Handler
		want string
	}{
		{"plain", app, ""},
		{"Compressed", protocol.Compressed(app), "br"},
		{"Nonblocking(Compressed)", protocol.Nonblocking(protocol.Compressed(app)), "br"},
		{"Compressed(Nonblocking)", protocol.Compressed(protocol.Nonblocking(app)), "br"},
		{"Compressed(HTTP)", protocol.Compressed(protocol.FromHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, long)
		}))), "br"},
	} {
		addr := startServer(t, newHandler(t, site, Options{Fallback: tc.h}), nil)
		resp, b := fetch(t, c, "GET", "http://"+addr+"/app", "br")
		if got := resp.Header.Get("Content-Encoding"); got != tc.want {
			t.Errorf("%s: Content-Encoding %q, want %q", tc.name, got, tc.want)
		}
		if got := decode(t, resp.Header.Get("Content-Encoding"), b); string(got) != long {
			t.Errorf("%s: body %q", tc.name, got)
		}
	}
	if ls, ok := protocol.Compressed(protocol.Nonblocking(app)).(protocol.LoopSafe); !ok || !ls.LoopSafe() {
		t.Error("Compressed(Nonblocking(h)) is not LoopSafe")
	}
}

// TestCompressSendFile: a handler that declares its length and sends a
// file with SendFile still gets a compressed body when its head's hook
// compresses (the file is copied through the encoder).
func TestCompressSendFile(t *testing.T) {
	long := strings.Repeat("sent with sendfile, compressed anyway. ", 60)
	p := t.TempDir() + "/f.txt"
	if err := os.WriteFile(p, []byte(long), 0o644); err != nil {
		t.Fatal(err)
	}
	app := protocol.Compressed(protocol.HandlerFunc(func(w *protocol.ResponseWriter, r *protocol.Request) {
		f, err := os.Open(p)
		if err != nil {
			writeError(w, 500)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "text/plain")
		w.SetContentLength(int64(len(long)))
		if err := w.SendFile(f, 0, int64(len(long))); err != nil {
			t.Errorf("SendFile: %v", err)
		}
	}))
	site := []config.Site{{Name: "s", Compress: compressBlock(), Routes: []config.Route{
		{Prefix: "/r", Respond: &config.Respond{Status: 200}},
	}}}
	addr := startServer(t, newHandler(t, site, Options{Fallback: app}), nil)
	c := noDecodeClient(t)
	for _, enc := range []string{"gzip", ""} {
		resp, b := fetch(t, c, "GET", "http://"+addr+"/f", enc)
		if resp.Header.Get("Content-Encoding") != enc || string(decode(t, enc, b)) != long {
			t.Errorf("%q: %v, %d bytes", enc, resp.Header, len(b))
		}
	}
}
