package serve

import (
	"testing"

	"github.com/forkd/forkd/config"
)

func TestRedirect(t *testing.T) {
	h := newHandler(t, []config.Site{{Name: "r", Routes: []config.Route{
		{Prefix: "/", Redirect: &config.Redirect{Status: 301, Location: "https://{host}:8443{uri}"}},
		{Prefix: "/t/", Redirect: &config.Redirect{Status: 308, Location: "/new{uri}#x"}},
	}}}, Options{})
	addr := startServer(t, h, nil)
	for _, tc := range []struct {
		method, target string
		status         int
		loc            string
	}{
		{"GET", "/a/b?c=d&e", 301, "https://Example.com:8443/a/b?c=d&e"},
		{"POST", "/", 301, "https://Example.com:8443/"},
		{"GET", "/x?", 301, "https://Example.com:8443/x?"},
		{"GET", "/t/%41", 308, "/new/t/%41#x"},
	} {
		req := tc.method + " " + tc.target + " HTTP/1.1\r\nHost: Example.com:8080\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
		r := rawRequest(t, addr, tc.method, req)
		if r.status != tc.status || r.header.Get("Location") != tc.loc || r.body != "" {
			t.Errorf("%s %s: %d %q %q, want %d %q", tc.method, tc.target, r.status, r.header.Get("Location"), r.body, tc.status, tc.loc)
		}
	}
}

// TestRedirectOpen: {uri} is the normalised target, so that a location
// made of it alone never names another host ("//host" and "/\host" are
// network-path references to browsers).
func TestRedirectOpen(t *testing.T) {
	h := newHandler(t, []config.Site{{Name: "r", Routes: []config.Route{
		{Prefix: "/", Redirect: &config.Redirect{Status: 302, Location: "{uri}"}},
	}}}, Options{})
	addr := startServer(t, h, nil)
	for _, tc := range []struct{ target, loc string }{
		{"//evil.example/../u/x", "/u/x"},
		{`/\evil.example/..`, "/"},
		{`/\evil.example`, "/%5Cevil.example"},
		{"/%2F%2Fevil", "/evil"},
		{"/..//evil", "/evil"},
		{"/.//evil?a=//b", "/evil?a=//b"},
		{"/ok?q", "/ok?q"},
	} {
		r := get(t, addr, "GET", tc.target)
		if r.status != 302 || r.header.Get("Location") != tc.loc {
			t.Errorf("GET %s: %d Location %q, want 302 %q", tc.target, r.status, r.header.Get("Location"), tc.loc)
		}
	}
}
