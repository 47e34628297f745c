package serve

import (
	"sync/atomic"
	"testing"

	"github.com/forkd/forkd/config"
)

func TestHealth(t *testing.T) {
	var draining atomic.Bool
	h := newHandler(t, []config.Site{{Name: "h", Routes: []config.Route{
		{Prefix: "/ready", Health: &config.Health{}},
		{Prefix: "/", Respond: &config.Respond{Body: "page\n"}},
	}}}, Options{Draining: &draining})
	addr := startServer(t, h, nil)

	if r := get(t, addr, "GET", "/ready"); r.status != 200 || r.body != "ok\n" || r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("GET /ready: %d %q %v", r.status, r.body, r.header)
	}
	if r := get(t, addr, "HEAD", "/ready"); r.status != 200 || r.body != "" {
		t.Errorf("HEAD /ready: %d %q", r.status, r.body)
	}
	draining.Store(true)
	if r := get(t, addr, "GET", "/ready"); r.status != 503 || r.body != "draining\n" {
		t.Errorf("GET /ready while draining: %d %q", r.status, r.body)
	}
	if r := get(t, addr, "OPTIONS", "/ready"); r.status != 503 {
		t.Errorf("OPTIONS /ready while draining: %d", r.status)
	}
	// Everything else is served as usual while draining.
	if r := get(t, addr, "GET", "/x"); r.status != 200 || r.body != "page\n" {
		t.Errorf("GET /x while draining: %d %q", r.status, r.body)
	}

	// Without a flag a health route is always up.
	h2 := newHandler(t, []config.Site{{Name: "h", Routes: []config.Route{{Prefix: "/ready", Health: &config.Health{}}}}}, Options{})
	if r := get(t, startServer(t, h2, nil), "GET", "/ready"); r.status != 200 {
		t.Errorf("GET /ready without a flag: %d", r.status)
	}
}

// TestWelcomeHealthDrains: the built-in /healthz (no sites) is a health
// route too.
func TestWelcomeHealthDrains(t *testing.T) {
	var draining atomic.Bool
	addr := startServer(t, newHandler(t, nil, Options{Draining: &draining}), nil)
	if r := get(t, addr, "GET", "/healthz"); r.status != 200 || r.body != "ok\n" {
		t.Errorf("GET /healthz: %d %q", r.status, r.body)
	}
	draining.Store(true)
	if r := get(t, addr, "GET", "/healthz"); r.status != 503 {
		t.Errorf("GET /healthz while draining: %d", r.status)
	}
	if r := get(t, addr, "GET", "/"); r.status != 200 {
		t.Errorf("GET / while draining: %d", r.status)
	}
}
