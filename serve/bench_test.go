package serve

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/forkd/forkd/config"
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
