package serve

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/forkd/forkd/config"
)

// decode decodes body of Content-Encoding enc with Go's decoders.
func decode(t testing.TB, enc string, body []byte) []byte {
	t.Helper()
	var r io.Reader
	switch enc {
	case "", "identity":
		return body
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		r = zr
	case "br":
		r = brotli.NewReader(bytes.NewReader(body))
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("zstd: %v", err)
		}
		defer zr.Close()
		r = zr
	default:
		t.Fatalf("unknown Content-Encoding %q", enc)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decoding %s: %v", enc, err)
	}
	return out
}

func compressBlock() *config.Compress {
	return &config.Compress{Algorithms: config.DefaultCompressAlgorithms, Types: config.DefaultCompressTypes,
		MinLength: config.DefaultCompressMinLength, Cache: config.DefaultCompressCache}
}

// TestStaticCompress: a compressible file is compressed with the coding
// negotiated, decodes to the file, has a Content-Length, an ETag of its
// own, Vary, and 304s with that ETag; ranges get the identity bytes.
func TestStaticCompress(t *testing.T) {
	f := newStaticFixture(t)
	st := config.Static{Root: f.root}
	h := newHandler(t, []config.Site{{Name: "s", Compress: compressBlock(), Routes: []config.Route{{Prefix: "/", Static: &st}}}}, Options{})
	addr := startServer(t, h, nil)

	plain := get(t, addr, "GET", "/style.css")
	if plain.body != string(f.css) || plain.header.Get("Content-Encoding") != "" || plain.header.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("identity: %d bytes, %v", len(plain.body), plain.header)
	}
	idTag := plain.header.Get("ETag")
	tags := map[string]bool{idTag: true}
	for _, tc := range []struct{ ae, want string }{
		{"gzip", "gzip"}, {"br", "br"}, {"zstd", "zstd"}, {"gzip, br, zstd", "zstd"},
		{"gzip;q=1, br;q=0.5", "gzip"}, {"*", "zstd"}, {"zstd;q=0, *", "br"},
	} {
		for range 2 { // compressed, then from the cache
			r := get(t, addr, "GET", "/style.css", "Accept-Encoding: "+tc.ae)
			enc := r.header.Get("Content-Encoding")
			if r.status != 200 || enc != tc.want {
				t.Fatalf("%q: %d, Content-Encoding %q, want %q", tc.ae, r.status, enc, tc.want)
			}
			if got := decode(t, enc, []byte(r.body)); !bytes.Equal(got, f.css) {
				t.Fatalf("%q: decodes to %d bytes, want the file's %d", tc.ae, len(got), len(f.css))
			}
			if r.header.Get("Content-Length") != strconv.Itoa(len(r.body)) || r.header.Get("Vary") != "Accept-Encoding" ||
				r.header.Get("Content-Type") != "text/css; charset=utf-8" {
				t.Errorf("%q: headers %v", tc.ae, r.header)
			}
			tag := r.header.Get("ETag")
			if tag == idTag || !strings.HasSuffix(tag, "-"+strings.TrimPrefix(codingOf(enc).ext(), ".")+`"`) {
				t.Errorf("%q: ETag %s beside identity's %s", tc.ae, tag, idTag)
			}
			tags[tag] = true
			nm := get(t, addr, "GET", "/style.css", "Accept-Encoding: "+tc.ae, "If-None-Match: "+tag)
			if nm.status != 304 || nm.header.Get("ETag") != tag || nm.header.Get("Vary") != "Accept-Encoding" {
				t.Errorf("%q: If-None-Match its ETag: %d %v", tc.ae, nm.status, nm.header)
			}
			// The identity's tag does not match the variant.
			if nm := get(t, addr, "GET", "/style.css", "Accept-Encoding: "+tc.ae, "If-None-Match: "+idTag); nm.status != 200 {
				t.Errorf("%q: If-None-Match identity's ETag: %d", tc.ae, nm.status)
			}
			hd := get(t, addr, "HEAD", "/style.css", "Accept-Encoding: "+tc.ae)
			if hd.header.Get("Content-Length") != r.header.Get("Content-Length") || hd.body != "" {
				t.Errorf("%q: HEAD: %v", tc.ae, hd.header)
			}
		}
	}
	if len(tags) != 4 {
		t.Errorf("ETags %v: want one per coding and identity", tags)
	}
	// A range is of the identity bytes, If-Range with the identity's tag.
	r := get(t, addr, "GET", "/style.css", "Accept-Encoding: gzip", "Range: bytes=5-14", "If-Range: "+idTag)
	if r.status != 206 || r.body != string(f.css[5:15]) || r.header.Get("Content-Encoding") != "" || r.header.Get("Vary") != "Accept-Encoding" {
		t.Errorf("range: %d %q %v", r.status, r.body, r.header)
	}
	// refused, not offered, too small, not a listed type: identity.
	for _, tc := range []struct{ path, ae string }{
		{"/style.css", "gzip;q=0"}, {"/style.css", "deflate"}, {"/style.css", "gzip;q=0.5, identity"},
		{"/file.txt", "gzip"}, {"/big.bin", "gzip"},
	} {
		r := get(t, addr, "GET", tc.path, "Accept-Encoding: "+tc.ae)
		if r.status != 200 || r.header.Get("Content-Encoding") != "" {
			t.Errorf("%s %q: %d, Content-Encoding %q", tc.path, tc.ae, r.status, r.header.Get("Content-Encoding"))
		}
	}
	if r := get(t, addr, "GET", "/big.bin", "Accept-Encoding: gzip"); r.header.Get("Vary") != "" {
		t.Errorf("a type never compressed says Vary: %q", r.header.Get("Vary"))
	}
}

// TestStaticCompressCache: a hot file is compressed once per worker; an
// edited file is compressed again, never answered from the cache.
func TestStaticCompressCache(t *testing.T) {
	f := newStaticFixture(t)
	st := config.Static{Root: f.root}
	h := newHandler(t, []config.Site{{Name: "s", Compress: compressBlock(), Routes: []config.Route{{Prefix: "/", Static: &st}}}}, Options{})
	addr := startServer(t, h, nil)
	cache := h.(*handler).router.any.routes[0].h.(*static).comp.cache

	for range 3 {
		get(t, addr, "GET", "/style.css", "Accept-Encoding: br")
	}
	if n := cache.len(); n != 1 {
		t.Fatalf("%d variants cached after 3 requests, want 1", n)
	}
	edited := bytes.Repeat([]byte("p { margin: 0 }\n"), 40)
	p := filepath.Join(f.root, "style.css")
	if err := os.WriteFile(p, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(p, later, later); err != nil {
		t.Fatal(err)
	}
	r := get(t, addr, "GET", "/style.css", "Accept-Encoding: br")
	if got := decode(t, r.header.Get("Content-Encoding"), []byte(r.body)); !bytes.Equal(got, edited) {
		t.Fatalf("after an edit: %q", got)
	}
	// The old version's variant ages out; bounded by cache.
	c := newVariantCache(10)
	c.put(variantKey{ino: 1}, make([]byte, 6))
	c.put(variantKey{ino: 2}, make([]byte, 6))
	c.put(variantKey{ino: 3}, make([]byte, 11))
	if _, ok := c.get(variantKey{ino: 1}); ok || c.used != 6 || c.lru.Len() != 1 {
		t.Errorf("cache of 10 bytes holds %d bytes in %d entries", c.used, c.lru.Len())
	}
}

// TestStaticPrecompressed: precompressed files in the order asked, not
// when older than the file; gzip = true is ["gzip"].
func TestStaticPrecompressed(t *testing.T) {
	f := newStaticFixture(t)
	write := func(name string, b []byte, mtime time.Time) {
		p := filepath.Join(f.root, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	write("style.css", f.css, now)
	write("style.css.gz", f.cssGz, now)
	write("style.css.br", []byte("BR"), now.Add(time.Second))
	write("style.css.zst", []byte("ZST"), now.Add(-time.Second)) // stale
	addr := f.serve(t, config.Static{Precompressed: []string{"br", "zstd", "gzip"}})
	for _, tc := range []struct{ ae, enc, body string }{
		{"gzip, br, zstd", "br", "BR"},
		{"gzip, zstd", "gzip", string(f.cssGz)}, // style.css.zst is older
		{"zstd", "", string(f.css)},
		{"gzip;q=0.5, br;q=0.4", "gzip", string(f.cssGz)},
		{"", "", string(f.css)},
	} {
		r := get(t, addr, "GET", "/style.css", "Accept-Encoding: "+tc.ae)
		if r.body != tc.body || r.header.Get("Content-Encoding") != tc.enc || r.header.Get("Vary") != "Accept-Encoding" ||
			r.header.Get("Content-Length") != strconv.Itoa(len(tc.body)) {
			t.Errorf("%q: %q %v, want %q", tc.ae, r.body, r.header, tc.enc)
		}
		if tag := r.header.Get("ETag"); tc.enc != "" {
			if nm := get(t, addr, "GET", "/style.css", "Accept-Encoding: "+tc.ae, "If-None-Match: "+tag); nm.status != 304 {
				t.Errorf("%q: If-None-Match %s: %d", tc.ae, tag, nm.status)
			}
		}
	}
	if r := get(t, addr, "GET", "/style.css", "Accept-Encoding: br", "Range: bytes=0-3"); r.status != 206 || r.body != string(f.css[:4]) {
		t.Errorf("range: %d %q", r.status, r.body)
	}
	// gzip = true is the old spelling of ["gzip"]; precompressed wins.
	addr = f.serve(t, config.Static{Gzip: true})
	if r := get(t, addr, "GET", "/style.css", "Accept-Encoding: br, gzip"); r.header.Get("Content-Encoding") != "gzip" {
		t.Errorf("gzip = true: %v", r.header)
	}
	addr = f.serve(t, config.Static{Gzip: true, Precompressed: []string{}})
	if r := get(t, addr, "GET", "/style.css", "Accept-Encoding: gzip"); r.header.Get("Content-Encoding") != "" || r.header.Get("Vary") != "" {
		t.Errorf("precompressed = []: %v", r.header)
	}
}

// TestStaticCompressStream: without a cache (cache = 0), and for a file
// larger than an eighth of the cache, a compressible file is compressed
// as it is sent: no Accept-Ranges, a weak ETag of its own that
// 304s If-None-Match and never satisfies If-Match, decoding to the file;
// ranges still get identity bytes.
func TestStaticCompressStream(t *testing.T) {
	f := newStaticFixture(t)
	// ~200 KB that compresses to more than the writer buffers: chunked.
	var js []byte
	for i := range 8000 {
		js = fmt.Appendf(js, "var v%d=f(%d,%q);\n", i, i*7919%10007, strconv.Itoa(i*31337%65521))
	}
	if err := os.WriteFile(filepath.Join(f.root, "bundle.js"), js, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		cache uint64
	}{{"no cache", 0}, {"larger than cache/8", 64 << 10}} {
		t.Run(tc.name, func(t *testing.T) {
			cb := compressBlock()
			cb.Cache = tc.cache
			st := config.Static{Root: f.root}
			h := newHandler(t, []config.Site{{Name: "s", Compress: cb, Routes: []config.Route{{Prefix: "/", Static: &st}}}}, Options{})
			addr := startServer(t, h, nil)
			for _, enc := range []string{"gzip", "br", "zstd"} {
				r := get(t, addr, "GET", "/bundle.js", "Accept-Encoding: "+enc)
				// Chunked, unless the compressed body fit the writer's buffer.
				if cl := r.header.Get("Content-Length"); r.status != 200 || r.header.Get("Content-Encoding") != enc ||
					cl != "" && cl != strconv.Itoa(len(r.body)) || r.header.Get("Accept-Ranges") != "" || r.header.Get("Vary") != "Accept-Encoding" {
					t.Fatalf("%s: %d %v", enc, r.status, r.header)
				}
				if got := decode(t, enc, []byte(r.body)); !bytes.Equal(got, js) {
					t.Fatalf("%s: decodes to %d bytes, want the file's %d", enc, len(got), len(js))
				}
				if len(r.body) > 16<<10 && r.header.Get("Content-Length") != "" {
					t.Errorf("%s: %d bytes with a Content-Length, want chunked", enc, len(r.body))
				}
				if len(r.body) >= len(js)/2 {
					t.Errorf("%s: %d bytes for %d", enc, len(r.body), len(js))
				}
				tag := r.header.Get("ETag")
				if !strings.HasPrefix(tag, `W/"`) || !strings.HasSuffix(tag, "-"+strings.TrimPrefix(codingOf(enc).ext(), ".")+`"`) {
					t.Errorf("%s: ETag %s, want a weak tag with the coding's suffix", enc, tag)
				}
				if nm := get(t, addr, "GET", "/bundle.js", "Accept-Encoding: "+enc, "If-None-Match: "+tag); nm.status != 304 {
					t.Errorf("%s: If-None-Match its weak ETag: %d", enc, nm.status)
				}
				if im := get(t, addr, "GET", "/bundle.js", "Accept-Encoding: "+enc, "If-Match: "+strings.TrimPrefix(tag, "W/")); im.status != 412 {
					t.Errorf("%s: If-Match (strong comparison) with its weak ETag: %d, want 412", enc, im.status)
				}
				if im := get(t, addr, "GET", "/bundle.js", "Accept-Encoding: "+enc, "If-Match: *"); im.status != 200 {
					t.Errorf("%s: If-Match *: %d", enc, im.status)
				}
				hd := get(t, addr, "HEAD", "/bundle.js", "Accept-Encoding: "+enc)
				if hd.status != 200 || hd.body != "" || hd.header.Get("Content-Encoding") != enc || hd.header.Get("ETag") != tag {
					t.Errorf("%s: HEAD: %d %v", enc, hd.status, hd.header)
				}
			}
			r := get(t, addr, "GET", "/bundle.js", "Accept-Encoding: gzip", "Range: bytes=10-19")
			if r.status != 206 || r.body != string(js[10:20]) || r.header.Get("Content-Encoding") != "" {
				t.Errorf("range: %d %q %v", r.status, r.body, r.header)
			}
			if c := h.(*handler).router.any.routes[0].h.(*static).comp.cache; c != nil && c.len() != 0 {
				t.Errorf("%d variants cached; a file this large is not", c.len())
			}
		})
	}
}

// TestCompressLevels: a block's levels reach the encoders (level 1 gives
// a larger gzip body than level 9), and absent codings keep the defaults.
func TestCompressLevels(t *testing.T) {
	js := bytes.Repeat([]byte("function f(a,b){return a+b*2}var x=f(1,2);/* 0123456789 */\n"), 2000)
	size := func(levels map[string]int) int {
		cb := compressBlock()
		cb.Levels = levels
		z := newCompressor(cb)
		b, err := z.compressAll(codingGzip, bytes.NewReader(js))
		if err != nil {
			t.Fatal(err)
		}
		if got := decode(t, "gzip", b); !bytes.Equal(got, js) {
			t.Fatal("gzip body does not decode to the input")
		}
		return len(b)
	}
	if l1, l9 := size(map[string]int{"gzip": 1}), size(map[string]int{"gzip": 9}); l1 <= l9 {
		t.Errorf("gzip level 1: %d bytes, level 9: %d; want level 1 larger", l1, l9)
	}
	z := newCompressor(compressBlock())
	if z.levels[codingGzip] != config.DefaultCompressLevels["gzip"] || z.levels[codingBr] != config.DefaultCompressLevels["br"] ||
		z.levels[codingZstd] != config.DefaultCompressLevels["zstd"] {
		t.Errorf("default levels %v", z.levels)
	}
}
