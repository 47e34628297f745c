package serve

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/httplex"
	"github.com/forkd/forkd/internal/testserver"
)

func BenchmarkRoute(b *testing.B) {
	h := newHandler(b, []config.Site{
		{Name: "a", Hosts: []string{"www.example.com"}, Routes: []config.Route{
			{Prefix: "/", Respond: &config.Respond{}},
			{Prefix: "/api/", Respond: &config.Respond{}},
			{Prefix: "/api/v2/", Respond: &config.Respond{}},
			{Prefix: "/healthz", Respond: &config.Respond{}},
		}},
		{Name: "b", Hosts: []string{"*.example.com"}, Routes: []config.Route{{Prefix: "/", Respond: &config.Respond{}}}},
		{Name: "c", Hosts: []string{"*"}, Routes: []config.Route{{Prefix: "/", Respond: &config.Respond{}}}},
	}, Options{}).(*handler)
	host := []byte("Shop.Example.com:8080")
	raw := []byte("/api/v2/items/%7Eone/list")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p := h.paths.Get().(*reqPath)
			if !p.clean(raw) || h.router.lookup(host, p.path) == nil {
				b.Fatal("no route")
			}
			h.paths.Put(p)
		}
	})
}

// BenchmarkStaticFile fetches a 4 KiB file over keep-alive connections
// (client, protocol and static handler together).
func BenchmarkStaticFile(b *testing.B) {
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f.css"), make([]byte, 4096), 0o644); err != nil {
		b.Fatal(err)
	}
	h := newHandler(b, []config.Site{{Name: "s", Routes: []config.Route{
		{Prefix: "/", Static: &config.Static{Root: dir, Gzip: true}},
	}}}, Options{})
	addr := startServer(b, h, nil)
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	url := "http://" + addr + "/f.css"
	b.SetBytes(4096)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatal(resp.Status)
			}
		}
	})
}

// BenchmarkProxy sends keep-alive GETs through a proxy route to an upstream
// on loopback. Client and upstream are raw sockets that allocate nothing,
// so allocs/op is the proxy's (protocol, serve, upstream client).
func BenchmarkProxy(b *testing.B) {
	benchProxy(b, config.Site{})
}

// BenchmarkProxyMiddleware is BenchmarkProxy with headers, an allow list
// and request IDs: what the route middleware costs.
func BenchmarkProxyMiddleware(b *testing.B) {
	benchProxy(b, config.Site{
		Headers: &config.Headers{
			Set:    map[string]string{"Strict-Transport-Security": "max-age=31536000", "X-Host": "{host}"},
			Add:    map[string]string{"Link": "</app.css>; rel=preload"},
			Remove: []string{"Server"},
		},
		Access: config.Access{Allow: []string{"127.0.0.0/8"}, Deny: []string{"10.0.0.0/8"}, RequestID: "X-Request-Id"},
	})
}

func benchProxy(b *testing.B, site config.Site) {
	upstream := rawBenchUpstream(b, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!")
	site.Name = "p"
	site.Routes = []config.Route{
		{Prefix: "/", Proxy: &config.Proxy{Upstreams: []string{upstream}, Keepalive: 64}},
	}
	h := newHandler(b, []config.Site{site}, Options{})
	addr := startServer(b, h, nil)
	req := []byte("GET /bench?x=1 HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		for pb.Next() {
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				return
			}
			if err := readBenchResponse(c, buf, "Hello, World!"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// readBenchResponse reads one response whose body is body (and that has
// no other "\r\n\r\n").
func readBenchResponse(c net.Conn, buf []byte, body string) error {
	n := 0
	for {
		m, err := c.Read(buf[n:])
		if err != nil {
			return err
		}
		n += m
		if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 && n-i-4 >= len(body) {
			if string(buf[n-len(body):n]) != body {
				return fmt.Errorf("response %q", buf[:n])
			}
			return nil
		}
		if n == len(buf) {
			return fmt.Errorf("response too long: %q", buf[:n])
		}
	}
}

// rawBenchUpstream answers every request head on a connection with resp.
func rawBenchUpstream(b *testing.B, resp string) string {
	return testserver.Start(b, func(c net.Conn) {
		buf := make([]byte, 8192)
		out := []byte(resp)
		n := 0
		for {
			m, err := c.Read(buf[n:])
			if err != nil {
				return
			}
			n += m
			for {
				i := bytes.Index(buf[:n], []byte("\r\n\r\n"))
				if i < 0 {
					break
				}
				if _, err := c.Write(out); err != nil {
					return
				}
				n = copy(buf, buf[i+4:n])
			}
		}
	}).Addr
}

// BenchmarkCompress fetches 4 KiB of text over keep-alive connections with
// raw clients, compressed with each coding: through a proxy route (a
// streaming encoder per response, pooled) and from a static route (the
// worker's cached variant). allocs/op is the server's and the codec's.
func BenchmarkCompress(b *testing.B) {
	text := bytes.Repeat([]byte("forkd compresses text on its way out, 0123456789.\n"), 82)[:4096]
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f.css"), text, 0o644); err != nil {
		b.Fatal(err)
	}
	upstream := rawBenchUpstream(b, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4096\r\n\r\n"+string(text))
	cz := &config.Compress{Algorithms: config.DefaultCompressAlgorithms, Types: config.DefaultCompressTypes,
		MinLength: config.DefaultCompressMinLength, Cache: config.DefaultCompressCache}
	h := newHandler(b, []config.Site{{Name: "s", Compress: cz, Routes: []config.Route{
		{Prefix: "/static/", Static: &config.Static{Root: dir}},
		{Prefix: "/", Proxy: &config.Proxy{Upstreams: []string{upstream}, Keepalive: 64}},
	}}}, Options{})
	if err := os.Mkdir(filepath.Join(dir, "static"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "f.css"), filepath.Join(dir, "static", "f.css")); err != nil {
		b.Fatal(err)
	}
	addr := startServer(b, h, nil)
	for _, path := range []string{"/proxy", "/static/f.css"} {
		for _, enc := range []string{"identity", "gzip", "br", "zstd"} {
			b.Run(path[1:]+"/"+enc, func(b *testing.B) {
				req := []byte("GET " + path + " HTTP/1.1\r\nHost: bench.example\r\nAccept-Encoding: " + enc + "\r\n\r\n")
				b.SetBytes(int64(len(text)))
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					c, err := net.Dial("tcp", addr)
					if err != nil {
						b.Error(err)
						return
					}
					defer c.Close()
					r := bufio.NewReaderSize(c, 16<<10)
					for pb.Next() {
						if _, err := c.Write(req); err != nil {
							b.Error(err)
							return
						}
						if err := skipResponse(r); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

// skipResponse reads one response, framed by Content-Length or chunked,
// allocating nothing.
func skipResponse(r *bufio.Reader) error {
	length, chunked := int64(-1), false
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			length, _ = parseDigits(bytes.TrimSpace(v))
		}
		if bytes.Equal(line, []byte("Transfer-Encoding: chunked\r\n")) {
			chunked = true
		}
	}
	if !chunked {
		_, err := r.Discard(int(length))
		return err
	}
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		var n int64
		for _, c := range bytes.TrimSpace(line) {
			v, ok := httplex.Unhex(c)
			if !ok {
				break
			}
			n = n<<4 | int64(v)
		}
		if _, err := r.Discard(int(n) + 2); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}
