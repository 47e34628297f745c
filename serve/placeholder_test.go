package serve

import (
	"bytes"
	"crypto/tls"
	"net"
	"strings"
	"testing"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/tlsconn"
	"github.com/forkd/forkd/protocol"
)

// cleanURI normalises a request target as {uri} does: ok is false for a
// path the router answers 400.
func cleanURI(target string) (string, bool) {
	path, query, hasQuery := strings.Cut(target, "?")
	var q []byte
	if hasQuery {
		q = []byte(query)
	}
	var p reqPath
	if !p.clean([]byte(path)) {
		return "", false
	}
	return string(appendCleanURI(nil, []byte(path), q, &p)), true
}

func TestCleanURI(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"//evil.example/../u/x", "/u/x"},
		{`/\evil.example/..`, "/"},
		{`/\evil.example`, "/%5Cevil.example"},
		{`/\\evil.example/x`, "/%5C%5Cevil.example/x"},
		{"/%5C%5Cevil", "/%5C%5Cevil"},
		{"/%5c/evil", "/%5C/evil"},
		{"/%2F%2Fevil", "/evil"},
		{"/%2f/evil.example", "/evil.example"},
		{"/..//evil", "/evil"},
		{"/.//evil", "/evil"},
		{"/%2e%2e//evil", "/evil"},
		{"/%2E/%2e%2E//evil?x=//y", "/evil?x=//y"},
		{"/a/..//..//evil", "/evil"},
		{`/a/../\/evil`, "/%5C/evil"},
		{"///", "/"},
		{"/", "/"},
		{"/a//b", "/a/b"},
		{"/a/b/", "/a/b/"},
		{"/a/b?c=d&e", "/a/b?c=d&e"},
		{"/x?", "/x?"},
		{"/x?//evil", "/x?//evil"},
		{"/t/%41", "/t/%41"},       // canonical: as received
		{"/a%2Fb", "/a%2Fb"},       // an encoded slash that cleaning kept
		{"/t/./%41", "/t/A"},       // cleaned: re-encoded from the decoded path
		{"/a/%20b/../c", "/a/c"},   //
		{"/a/%20b/./", "/a/%20b/"}, //
		{"/%09/evil", "/%09/evil"}, // a tab browsers would drop stays encoded
	} {
		got, ok := cleanURI(tc.in)
		if !ok || got != tc.want {
			t.Errorf("{uri} of %q = %q, %v; want %q", tc.in, got, ok, tc.want)
		}
	}
}

// FuzzCleanURI checks what {uri} promises for any target the router
// takes: it starts with one '/' that no '/' or '\' follows, holds no byte
// a browser would drop or rewrite (tab, newline, backslash) in its path,
// and normalising it again changes nothing.
func FuzzCleanURI(f *testing.F) {
	for _, s := range []string{"//evil.example/../u/x", `/\evil.example/..`, "/%2F%2Fevil", "/..//evil", "/.//evil",
		"/a/b?c=d", "/%5c%5cevil", "/%2e%2e/%2e//x", "/t/%41", "/a%2Fb/../", "/\t/evil", "/?//x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		out, ok := cleanURI(target)
		if !ok {
			return
		}
		path, _, _ := strings.Cut(out, "?")
		if !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "//") || strings.HasPrefix(path, `/\`) {
			t.Fatalf("{uri} of %q = %q", target, out)
		}
		if strings.ContainsAny(path, "\t\r\n\\") {
			t.Fatalf("{uri} of %q = %q: a byte browsers drop or rewrite", target, out)
		}
		again, ok := cleanURI(out)
		if !ok || again != out {
			t.Fatalf("{uri} of %q = %q, then %q (%v): not idempotent", target, out, again, ok)
		}
	})
}

func TestTemplatePlaceholders(t *testing.T) {
	tpl, err := newTemplate("{scheme}://{host}:{port}{uri}|{path}|{query}|{remote_addr}|{header.X-Id}")
	if err != nil {
		t.Fatal(err)
	}
	req := func(target, host string, local net.Addr) *protocol.Request {
		r := &protocol.Request{Host: []byte(host), LocalAddr: local,
			RemoteAddr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 5555}}
		path, query, ok := strings.Cut(target, "?")
		r.Path = []byte(path)
		if ok {
			r.Query = []byte(query)
		}
		return r
	}
	plain := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	secure := tlsconn.Addr{Addr: &net.TCPAddr{IP: net.IPv6loopback, Port: 8443}}
	for _, tc := range []struct {
		r    *protocol.Request
		want string
	}{
		{req("/a/b?c=d", "Example.com:9999", plain), "http://Example.com:8080/a/b?c=d|/a/b|c=d|192.0.2.7|"},
		{req("//evil.example/../u/x", "example.com", secure), "https://example.com:8443/u/x|/u/x||192.0.2.7|"},
		{req("/x", "", plain), "http://127.0.0.1:8080/x|/x||192.0.2.7|"},
		{req("/x", "", secure), "https://[::1]:8443/x|/x||192.0.2.7|"},
		{req("/x", "[::1]:80", &net.UnixAddr{Name: "/run/x.sock", Net: "unix"}), "http://[::1]:/x|/x||192.0.2.7|"},
	} {
		var p reqPath
		if !p.clean(tc.r.Path) {
			t.Fatalf("clean %q", tc.r.Path)
		}
		if got := string(tpl.appendTo(nil, tc.r, &p)); got != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.r.Host, tc.r.Path, got, tc.want)
		}
	}
}

// TestTemplateAllocs: expanding into a buffer that is large enough
// allocates nothing.
func TestTemplateAllocs(t *testing.T) {
	tpl, err := newTemplate("{scheme}://{host}:{port}{uri}")
	if err != nil {
		t.Fatal(err)
	}
	r := &protocol.Request{Path: []byte("/a/../b"), Query: []byte("q=1"), Host: []byte("example.com"),
		LocalAddr: tlsconn.Addr{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8443}}}
	var p reqPath
	p.clean(r.Path)
	var buf [256]byte
	var out []byte
	if a := testing.AllocsPerRun(1000, func() { out = tpl.appendTo(buf[:0], r, &p) }); a != 0 {
		t.Errorf("%v allocations per expansion", a)
	}
	if !bytes.Equal(out, []byte("https://example.com:8443/b?q=1")) {
		t.Errorf("expanded %q", out)
	}
}

// TestRedirectTLSScheme: {scheme} is https on a TLS listener, and {port}
// the port the connection arrived on, whatever Host says.
func TestRedirectTLSScheme(t *testing.T) {
	h := newHandler(t, []config.Site{{Name: "r", Routes: []config.Route{
		{Prefix: "/", Redirect: &config.Redirect{Status: 308, Location: "{scheme}://{host}:{port}{uri}"}},
	}}}, Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cert := testCertificate(t)
	addr := serveListener(t, h, tlsconn.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}}))
	_, port, _ := net.SplitHostPort(addr)
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	r := readRaw(t, conn, "GET", "GET //evil.example/../u/x?q HTTP/1.1\r\nHost: a.example:1\r\nConnection: close\r\n\r\n")
	if want := "https://a.example:" + port + "/u/x?q"; r.status != 308 || r.header.Get("Location") != want {
		t.Errorf("%d %q, want 308 %q", r.status, r.header.Get("Location"), want)
	}
}
