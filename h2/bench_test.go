package h2

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/forkd/forkd/protocol"
)

// BenchmarkStreams measures a stream's cost through the bridge: many
// concurrent GETs on one h2c connection (net/http's client), answered with
// a small body or a 4 KiB file sent with SendFile, as the static route
// does. Its allocs/op count the client's as well as the server's.
func BenchmarkStreams(b *testing.B) {
	dir := b.TempDir()
	file := filepath.Join(dir, "4k.bin")
	if err := os.WriteFile(file, make([]byte, 4096), 0o644); err != nil {
		b.Fatal(err)
	}
	h := protocol.HandlerFunc(func(w *protocol.ResponseWriter, r *protocol.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if string(r.Path) != "/4k" {
			io.WriteString(w, "Hello, World!")
			return
		}
		f, err := os.Open(file)
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		defer f.Close()
		w.SetContentLength(4096)
		if err := w.SendFile(f, 0, 4096); err != nil {
			b.Error(err)
		}
	})
	for _, path := range []string{"/", "/4k"} {
		b.Run(path, func(b *testing.B) {
			addr, _ := serveH2C(b, h, Options{})
			c := &http.Client{Transport: &http.Transport{Protocols: h2cOnly(), MaxConnsPerHost: 1}}
			defer c.CloseIdleConnections()
			url := "http://" + addr + path
			b.SetParallelism(16)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := c.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}
