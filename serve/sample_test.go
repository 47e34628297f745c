package serve

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/forkd/forkd/config"
)

// TestSampleConfig serves the repository's config.hcl and www/ as the
// README runs them.
func TestSampleConfig(t *testing.T) {
	cfg, err := config.Load("../config.hcl")
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	h, err := New(cfg, Options{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// Registered before startServer's, so that it runs after the server
	// has stopped.
	t.Cleanup(func() { _ = h.(io.Closer).Close() })
	addr := startServer(t, h, nil)

	if r := get(t, addr, "GET", "/"); r.status != 200 || !strings.Contains(r.body, "forkd") {
		t.Errorf("GET /: %d %q", r.status, r.body)
	}
	if r := get(t, addr, "GET", "/healthz"); r.status != 200 || r.body != "ok\n" {
		t.Errorf("GET /healthz: %d %q", r.status, r.body)
	}
	css, err := os.ReadFile("../www/style.css")
	if err != nil {
		t.Fatal(err)
	}
	r := get(t, addr, "GET", "/style.css", "Accept-Encoding: gzip")
	if r.status != 200 || r.header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("GET /style.css: %d %v", r.status, r.header)
	}
	zr, err := gzip.NewReader(strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(plain, css) {
		t.Errorf("www/style.css.gz does not match www/style.css (%v)", err)
	}
}
