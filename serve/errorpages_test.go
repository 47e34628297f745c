package serve

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/forkd/forkd/config"
)

// TestFallbackAndErrorPages checks a static fallback (a single-page
// application) and a site's error pages: on forkd's own errors, 401s
// included (with their challenge), and on upstream errors without a body,
// with the original status; an upstream error with a body is left alone.
func TestFallbackAndErrorPages(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("app/index.html", "spa")
	write("app/app.js", "js")
	write("files/a.txt", "a")
	p404 := write("errors/404.html", "<h1>not here</h1>")
	p502 := write("errors/502.html", "<h1>upstream down</h1>")
	p401 := write("errors/401.html", "<h1>who?</h1>")
	p500 := write("errors/500.html", "<h1>oops</h1>")

	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bodied/x" {
			w.WriteHeader(500)
			_, _ = w.Write([]byte("upstream's own"))
			return
		}
		w.WriteHeader(500)
	}))
	t.Cleanup(bare.Close)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	proxy := func(up string) *config.Proxy {
		return &config.Proxy{
			Upstreams: []string{up}, ConnectTimeout: testTimeout, ResponseTimeout: testTimeout,
			Balance: config.BalanceRoundRobin, FailTimeout: testTimeout, KeepaliveTimeout: testTimeout,
			Host: config.ProxyHostClient,
		}
	}
	h := newHandler(t, []config.Site{{
		Name: "s", Hosts: []string{"*"},
		ErrorPages: map[string]string{"404": p404, "502": p502, "401": p401, "500": p500},
		Routes: []config.Route{
			{Prefix: "/app/", Static: &config.Static{Root: dir, Index: []string{"index.html"}, Fallback: "/app/index.html"}},
			{Prefix: "/files/", Static: &config.Static{Root: dir, Index: []string{"index.html"}}},
			{Prefix: "/dead/", Proxy: proxy(deadAddr)},
			{Prefix: "/bare/", Proxy: proxy(upstreamAddr(bare))},
			{Prefix: "/bodied/", Proxy: proxy(upstreamAddr(bare))},
			{Prefix: "/admin/", Access: config.Access{BasicAuth: &config.BasicAuth{Realm: "r", Users: map[string]string{"a": "$2a$04$abcdefghijklmnopqrstuu5Q.MQ7Wk5HtZO0a2bq8gFzuR1fPCnPO"}}}, Respond: &config.Respond{Status: 200}},
		},
	}}, Options{})
	addr := startServer(t, h, nil)
	for _, tt := range []struct {
		target string
		status int
		body   string
		ctype  string
	}{
		{"/app/", 200, "spa", "text/html; charset=utf-8"},
		{"/app/app.js", 200, "js", "text/javascript; charset=utf-8"},
		{"/app/users/42", 200, "spa", "text/html; charset=utf-8"},
		{"/files/a.txt", 200, "a", "text/plain; charset=utf-8"},
		{"/files/missing", 404, "<h1>not here</h1>", "text/html; charset=utf-8"},
		{"/nowhere", 404, "<h1>not here</h1>", "text/html; charset=utf-8"},
		{"/dead/x", 502, "<h1>upstream down</h1>", "text/html; charset=utf-8"},
		{"/bare/x", 500, "<h1>oops</h1>", "text/html; charset=utf-8"},
		{"/bodied/x", 500, "upstream's own", ""},
		{"/admin/", 401, "<h1>who?</h1>", "text/html; charset=utf-8"},
	} {
		r := get(t, addr, "GET", tt.target)
		if r.status != tt.status || r.body != tt.body {
			t.Errorf("%s: %d %q, want %d %q", tt.target, r.status, r.body, tt.status, tt.body)
		}
		if tt.ctype != "" && r.header.Get("Content-Type") != tt.ctype {
			t.Errorf("%s: Content-Type %q, want %q", tt.target, r.header.Get("Content-Type"), tt.ctype)
		}
		if tt.status == 401 && r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: the 401 lost its challenge", tt.target)
		}
	}
}
