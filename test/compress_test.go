package test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCompressCurl fetches static (cached, and compressed as it is sent), respond and proxy (fixed length and
// chunked with trailers) responses through a real master with curl
// --compressed, over HTTP/1.1 and HTTP/2 (h2c), once per coding: each decodes, with curl's decoders, to
// the bytes served uncompressed.
func TestCompressCurl(t *testing.T) {
	text := strings.Repeat("forkd compresses this line for curl to decode. ", 100)
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "static"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "static", "app.js"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// Compressed as it is sent (no cache), and long enough to be chunked.
	var big strings.Builder
	for i := range 6000 {
		fmt.Fprintf(&big, "var v%d=f(%d);\n", i, i*7919%10007)
	}
	if err := os.Mkdir(filepath.Join(root, "big"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "big", "app.js"), []byte(big.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/up/chunked" {
			w.Header().Set("Trailer", "X-Done")
			for i := 0; i < len(text); i += 700 {
				io.WriteString(w, text[i:min(i+700, len(text))])
				w.(http.Flusher).Flush()
			}
			w.Header().Set("X-Done", "yes")
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(text)))
		io.WriteString(w, text)
	}))
	t.Cleanup(up.Close)
	s := start(t, opts{listen: "  protocols = [\"http/1.1\", \"h2c\"]\n", sites: fmt.Sprintf(`site "c" {
  compress {
    cache = "1MiB"
  }
  route "/static/" {
    static {
      root = %q
    }
  }
  route "/big/" {
    compress {
      cache  = "0"
      levels = { gzip = 1 }
    }
    static {
      root = %q
    }
  }
  route "/respond" {
    respond {
      body    = %q
      headers = { "Content-Type" = "text/plain" }
    }
  }
  route "/up/" {
    proxy {
      upstreams = [%q]
    }
  }
}
`, root, root, text, strings.TrimPrefix(up.URL, "http://"))})
	static := "/static/app.js"
	for _, proto := range []string{"--http1.1", "--http2-prior-knowledge"} {
		for _, path := range []string{static, "/respond", "/up/fixed", "/up/chunked"} {
			for _, enc := range []string{"gzip", "br", "zstd", "identity"} {
				curlCompressed(t, s.addr, proto, path, enc, text)
			}
		}
		for _, enc := range []string{"gzip", "br", "zstd"} {
			curlCompressed(t, s.addr, proto, "/big/app.js", enc, big.String())
		}
	}
}

// curlCompressed fetches path with curl --compressed over proto, asking
// for enc, and checks that curl decodes the response to text.
func curlCompressed(t *testing.T, addr, proto, path, enc, text string) {
	t.Helper()
	hdrs := filepath.Join(t.TempDir(), "h")
	out, err := exec.Command("curl", "-sS", "-m", "10", proto, "--compressed", "-H", "Accept-Encoding: "+enc,
		"-D", hdrs, "http://"+addr+path).Output()
	if err != nil {
		t.Fatalf("curl %s %s %s: %v", proto, enc, path, err)
	}
	h, _ := os.ReadFile(hdrs)
	head := strings.ToLower(string(h))
	if string(out) != text {
		t.Fatalf("%s %s %s: curl decoded %d bytes, want %d\n%s", proto, enc, path, len(out), len(text), h)
	}
	want := "content-encoding: " + enc
	if enc == "identity" {
		if strings.Contains(head, "content-encoding") {
			t.Errorf("%s %s %s: %s", proto, enc, path, h)
		}
	} else if !strings.Contains(head, want) {
		t.Errorf("%s %s %s: no %q in\n%s", proto, enc, path, want, h)
	}
	if !strings.Contains(head, "vary: accept-encoding") {
		t.Errorf("%s %s %s: no Vary in\n%s", proto, enc, path, h)
	}
	if path == "/up/chunked" && enc != "identity" && !strings.Contains(head, "x-done: yes") {
		t.Errorf("%s %s %s: no trailer in\n%s", proto, enc, path, h)
	}
}
