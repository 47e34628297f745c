package serve

import (
	"strings"
	"testing"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/protocol"
)

func TestRespond(t *testing.T) {
	h := newHandler(t, []config.Site{{Name: "r", Routes: []config.Route{
		{Prefix: "/teapot", Respond: &config.Respond{Status: 418, Body: "short and stout\n",
			Headers: map[string]string{"X-Pot": "tea", "Cache-Control": "no-store"}}},
		{Prefix: "/gone", Respond: &config.Respond{Status: 410}},
		{Prefix: "/json", Respond: &config.Respond{Body: "{}", Headers: map[string]string{"content-type": "application/json"}}},
		{Prefix: "/nc", Respond: &config.Respond{Status: 204}},
	}}}, Options{})
	addr := startServer(t, h, nil)

	r := get(t, addr, "GET", "/teapot")
	if r.status != 418 || r.body != "short and stout\n" || r.header.Get("X-Pot") != "tea" ||
		r.header.Get("Cache-Control") != "no-store" || r.header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("GET /teapot: %d %q %v", r.status, r.body, r.header)
	}
	if r := get(t, addr, "POST", "/teapot/x", "Content-Length: 0"); r.status != 418 {
		t.Errorf("POST /teapot/x: %d", r.status)
	}
	if r := get(t, addr, "HEAD", "/teapot"); r.status != 418 || r.body != "" || r.header.Get("Content-Length") != "16" {
		t.Errorf("HEAD /teapot: %d %q %v", r.status, r.body, r.header)
	}
	if r := get(t, addr, "GET", "/gone"); r.status != 410 || r.body != "" {
		t.Errorf("GET /gone: %d %q", r.status, r.body)
	}
	if r := get(t, addr, "GET", "/json"); r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("GET /json: %d %v", r.status, r.header)
	}
	if r := get(t, addr, "GET", "/nc"); r.status != 204 || r.body != "" {
		t.Errorf("GET /nc: %d %q", r.status, r.body)
	}
	if r := get(t, addr, "GET", "/other"); r.status != 404 {
		t.Errorf("GET /other: %d, want 404", r.status)
	}
	if r := get(t, addr, "GET", "/%zz"); r.status != 400 || strings.Contains(r.body, "zz") {
		t.Errorf("GET /%%zz: %d %q", r.status, r.body)
	}
}

func TestDefaultWelcome(t *testing.T) {
	h := newHandler(t, nil, Options{})
	addr := startServer(t, h, nil)
	r := get(t, addr, "GET", "/")
	if r.status != 200 || !strings.Contains(r.body, "forkd is running") || r.header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("GET /: %d %q", r.status, r.body)
	}
	if r := get(t, addr, "GET", "/healthz"); r.status != 200 || r.body != "ok\n" {
		t.Errorf("GET /healthz: %d %q", r.status, r.body)
	}
	if r := get(t, addr, "HEAD", "/healthz"); r.status != 200 || r.body != "" {
		t.Errorf("HEAD /healthz: %d %q", r.status, r.body)
	}
	if r := get(t, addr, "GET", "/nope"); r.status != 404 {
		t.Errorf("GET /nope: %d", r.status)
	}
	if r := get(t, addr, "DELETE", "/"); r.status != 405 || r.header.Get("Allow") != "GET, HEAD" {
		t.Errorf("DELETE /: %d %v", r.status, r.header)
	}
}

func TestFallback(t *testing.T) {
	app := protocol.HandlerFunc(func(w *protocol.ResponseWriter, r *protocol.Request) {
		_, _ = w.WriteString("app " + string(r.Path))
	})
	// Without sites the fallback gets everything, even what routing refuses.
	addr := startServer(t, newHandler(t, nil, Options{Fallback: app}), nil)
	if r := get(t, addr, "GET", "/healthz"); r.body != "app /healthz" {
		t.Errorf("no sites: %q", r.body)
	}
	// With sites it gets what no route matches.
	h := newHandler(t, []config.Site{{Name: "s", Hosts: []string{"static.example"}, Routes: []config.Route{
		{Prefix: "/x/", Respond: &config.Respond{Body: "x"}},
	}}}, Options{Fallback: app})
	addr = startServer(t, h, nil)
	if r := rawRequest(t, addr, "GET", "GET /x/1 HTTP/1.1\r\nHost: static.example\r\nConnection: close\r\n\r\n"); r.body != "x" {
		t.Errorf("route: %q", r.body)
	}
	if r := rawRequest(t, addr, "GET", "GET /x/1 HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n"); r.body != "app /x/1" {
		t.Errorf("other host: %q", r.body)
	}
	if r := rawRequest(t, addr, "GET", "GET /y HTTP/1.1\r\nHost: static.example\r\nConnection: close\r\n\r\n"); r.body != "app /y" {
		t.Errorf("other path: %q", r.body)
	}
}
