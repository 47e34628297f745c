package serve

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/forkd/forkd/config"
)

// TestHeaders checks that site and route headers blocks reach every kind
// of route and every response, errors included, and the upstream's fields.
func TestHeaders(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "static"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "static", "a.txt"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "upstream")
		w.Header().Set("X-Up", "1")
		_, _ = w.Write([]byte("up"))
	}))
	t.Cleanup(up.Close)
	siteHdrs := &config.Headers{
		Set:    map[string]string{"Strict-Transport-Security": "max-age=60", "X-Where": "site"},
		Add:    map[string]string{"Link": "</a.css>; rel=preload"},
		Remove: []string{"Server"},
	}
	routeHdrs := &config.Headers{
		Set: map[string]string{"X-Where": "route {host} {path}"},
		Add: map[string]string{"Link": "</b.js>; rel=preload"},
	}
	h := newHandler(t, []config.Site{{
		Name: "s", Hosts: []string{"*"}, Headers: siteHdrs,
		Routes: []config.Route{
			{Prefix: "/static/", Headers: routeHdrs, Static: &config.Static{Root: root, Index: []string{"index.html"}}},
			{Prefix: "/api/", Proxy: &config.Proxy{
				Upstreams: []string{upstreamAddr(up)}, ConnectTimeout: testTimeout, ResponseTimeout: testTimeout,
				Balance: config.BalanceRoundRobin, Keepalive: 1, KeepaliveTimeout: testTimeout, FailTimeout: testTimeout,
				Host: config.ProxyHostClient,
			}},
			{Prefix: "/go", Redirect: &config.Redirect{Status: 308, Location: "/x"}},
			{Prefix: "/plain", Respond: &config.Respond{Status: 200, Body: "p"}},
		},
	}}, Options{})
	addr := startServer(t, h, nil)
	for _, tt := range []struct {
		target string
		status int
		where  string
		links  []string
	}{
		{"/static/a.txt", 200, "route example.com /static/a.txt", []string{"</a.css>; rel=preload", "</b.js>; rel=preload"}},
		{"/static/missing", 404, "route example.com /static/missing", []string{"</a.css>; rel=preload", "</b.js>; rel=preload"}},
		{"/api/x", 200, "site", []string{"</a.css>; rel=preload"}},
		{"/go", 308, "site", []string{"</a.css>; rel=preload"}},
		{"/plain", 200, "site", []string{"</a.css>; rel=preload"}},
	} {
		r := get(t, addr, "GET", tt.target)
		if r.status != tt.status {
			t.Errorf("%s: status %d, want %d", tt.target, r.status, tt.status)
		}
		if got := r.header.Get("X-Where"); got != tt.where {
			t.Errorf("%s: X-Where %q, want %q", tt.target, got, tt.where)
		}
		if got := r.header.Get("Strict-Transport-Security"); got != "max-age=60" {
			t.Errorf("%s: Strict-Transport-Security %q", tt.target, got)
		}
		if got := r.header.Values("Link"); !slices.Equal(got, tt.links) {
			t.Errorf("%s: Link %q, want %q", tt.target, got, tt.links)
		}
		if got := r.header.Get("Server"); got != "" {
			t.Errorf("%s: Server %q, want it removed", tt.target, got)
		}
	}
	if r := get(t, addr, "GET", "/api/x"); r.header.Get("X-Up") != "1" || r.body != "up" {
		t.Errorf("proxy: X-Up %q body %q", r.header.Get("X-Up"), r.body)
	}
	// The site's 404 for a path no route matches carries the site's.
	if r := get(t, addr, "GET", "/nothing"); r.status != 404 || r.header.Get("X-Where") != "site" {
		t.Errorf("site 404: %d, X-Where %q", r.status, r.header.Get("X-Where"))
	}
}
