package test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEmbedExamples builds each embedding example, serves requests, reloads
// it with HUP and kills a worker, as an application developer would.
func TestEmbedExamples(t *testing.T) {
	cases := []struct {
		bin, path, want string
	}{
		{"hello", "/", "Hello, World!\n"},
		{"nethttp", "/", "Hello from net/http under forkd\n"},
		{"nethttp", "/hello/gopher", `"proto":"HTTP/1.1"`},
		{"nethttp", "/stats", "app: "}, // the value from WithBaseContext
	}
	for _, c := range cases {
		t.Run(c.bin+c.path, func(t *testing.T) {
			s := start(t, opts{workers: 2, bin: filepath.Join(binDir, c.bin), noSites: true})
			check := func() {
				t.Helper()
				code, body, err := get(s.addr, c.path)
				if err != nil || code != 200 || !strings.Contains(body, c.want) {
					t.Fatalf("GET %s = %d %q %v, want %q", c.path, code, body, err, c.want)
				}
			}
			check()
			gen1 := s.workers()
			s.signal(syscall.SIGHUP)
			s.waitLog(`all workers ready.*generation=2`, 15*time.Second)
			check()
			eventually(t, 10*time.Second, "generation 1 to drain", func() bool {
				for _, pid := range gen1 {
					if alive(pid) {
						return false
					}
				}
				return true
			})
			victim := s.workers()[0]
			syscall.Kill(victim, syscall.SIGKILL)
			s.waitLog(`worker died`, 5*time.Second)
			s.waitLog(`worker ready`, 5*time.Second)
			check()
			s.signal(syscall.SIGTERM)
			if code := s.waitExit(15 * time.Second); code != 0 {
				t.Fatalf("exit %d", code)
			}
		})
	}
}

// TestEmbedHooks checks the worker start/stop hooks run with slot and
// generation.
func TestEmbedHooks(t *testing.T) {
	s := start(t, opts{workers: 1, bin: filepath.Join(binDir, "hello"), noSites: true})
	s.seen(`hello worker starting: generation=1 .*slot=0`, 5*time.Second)
	code, body, err := get(s.addr, "/worker")
	if err != nil || code != 200 || body != "slot 0 generation 1\n" {
		t.Fatalf("GET /worker = %d %q %v", code, body, err)
	}
	s.signal(syscall.SIGHUP)
	s.waitLog(`hello worker starting: generation=2 .*slot=0`, 10*time.Second)
	s.waitLog(`hello worker stopping: generation=1 .*slot=0`, 10*time.Second)
}

// TestEmbedNetHTTPEcho streams a request body through the net/http adapter.
func TestEmbedNetHTTPEcho(t *testing.T) {
	s := start(t, opts{workers: 1, bin: filepath.Join(binDir, "nethttp"), noSites: true})
	payload := strings.Repeat("forkd ", 50000)
	resp, err := http.Post("http://"+s.addr+"/echo", "text/plain", strings.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != payload {
		t.Fatalf("echo: status %d, %d bytes back of %d", resp.StatusCode, len(b), len(payload))
	}
}

// TestEmbedWithSites mixes the application's handler with config.hcl
// routes: the site's routes answer first, the app answers the rest.
func TestEmbedWithSites(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "assets"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "assets", "app.css"), []byte("body{}\n"), 0o644)
	s := start(t, opts{workers: 1, bin: filepath.Join(binDir, "hello"), sites: fmt.Sprintf(`site "app" {
  hosts = ["*"]
  route "/assets/" {
    static {
      root = "%s"
    }
  }
  route "/healthz" {
    respond {
      body = "healthy\n"
    }
  }
}`, root)})
	for path, want := range map[string]string{
		"/":               "Hello, World!\n",
		"/assets/app.css": "body{}\n",
		"/healthz":        "healthy\n",
	} {
		code, body, err := get(s.addr, path)
		if err != nil || code != 200 || body != want {
			t.Errorf("GET %s = %d %q %v, want %q", path, code, body, err, want)
		}
	}
}

// TestDocsSnippets checks that every Go block the documentation
// (README.md and docs/*.md) marks with "<!-- snippet: PATH -->" is,
// verbatim, part of the file PATH, which the build (and TestEmbedExamples)
// compiles: the documentation's examples compile. docs/embedding.md must
// hold at least one.
func TestDocsSnippets(t *testing.T) {
	docs, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- snippet: (\\S+) -->\n```go\n(.*?)```")
	embedding := 0
	for _, doc := range append([]string{"../README.md"}, docs...) {
		text, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		found := re.FindAllStringSubmatch(string(text), -1)
		if doc == "../docs/embedding.md" {
			embedding = len(found)
		}
		for _, m := range found {
			src, err := os.ReadFile(filepath.Join("..", m[1]))
			if err != nil {
				t.Fatalf("%s: %v", doc, err)
			}
			if !strings.Contains(string(src), m[2]) {
				t.Errorf("%s: the snippet of %s is not in it:\n%s", doc, m[1], m[2])
			}
		}
	}
	if embedding == 0 {
		t.Error("no snippets in docs/embedding.md")
	}
}
