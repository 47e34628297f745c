package serve

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/forkd/forkd/config"
)

// TestProxyStripPrefixAndRequestHeaders checks strip_prefix and
// request_headers: the path and fields the upstream gets.
func TestProxyStripPrefixAndRequestHeaders(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Got-Path", r.URL.RequestURI())
		w.Header().Set("X-Got-Secret", r.Header.Get("X-Secret"))
		w.Header().Set("X-Got-Env", r.Header.Get("X-Env"))
		w.Header().Set("X-Got-Who", r.Header.Get("X-Who"))
	}))
	t.Cleanup(up.Close)
	proxy := func(strip bool, rh *config.RequestHeaders) *config.Proxy {
		return &config.Proxy{
			Upstreams: []string{upstreamAddr(up)}, ConnectTimeout: testTimeout, ResponseTimeout: testTimeout,
			Balance: config.BalanceRoundRobin, Keepalive: 1, KeepaliveTimeout: testTimeout, FailTimeout: testTimeout,
			Host: config.ProxyHostClient, StripPrefix: strip, RequestHeaders: rh,
		}
	}
	h := newHandler(t, []config.Site{{Name: "s", Hosts: []string{"*"}, Routes: []config.Route{
		{Prefix: "/api/", Proxy: proxy(true, &config.RequestHeaders{
			Set:    map[string]string{"X-Env": "prod", "X-Who": "{remote_addr} {path}"},
			Remove: []string{"X-Secret"},
		})},
		{Prefix: "/v1", Proxy: proxy(true, nil)},
		{Prefix: "/keep/", Proxy: proxy(false, nil)},
	}}}, Options{})
	addr := startServer(t, h, nil)
	for _, tt := range []struct{ target, path, secret, env, who string }{
		{"/api/users?x=1", "/users?x=1", "", "prod", "127.0.0.1 /api/users"},
		{"/api/", "/", "", "prod", "127.0.0.1 /api/"},
		{"/api/a/../b%20c", "/b%20c", "", "prod", "127.0.0.1 /api/b%20c"},
		{"/v1", "/", "s", "", ""},
		{"/v1/x/y", "/x/y", "s", "", ""},
		{"/keep/x", "/keep/x", "s", "", ""},
	} {
		r := get(t, addr, "GET", tt.target, "X-Secret: s", "X-Env: client")
		if r.status != 200 {
			t.Fatalf("%s: %d %q", tt.target, r.status, r.body)
		}
		env := tt.env
		if env == "" {
			env = "client"
		}
		got := [4]string{r.header.Get("X-Got-Path"), r.header.Get("X-Got-Secret"), r.header.Get("X-Got-Env"), r.header.Get("X-Got-Who")}
		if want := [4]string{tt.path, tt.secret, env, tt.who}; got != want {
			t.Errorf("%s: upstream got path, X-Secret, X-Env, X-Who %q, want %q", tt.target, got, want)
		}
	}
}
