package serve

import (
	"strings"
	"testing"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/protocol"
)

// named is a route handler that only has a name, for routing tests.
type named string

func (named) serveRoute(*protocol.ResponseWriter, *protocol.Request, *reqPath) {}

func testRouter(t *testing.T) *router {
	t.Helper()
	sites := []config.Site{
		{Name: "exact", Hosts: []string{"www.Example.com", "[::1]"}, Routes: []config.Route{{Prefix: "/"}, {Prefix: "/api/"}, {Prefix: "/healthz"}, {Prefix: "/api/v2/"}}},
		{Name: "wild", Hosts: []string{"*.example.com"}, Routes: []config.Route{{Prefix: "/"}}},
		{Name: "wild2", Hosts: []string{"*.b.example.com"}, Routes: []config.Route{{Prefix: "/"}}},
		{Name: "any", Hosts: []string{"*"}, Routes: []config.Route{{Prefix: "/only/"}}},
	}
	var rt router
	err := rt.build(sites, func(site string, r config.Route) (routeHandler, error) {
		return named(site + " " + r.Prefix), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return &rt
}

func TestRouterLookup(t *testing.T) {
	rt := testRouter(t)
	tests := []struct{ host, path, want string }{
		{"www.example.com", "/", "exact /"},
		{"WWW.EXAMPLE.COM:8080", "/x", "exact /"},
		{"www.example.com.", "/x", "exact /"},
		{"[::1]:8080", "/x", "exact /"},
		{"www.example.com", "/api/", "exact /api/"},
		{"www.example.com", "/api/x", "exact /api/"},
		{"www.example.com", "/api", "exact /"}, // "/api/" needs the slash
		{"www.example.com", "/api/v2/x", "exact /api/v2/"},
		{"www.example.com", "/api/v2", "exact /api/"},
		{"www.example.com", "/healthz", "exact /healthz"},
		{"www.example.com", "/healthz/", "exact /healthz"},
		{"www.example.com", "/healthz/deep", "exact /healthz"},
		{"www.example.com", "/healthzz", "exact /"},
		{"a.example.com", "/x", "wild /"},
		{"a.B.example.com", "/x", "wild2 /"},
		{"x.a.b.example.com:1", "/x", "wild2 /"},
		{"a.c.example.com", "/x", "wild /"},
		{"example.com", "/only/x", "any /only/"},
		{"example.com", "/x", ""}, // "any" has no "/" route
		{"", "/only/", "any /only/"},
		{"other", "/only/a", "any /only/"},
		{strings.Repeat("a", 300), "/only/a", "any /only/"},
	}
	for _, tt := range tests {
		got := rt.lookup([]byte(tt.host), []byte(tt.path))
		g := ""
		if got != nil {
			g = string(got.(named))
		}
		if g != tt.want {
			t.Errorf("lookup(%q, %q) = %q, want %q", tt.host, tt.path, g, tt.want)
		}
	}
}

func TestRouterBuildErrors(t *testing.T) {
	mk := func(string, config.Route) (routeHandler, error) { return named(""), nil }
	bad := [][]config.Site{
		{{Name: "a", Hosts: []string{"x"}}, {Name: "b", Hosts: []string{"X"}}},
		{{Name: "a"}, {Name: "b", Hosts: []string{"*"}}},
		{{Name: "a", Hosts: []string{"*.x"}}, {Name: "b", Hosts: []string{"*.X"}}},
		{{Name: "a", Hosts: []string{"a*b"}}},
		{{Name: "a", Hosts: []string{"a.com:80"}}},
		{{Name: "a", Routes: []config.Route{{Prefix: "api"}}}},
		{{Name: "a", Routes: []config.Route{{Prefix: "/a"}, {Prefix: "/a"}}}},
	}
	for i, sites := range bad {
		var rt router
		if err := rt.build(sites, mk); err == nil {
			t.Errorf("case %d: build accepted %+v", i, sites)
		}
	}
}

func TestRouteNoAllocs(t *testing.T) {
	rt := testRouter(t)
	p := &reqPath{buf: make([]byte, 0, 256)}
	host := []byte("X.A.B.Example.com:8443")
	raw := []byte("/api/v2/%7Euser/./items/../list")
	allocs := testing.AllocsPerRun(1000, func() {
		if !p.clean(raw) {
			t.Fatal("clean failed")
		}
		if rt.lookup(host, p.path) == nil {
			t.Fatal("no route")
		}
	})
	if allocs != 0 {
		t.Errorf("routing allocates %v times per request, want 0", allocs)
	}
}

func TestCleanPath(t *testing.T) {
	tests := []struct {
		raw   string
		want  string // "!" = refused
		flags int
	}{
		{"/", "/", 0},
		{"/a/b", "/a/b", 0},
		{"/a/b/", "/a/b/", 0},
		{"/a//b", "/a/b", pathNormalized},
		{"/a/./b", "/a/b", pathNormalized},
		{"/a/../b", "/b", pathNormalized},
		{"/../etc/passwd", "/etc/passwd", pathNormalized},
		{"/../../..", "/", pathNormalized},
		{"/a/b/..", "/a/", pathNormalized},
		{"/a/.", "/a/", pathNormalized},
		{"/%2e%2e/%2E%2E/etc", "/etc", pathNormalized},
		{"/a/%2e/b", "/a/b", pathNormalized},
		{"/..%2f..%2fetc", "/etc", pathNormalized | pathEncSlash},
		{"/a%2fb", "/a/b", pathEncSlash},
		{"/a%2Fb", "/a/b", pathEncSlash},
		{"/%7euser", "/~user", 0},
		{"/a%20b", "/a b", 0},
		{`/a\..\b`, `/a\..\b`, pathBackslash},
		{"/%5c..%5cb", `/\..\b`, pathBackslash},
		{"/.env", "/.env", pathDotfile},
		{"/a/.git/config", "/a/.git/config", pathDotfile},
		{"/.git/../a", "/a", pathNormalized},
		{"/a.b/c", "/a.b/c", 0},
		{"/...", "/...", pathDotfile},
		{"/%00", "!", 0},
		{"/a\x00b", "!", 0},
		{"/%zz", "!", 0},
		{"/%2", "!", 0},
		{"/a%", "!", 0},
		{"a/b", "!", 0},
		{"", "!", 0},
		{"*", "!", 0},
	}
	p := &reqPath{}
	for _, tt := range tests {
		ok := p.clean([]byte(tt.raw))
		if tt.want == "!" {
			if ok {
				t.Errorf("clean(%q) = %q, want refusal", tt.raw, p.path)
			}
			continue
		}
		if !ok {
			t.Errorf("clean(%q) refused, want %q", tt.raw, tt.want)
			continue
		}
		if string(p.path) != tt.want || p.flags != tt.flags {
			t.Errorf("clean(%q) = %q flags %b, want %q flags %b", tt.raw, p.path, p.flags, tt.want, tt.flags)
		}
	}
}

func TestParseRange(t *testing.T) {
	const size = 100
	tests := []struct {
		v             string
		start, length int64
		result        int
	}{
		{"bytes=0-9", 0, 10, rangeOK},
		{"bytes=10-", 10, 90, rangeOK},
		{"bytes=-10", 90, 10, rangeOK},
		{"bytes=-1000", 0, 100, rangeOK},
		{"bytes=90-1000", 90, 10, rangeOK},
		{"Bytes=5-5", 5, 1, rangeOK},
		{"bytes=100-", 0, 0, rangeUnsatisfiable},
		{"bytes=100-200", 0, 0, rangeUnsatisfiable},
		{"bytes=-0", 0, 0, rangeUnsatisfiable},
		{"bytes=0-1,5-6", 0, 0, rangeIgnore},
		{"bytes=5-1", 0, 0, rangeIgnore},
		{"bytes=x-1", 0, 0, rangeIgnore},
		{"bytes=1", 0, 0, rangeIgnore},
		{"items=0-1", 0, 0, rangeIgnore},
		{"bytes=99999999999999999999-", 0, 0, rangeIgnore},
	}
	for _, tt := range tests {
		s, n, res := parseRange([]byte(tt.v), size)
		if res != tt.result || (res == rangeOK && (s != tt.start || n != tt.length)) {
			t.Errorf("parseRange(%q) = %d,%d,%d want %d,%d,%d", tt.v, s, n, res, tt.start, tt.length, tt.result)
		}
	}
	if _, _, res := parseRange([]byte("bytes=0-"), 0); res != rangeIgnore {
		t.Errorf("empty file: got %d, want rangeIgnore", res)
	}
}

func TestETagListMatches(t *testing.T) {
	etag := []byte(`"abc-1"`)
	tests := []struct {
		list   string
		strong bool
		want   bool
	}{
		{`"abc-1"`, true, true},
		{`W/"abc-1"`, false, true},
		{`W/"abc-1"`, true, false},
		{`"x", "abc-1"`, true, true},
		{`"x"`, false, false},
		{`*`, true, true},
		{`"abc-1`, false, false},
	}
	for _, tt := range tests {
		if got := etagListMatches([]byte(tt.list), etag, tt.strong); got != tt.want {
			t.Errorf("etagListMatches(%q, strong=%v) = %v", tt.list, tt.strong, got)
		}
	}
}

func TestContentType(t *testing.T) {
	tests := map[string]string{
		"index.html":       "text/html; charset=utf-8",
		"a/b/STYLE.CSS":    "text/css; charset=utf-8",
		"app.js":           "text/javascript; charset=utf-8",
		"x.json":           "application/json",
		"logo.svg":         "image/svg+xml",
		"p.png":            "image/png",
		"f.woff2":          "font/woff2",
		"m.wasm":           "application/wasm",
		"noext":            "application/octet-stream",
		"dir.d/noext":      "application/octet-stream",
		"x.unknown-ext-zz": "application/octet-stream",
	}
	for name, want := range tests {
		if got := contentType(name); got != want {
			t.Errorf("contentType(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestStripPort(t *testing.T) {
	tests := map[string]string{
		"a.com:80": "a.com", "a.com": "a.com", "1.2.3.4:5": "1.2.3.4",
		"[::1]:80": "[::1]", "[::1]": "[::1]", "a.com:": "a.com", "": "",
	}
	for in, want := range tests {
		if got := string(stripPort([]byte(in))); got != want {
			t.Errorf("stripPort(%q) = %q, want %q", in, got, want)
		}
	}
}

// The handler runs on event loops unless every request would have to leave
// them: no sites, and a fallback that is not LoopSafe.
func TestHandlerLoopSafe(t *testing.T) {
	site := []config.Site{{Name: "s", Hosts: []string{"*"}, Routes: []config.Route{{Prefix: "/", Respond: &config.Respond{Status: 200}}}}}
	blocking := protocol.HandlerFunc(func(w *protocol.ResponseWriter, r *protocol.Request) {})
	for _, tc := range []struct {
		name     string
		sites    []config.Site
		fallback protocol.Handler
		want     bool
	}{
		{"welcome page", nil, nil, true},
		{"sites", site, nil, true},
		{"sites and a net/http fallback", site, blocking, true},
		{"only a net/http fallback", nil, blocking, false},
		{"only a Nonblocking fallback", nil, protocol.Nonblocking(blocking), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandler(t, tc.sites, Options{Fallback: tc.fallback})
			ls, ok := h.(protocol.LoopSafe)
			if got := ok && ls.LoopSafe(); got != tc.want {
				t.Fatalf("LoopSafe = %v, want %v", got, tc.want)
			}
		})
	}
}
