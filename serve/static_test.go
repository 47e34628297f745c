package serve

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

const secret = "TOP-SECRET-8f2c1d"

// staticFixture lays out a root and a secret outside it:
//
//	dir/secret.txt            outside the root
//	dir/root/index.html
//	dir/root/file.txt
//	dir/root/style.css(.gz)
//	dir/root/sub/index.html
//	dir/root/empty/           no index
//	dir/root/.env, .hidden/x  dotfiles
//	dir/root/escape -> ../secret.txt, abs -> /dir/secret.txt, updir -> ..
//	dir/root/inside -> file.txt
type staticFixture struct {
	dir, root string
	css       []byte
	cssGz     []byte
	big       []byte
}

func newStaticFixture(t *testing.T) *staticFixture {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	f := &staticFixture{dir: dir, root: root}
	write := func(name string, data []byte) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("secret.txt", []byte(secret))
	write("root/index.html", []byte("<h1>home</h1>"))
	write("root/file.txt", []byte("hello file"))
	f.css = bytes.Repeat([]byte("body { color: red; }\n"), 50)
	write("root/style.css", f.css)
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	_, _ = zw.Write(f.css)
	_ = zw.Close()
	f.cssGz = zb.Bytes()
	write("root/style.css.gz", f.cssGz)
	f.big = make([]byte, 100_000)
	for i := range f.big {
		f.big[i] = byte(i * 7)
	}
	write("root/big.bin", f.big)
	write("root/sub/index.html", []byte("sub index"))
	write("root/.env", []byte(secret))
	write("root/.hidden/x.txt", []byte(secret))
	write("root/pic.PNG", []byte("\x89PNG"))
	write("root/app.js", []byte("1"))
	write("root/data.json", []byte("{}"))
	write("root/empty.txt", nil)
	if err := os.Mkdir(filepath.Join(root, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{
		"escape": "../secret.txt",
		"abs":    filepath.Join(dir, "secret.txt"),
		"updir":  "..",
		"inside": "file.txt",
		"proc":   "/proc/self/root" + filepath.Join(dir, "secret.txt"),
	} {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *staticFixture) serve(t *testing.T, st config.Static) string {
	t.Helper()
	st.Root = f.root
	h := newHandler(t, []config.Site{{Name: "s", Hosts: []string{"*"}, Routes: []config.Route{
		{Prefix: "/", Static: &st},
		{Prefix: "/healthz", Respond: &config.Respond{Status: 200, Body: "ok\n"}},
	}}}, Options{})
	return startServer(t, h, nil)
}

func TestStaticTraversal(t *testing.T) {
	t.Run("openat2", func(t *testing.T) { testStaticTraversal(t, false) })
	t.Run("os.Root", func(t *testing.T) { testStaticTraversal(t, true) })
}

// testStaticTraversal tries every way out of the root; osRoot forces the
// fallback used where openat2 is missing.
func testStaticTraversal(t *testing.T, osRoot bool) {
	f := newStaticFixture(t)
	st := config.Static{Gzip: true, Root: f.root}
	h := newHandler(t, []config.Site{{Name: "s", Routes: []config.Route{{Prefix: "/", Static: &st}}}}, Options{})
	if osRoot {
		s := h.(*handler).router.any.routes[0].h.(*static)
		root, err := os.OpenRoot(s.rootPath)
		if err != nil {
			t.Fatal(err)
		}
		s.root = root
	}
	addr := startServer(t, h, nil)
	targets := []string{
		"/../secret.txt",
		"/../../../../../../etc/passwd",
		"/%2e%2e/secret.txt",
		"/%2E%2E/%2e%2e/secret.txt",
		"/..%2fsecret.txt",
		"/..%2f..%2fsecret.txt",
		"/%2e%2e%2fsecret.txt",
		"/sub%2f..%2f..%2fsecret.txt",
		"/sub%2findex.html",
		`/\..\secret.txt`,
		`/..\secret.txt`,
		"/%5c..%5csecret.txt",
		"/file.txt%00",
		"/file.txt%00.html",
		"/escape",
		"/abs",
		"/updir/secret.txt",
		"/updir",
		"/proc",
		"/.env",
		"/.hidden/x.txt",
		"/%2eenv",
		"/sub/../.env",
		"/.hidden/",
		"/./.env",
		"//.env",
	}
	for _, target := range targets {
		r := get(t, addr, "GET", target)
		if r.status != 400 && r.status != 403 && r.status != 404 {
			t.Errorf("GET %s: status %d, want 400/403/404", target, r.status)
		}
		if strings.Contains(r.body, secret) || strings.Contains(r.body, "root:") {
			t.Errorf("GET %s: body leaks the secret: %q", target, r.body)
		}
	}
	// Raw NUL bytes and absolute-form targets, written straight on the wire.
	for _, req := range []string{
		"GET /file.txt\x00 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
		"GET /../secret.txt\x00 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
		"GET http://a/../secret.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
		"GET http://a/%2e%2e/secret.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
	} {
		r := rawRequest(t, addr, "GET", req)
		if r.status < 400 || r.status >= 500 || strings.Contains(r.body, secret) {
			t.Errorf("%q: status %d body %q", req, r.status, r.body)
		}
	}
	// A symlink that stays inside the root is followed.
	if r := get(t, addr, "GET", "/inside"); r.status != 200 || r.body != "hello file" {
		t.Errorf("GET /inside: %d %q", r.status, r.body)
	}
}

// TestStaticOpenBeneath checks the resolver itself, without the path
// cleaning in front of it.
func TestStaticOpenBeneath(t *testing.T) {
	f := newStaticFixture(t)
	for _, osRoot := range []bool{false, true} {
		s, err := newStatic(&config.Static{Root: f.root}, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		if osRoot {
			if s.root, err = os.OpenRoot(f.root); err != nil {
				t.Fatal(err)
			}
		}
		for _, rel := range []string{"../secret.txt", "sub/../../secret.txt", "escape", "abs", "updir/secret.txt", "proc", "/etc/passwd"} {
			if of, err := s.open(rel); err == nil {
				of.close()
				t.Errorf("osRoot=%v: open(%q) succeeded", osRoot, rel)
			} else if st := s.openErrorStatus(err); st != 404 {
				t.Errorf("osRoot=%v: open(%q): %v maps to %d, want 404", osRoot, rel, err, st)
			}
		}
		if of, err := s.open("inside"); err != nil {
			t.Errorf("osRoot=%v: open(inside): %v", osRoot, err)
		} else {
			of.close()
		}
		_ = s.Close()
	}
}

func TestStaticDotfilesAllowed(t *testing.T) {
	f := newStaticFixture(t)
	addr := f.serve(t, config.Static{Dotfiles: true})
	if r := get(t, addr, "GET", "/.hidden/x.txt"); r.status != 200 || r.body != secret {
		t.Errorf("dotfiles = true: %d %q", r.status, r.body)
	}
	// Still nothing outside the root.
	if r := get(t, addr, "GET", "/../secret.txt"); r.status != 404 {
		t.Errorf("GET /../secret.txt: %d", r.status)
	}
}

func TestStaticBasics(t *testing.T) {
	f := newStaticFixture(t)
	addr := f.serve(t, config.Static{Gzip: true})

	r := get(t, addr, "GET", "/")
	if r.status != 200 || r.body != "<h1>home</h1>" || r.header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("GET /: %d %q %v", r.status, r.body, r.header)
	}
	if r := get(t, addr, "GET", "/sub/"); r.status != 200 || r.body != "sub index" {
		t.Errorf("GET /sub/: %d %q", r.status, r.body)
	}
	r = get(t, addr, "GET", "/sub?x=1")
	if r.status != 301 || r.header.Get("Location") != "/sub/?x=1" {
		t.Errorf("GET /sub: %d Location %q", r.status, r.header.Get("Location"))
	}
	if r := get(t, addr, "GET", "/empty/"); r.status != 404 {
		t.Errorf("GET /empty/ (no index): %d, want 404", r.status)
	}
	if r := get(t, addr, "GET", "/file.txt/"); r.status != 404 {
		t.Errorf("GET /file.txt/: %d, want 404", r.status)
	}
	if r := get(t, addr, "GET", "/missing"); r.status != 404 {
		t.Errorf("GET /missing: %d", r.status)
	}
	if r := get(t, addr, "GET", "/healthz"); r.status != 200 || r.body != "ok\n" {
		t.Errorf("GET /healthz: %d %q", r.status, r.body)
	}
	if r := get(t, addr, "GET", "/empty.txt"); r.status != 200 || r.body != "" || r.header.Get("Content-Length") != "0" {
		t.Errorf("GET /empty.txt: %d %q %v", r.status, r.body, r.header)
	}

	r = get(t, addr, "GET", "/file.txt")
	if r.status != 200 || r.body != "hello file" {
		t.Fatalf("GET /file.txt: %d %q", r.status, r.body)
	}
	for k, want := range map[string]string{
		"Content-Type":   "text/plain; charset=utf-8",
		"Content-Length": "10",
		"Accept-Ranges":  "bytes",
		"Vary":           "Accept-Encoding",
	} {
		if got := r.header.Get(k); got != want {
			t.Errorf("GET /file.txt: %s = %q, want %q", k, got, want)
		}
	}
	st, _ := os.Stat(filepath.Join(f.root, "file.txt"))
	if lm := r.header.Get("Last-Modified"); lm != st.ModTime().UTC().Format(http.TimeFormat) {
		t.Errorf("Last-Modified = %q", lm)
	}
	if et := r.header.Get("ETag"); !strings.HasPrefix(et, `"`) || !strings.HasSuffix(et, `"`) || len(et) < 4 {
		t.Errorf("ETag = %q", et)
	}

	h := get(t, addr, "HEAD", "/file.txt")
	if h.status != 200 || h.body != "" || h.header.Get("Content-Length") != "10" || h.header.Get("ETag") != r.header.Get("ETag") {
		t.Errorf("HEAD /file.txt: %d %q %v", h.status, h.body, h.header)
	}

	m := get(t, addr, "POST", "/file.txt", "Content-Length: 0")
	if m.status != 405 || m.header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d Allow %q", m.status, m.header.Get("Allow"))
	}

	for path, want := range map[string]string{
		"/pic.PNG":   "image/png",
		"/app.js":    "text/javascript; charset=utf-8",
		"/data.json": "application/json",
		"/style.css": "text/css; charset=utf-8",
		"/big.bin":   "application/octet-stream",
	} {
		if got := get(t, addr, "HEAD", path).header.Get("Content-Type"); got != want {
			t.Errorf("HEAD %s: Content-Type %q, want %q", path, got, want)
		}
	}
}

func TestStaticConditional(t *testing.T) {
	f := newStaticFixture(t)
	addr := f.serve(t, config.Static{})
	r := get(t, addr, "GET", "/file.txt")
	etag, lm := r.header.Get("ETag"), r.header.Get("Last-Modified")

	check := func(name string, want int, headers ...string) {
		t.Helper()
		r := get(t, addr, "GET", "/file.txt", headers...)
		if r.status != want {
			t.Errorf("%s: status %d, want %d", name, r.status, want)
		}
		if want == 304 {
			if r.body != "" || r.header.Get("ETag") != etag {
				t.Errorf("%s: 304 with body %q ETag %q", name, r.body, r.header.Get("ETag"))
			}
		}
	}
	check("If-None-Match match", 304, "If-None-Match: "+etag)
	check("If-None-Match weak", 304, "If-None-Match: W/"+etag)
	check("If-None-Match list", 304, `If-None-Match: "nope", `+etag)
	check("If-None-Match star", 304, "If-None-Match: *")
	check("If-None-Match miss", 200, `If-None-Match: "nope"`)
	check("If-Modified-Since same", 304, "If-Modified-Since: "+lm)
	check("If-Modified-Since later", 304, "If-Modified-Since: "+time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
	check("If-Modified-Since earlier", 200, "If-Modified-Since: "+time.Unix(0, 0).UTC().Format(http.TimeFormat))
	// If-None-Match wins over If-Modified-Since (RFC 9110 section 13.2.2).
	check("INM miss + IMS", 200, `If-None-Match: "nope"`, "If-Modified-Since: "+lm)
	check("If-Match miss", 412, `If-Match: "nope"`)
	check("If-Match hit", 200, "If-Match: "+etag)

	// A changed file gets a new validator.
	future := time.Now().Add(2 * time.Hour)
	if err := os.Chtimes(filepath.Join(f.root, "file.txt"), future, future); err != nil {
		t.Fatal(err)
	}
	check("If-None-Match after change", 200, "If-None-Match: "+etag)
}

func TestStaticRange(t *testing.T) {
	f := newStaticFixture(t)
	addr := f.serve(t, config.Static{})
	size := len(f.big)
	sz := strconv.Itoa(size)

	r := get(t, addr, "GET", "/big.bin", "Range: bytes=10-19")
	if r.status != 206 || r.body != string(f.big[10:20]) || r.header.Get("Content-Range") != "bytes 10-19/"+sz || r.header.Get("Content-Length") != "10" {
		t.Errorf("bytes=10-19: %d %q %v", r.status, r.header.Get("Content-Range"), r.header)
	}
	r = get(t, addr, "GET", "/big.bin", "Range: bytes=99990-")
	if r.status != 206 || r.body != string(f.big[99990:]) || r.header.Get("Content-Range") != "bytes 99990-99999/"+sz {
		t.Errorf("bytes=99990-: %d %q", r.status, r.header.Get("Content-Range"))
	}
	r = get(t, addr, "GET", "/big.bin", "Range: bytes=-5")
	if r.status != 206 || r.body != string(f.big[size-5:]) || r.header.Get("Content-Range") != "bytes 99995-99999/"+sz {
		t.Errorf("bytes=-5: %d %q", r.status, r.header.Get("Content-Range"))
	}
	r = get(t, addr, "GET", "/big.bin", "Range: bytes=100000-")
	if r.status != 416 || r.header.Get("Content-Range") != "bytes */"+sz || strings.Contains(r.body, string(f.big[:32])) {
		t.Errorf("unsatisfiable: %d %q", r.status, r.header.Get("Content-Range"))
	}
	r = get(t, addr, "GET", "/big.bin", "Range: bytes=0-1,5-6")
	if r.status != 200 || r.body != string(f.big) {
		t.Errorf("multiple ranges: %d, len %d, want 200 with the whole file", r.status, len(r.body))
	}
	r = get(t, addr, "GET", "/big.bin", "Range: bytes=5-1")
	if r.status != 200 || len(r.body) != size {
		t.Errorf("invalid range: %d", r.status)
	}
	h := get(t, addr, "HEAD", "/big.bin", "Range: bytes=0-9")
	if h.status != 206 || h.body != "" || h.header.Get("Content-Length") != "10" {
		t.Errorf("HEAD range: %d %v", h.status, h.header)
	}
	etag := get(t, addr, "HEAD", "/big.bin").header.Get("ETag")
	if r := get(t, addr, "GET", "/big.bin", "Range: bytes=0-9", "If-Range: "+etag); r.status != 206 {
		t.Errorf("If-Range match: %d", r.status)
	}
	if r := get(t, addr, "GET", "/big.bin", "Range: bytes=0-9", `If-Range: "stale"`); r.status != 200 || len(r.body) != size {
		t.Errorf("If-Range mismatch: %d", r.status)
	}
}

func TestStaticGzip(t *testing.T) {
	f := newStaticFixture(t)
	addr := f.serve(t, config.Static{Gzip: true})

	r := get(t, addr, "GET", "/style.css", "Accept-Encoding: br, gzip")
	if r.status != 200 || r.body != string(f.cssGz) {
		t.Fatalf("gzip: %d, %d bytes, want the .gz file", r.status, len(r.body))
	}
	if r.header.Get("Content-Encoding") != "gzip" || r.header.Get("Vary") != "Accept-Encoding" ||
		r.header.Get("Content-Type") != "text/css; charset=utf-8" || r.header.Get("Content-Length") != strconv.Itoa(len(f.cssGz)) {
		t.Errorf("gzip headers: %v", r.header)
	}
	plain := get(t, addr, "GET", "/style.css")
	if plain.body != string(f.css) || plain.header.Get("Content-Encoding") != "" || plain.header.Get("Vary") != "Accept-Encoding" {
		t.Errorf("identity: %d bytes, headers %v", len(plain.body), plain.header)
	}
	if plain.header.Get("ETag") == r.header.Get("ETag") {
		t.Errorf("both variants have ETag %s", plain.header.Get("ETag"))
	}
	if r := get(t, addr, "GET", "/style.css", "Accept-Encoding: gzip;q=0"); r.body != string(f.css) {
		t.Errorf("gzip;q=0 got the gzip variant")
	}
	if r := get(t, addr, "GET", "/style.css", "Accept-Encoding: gzip", "If-None-Match: "+r.header.Get("ETag")); r.status != 304 {
		t.Errorf("304 on gzip variant: %d", r.status)
	}
	// The .gz file itself is an ordinary file.
	if r := get(t, addr, "GET", "/style.css.gz", "Accept-Encoding: gzip"); r.body != string(f.cssGz) ||
		r.header.Get("Content-Encoding") != "" || r.header.Get("Content-Type") != "application/gzip" {
		t.Errorf("GET style.css.gz: %v", r.header)
	}

	// With gzip off the variant is never used.
	addr2 := f.serve(t, config.Static{Gzip: false})
	if r := get(t, addr2, "GET", "/style.css", "Accept-Encoding: gzip"); r.body != string(f.css) || r.header.Get("Vary") != "" {
		t.Errorf("gzip = false: got %d bytes, Vary %q", len(r.body), r.header.Get("Vary"))
	}
}

func TestStaticKeepAlive(t *testing.T) {
	// Many files over one connection: sendfile bodies and framing line up.
	f := newStaticFixture(t)
	addr := f.serve(t, config.Static{Gzip: true})
	c := httpClient(t)
	for i := 0; i < 20; i++ {
		resp, err := c.Get("http://" + addr + "/big.bin")
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		_, err = b.ReadFrom(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(b.Bytes(), f.big) {
			t.Fatalf("request %d: err %v, %d bytes", i, err, b.Len())
		}
	}
}

func TestStaticNewErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	_ = os.WriteFile(file, nil, 0o644)
	for _, st := range []config.Static{
		{Root: filepath.Join(dir, "missing")},
		{Root: file},
		{Root: ""},
		{Root: dir, Index: []string{"../x"}},
	} {
		st := st
		_, err := New(&config.Config{Sites: []config.Site{{Name: "s", Routes: []config.Route{{Prefix: "/", Static: &st}}}}}, Options{})
		if err == nil {
			t.Errorf("New accepted static %+v", st)
		}
	}
}

// TestStaticCacheFollowsChanges serves a file from the open-file cache and
// then changes it every way a deployment does: each request must see the
// file as it is now, and a name turned into a way out of the root must not
// keep serving the descriptor opened before.
func TestStaticCacheFollowsChanges(t *testing.T) {
	f := newStaticFixture(t)
	addr := f.serve(t, config.Static{})
	path := filepath.Join(f.root, "c.txt")
	want := func(step, body string, status int) {
		t.Helper()
		for range 2 { // the second request is a cache hit when nothing changed
			r := get(t, addr, "GET", "/c.txt")
			if r.status != status || (status == 200 && r.body != body) {
				t.Fatalf("%s: %d %q, want %d %q", step, r.status, r.body, status, body)
			}
		}
	}
	if err := os.WriteFile(path, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	want("new file", "one", 200)

	// Rewritten in place, longer.
	if err := os.WriteFile(path, []byte("two two"), 0o644); err != nil {
		t.Fatal(err)
	}
	want("rewritten", "two two", 200)

	// Replaced by rename, same size.
	tmp := filepath.Join(f.root, "c.tmp")
	if err := os.WriteFile(tmp, []byte("3hree 3"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	want("renamed over", "3hree 3", 200)

	// Turned into a symlink out of the root.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../secret.txt", path); err != nil {
		t.Fatal(err)
	}
	want("symlink out", "", 404)

	// Back to a file, then removed.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("four"), 0o644); err != nil {
		t.Fatal(err)
	}
	want("file again", "four", 200)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	want("removed", "", 404)
}

// TestFileCacheBounds fills the cache past its size and closes it while a
// file is still in use: descriptors close with their last user.
func TestFileCacheBounds(t *testing.T) {
	dir := t.TempDir()
	for i := range fileCacheSize + 8 {
		if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := newStatic(&config.Static{Root: dir}, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	if s.cache == nil {
		t.Skip("openat2 unavailable: no cache")
	}
	var held *openFile
	for i := range fileCacheSize + 8 {
		of, err := s.open(strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			held = of
			continue
		}
		of.close()
	}
	if n := len(s.cache.files); n > fileCacheSize {
		t.Errorf("cache holds %d files, want at most %d", n, fileCacheSize)
	}
	again, err := s.open("1")
	if err != nil {
		t.Fatal(err)
	}
	again.close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(held.fd, &st); err != nil || !sameFile(&st, &held.st) {
		t.Fatalf("a file in use was closed under its request: %v", err)
	}
	held.close()
	if held.refs != 0 {
		t.Errorf("refs = %d after the last close, want 0", held.refs)
	}
}

// TestStaticCloseWaitsForRequests holds the root as a request being served
// does, closes the handler, and checks that the root stays open until that
// request lets go: a descriptor closed under a request would fail its opens
// or resolve them in whatever directory reused the number.
func TestStaticCloseWaitsForRequests(t *testing.T) {
	f := newStaticFixture(t)
	s, err := newStatic(&config.Static{Root: f.root}, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	if !s.acquire() {
		t.Fatal("acquire refused on an open root")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s.acquire() {
		t.Fatal("acquire allowed after Close")
	}
	of, err := s.open("file.txt")
	if err != nil {
		t.Fatalf("open while a request holds the root after Close: %v", err)
	}
	of.close()
	if err := s.release(); err != nil {
		t.Fatal(err)
	}
	if s.dirfd != -1 {
		t.Fatalf("root descriptor %d still open after the last request", s.dirfd)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestStaticCloseUnderLoad closes the handler while clients keep
// requesting: every answer is the file or, once closed, 503, never an
// error from a descriptor closed under the request (and the race detector
// sees no unsynchronised use of it).
func TestStaticCloseUnderLoad(t *testing.T) {
	f := newStaticFixture(t)
	st := config.Static{Root: f.root}
	h := newHandler(t, []config.Site{{Name: "s", Hosts: []string{"*"}, Routes: []config.Route{
		{Prefix: "/", Static: &st},
	}}}, Options{})
	addr := startServer(t, h, nil)

	const clients = 4
	closed := make(chan struct{})
	started := make(chan struct{}, clients)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := httpClient(t)
			first := true
			after := 0 // requests sent after Close returned
			for after < 3 {
				select {
				case <-closed:
					after++
				default:
				}
				resp, err := c.Get("http://" + addr + "/file.txt")
				if err != nil {
					t.Errorf("GET: %v", err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode == 200 && string(body) == "hello file":
				case resp.StatusCode == 503:
				default:
					t.Errorf("GET /file.txt: %d %q", resp.StatusCode, body)
					return
				}
				if after > 0 && resp.StatusCode != 503 {
					t.Errorf("GET after Close: %d, want 503", resp.StatusCode)
					return
				}
				if first {
					first = false
					started <- struct{}{}
				}
			}
		}()
	}
	for range clients {
		<-started
	}
	if err := h.(io.Closer).Close(); err != nil {
		t.Fatal(err)
	}
	close(closed)
	wg.Wait()
}
