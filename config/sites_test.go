package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// oneError checks that src fails to load with exactly one diagnostic, at
// line, containing want.
func oneError(t *testing.T, src string, line int, want string) {
	t.Helper()
	c, err := Parse([]byte(src), "test.hcl")
	if err == nil {
		t.Fatalf("no error; config %+v", c)
	}
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("err = %T %v, want *Error", err, err)
	}
	if len(cerr.Diags) != 1 {
		t.Errorf("got %d diagnostics, want 1:\n%s", len(cerr.Diags), err)
	}
	if s := cerr.Diags[0].Subject; s == nil || s.Start.Line != line || s.Filename != "test.hcl" {
		t.Errorf("Subject = %+v, want test.hcl line %d (%v)", s, line, err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("err = %q, want it to contain %q", err, want)
	}
}

const twoListeners = "listen {\n  address = \"127.0.0.1:80\"\n  name = \"http\"\n}\nlisten {\n  address = \"127.0.0.1:443\"\n  name = \"https\"\n}\n" // 8 lines

// TestSiteListenErrors checks listen.name and site.listen.
func TestSiteListenErrors(t *testing.T) {
	route := "  route \"/\" {\n    respond {}\n  }\n"
	tests := []struct {
		name string
		src  string
		line int
		want string
	}{
		{"duplicate name", "listen {\n  address = \":80\"\n  name = \"a\"\n}\nlisten {\n  address = \":81\"\n  name = \"a\"\n}\n", 7,
			`Duplicate listen name; A listener named "a" is already defined at line 3.`},
		{"bad name", "listen {\n  address = \":80\"\n  name = \"a b\"\n}\n", 3, "Invalid listen name"},
		{"unknown listener", twoListeners + "site \"s\" {\n  listen = [\"http\", \"ftp\"]\n" + route + "}\n", 10,
			`Unknown listener; No listen block has name = "ftp".`},
		{"empty listen", twoListeners + "site \"s\" {\n  listen = []\n" + route + "}\n", 10, "serves no listener"},
		{"same host same listener", twoListeners + "site \"s\" {\n  listen = [\"http\"]\n" + route + "}\nsite \"t\" {\n" + route + "}\n", 15,
			`Duplicate host; The host "*" is already matched at line 9.`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { oneError(t, tt.src, tt.line, tt.want) })
	}
}

// TestSiteListenLoads checks that a host may repeat in sites that serve
// different listeners, and that the lists load.
func TestSiteListenLoads(t *testing.T) {
	route := "  route \"/\" {\n    respond {}\n  }\n"
	src := twoListeners + "site \"a\" {\n  listen = [\"http\"]\n" + route + "}\nsite \"b\" {\n  listen = [\"https\"]\n" + route + "}\n"
	c, err := Parse([]byte(src), "test.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen[1].Name != "https" || len(c.Sites[0].Listen) != 1 || c.Sites[0].Listen[0] != "http" || c.Sites[1].Listen[0] != "https" {
		t.Errorf("listen %+v, sites %+v", c.Listen, c.Sites)
	}
}

// TestHeadersErrors checks the headers block of sites and routes.
func TestHeadersErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		line int
		want string
	}{
		{"unknown placeholder", site("  headers {\n    set = {\n      \"X-A\" = \"{nope}\"\n    }\n  }\n  route \"/\" {\n    respond {}\n  }\n"), 4,
			"Invalid header value; Unknown placeholder {nope}"},
		{"framing", site("  route \"/\" {\n    headers {\n      add = { \"Content-Length\" = \"1\" }\n    }\n    respond {}\n  }\n"), 4, "cannot be configured"},
		{"bad remove", site("  route \"/\" {\n    headers {\n      remove = [\"A B\"]\n    }\n    respond {}\n  }\n"), 4, `Invalid header name; The header name "A B"`},
		{"connection", site("  route \"/\" {\n    headers {\n      remove = [\"connection\"]\n    }\n    respond {}\n  }\n"), 4, "cannot be removed"},
		{"set connection", site("  route \"/\" {\n    headers {\n      set = { \"Connection\" = \"close\" }\n    }\n    respond {}\n  }\n"), 4, "cannot be configured"},
		{"two blocks", site("  route \"/\" {\n    headers {}\n    headers {}\n    respond {}\n  }\n"), 4, "Duplicate headers block"},
		{"unknown key", site("  headers {\n    append = {}\n  }\n  route \"/\" {\n    respond {}\n  }\n"), 3, `An argument named "append"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { oneError(t, tt.src, tt.line, tt.want) })
	}
}

// TestAccessErrors checks allow, deny and basic_auth.
func TestAccessErrors(t *testing.T) {
	dir := t.TempDir()
	md5 := filepath.Join(dir, "md5.htpasswd")
	if err := os.WriteFile(md5, []byte("# users\nalice:"+testHash+"\n\nbob:$apr1$abc$def\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	auth := func(body string) string {
		return site("  route \"/\" {\n    basic_auth {\n" + body + "    }\n    respond {}\n  }\n")
	}
	tests := []struct {
		name string
		src  string
		line int
		want string
	}{
		{"bad allow", site("  allow = [\"10.0.0.0/8\", \"10.0.0.1/8\"]\n  route \"/\" {\n    respond {}\n  }\n"), 2, `Invalid allow network; "10.0.0.1/8" has bits set`},
		{"bad deny", site("  route \"/\" {\n    deny = [\"nope\"]\n    respond {}\n  }\n"), 3, `Invalid deny network; "nope" is not an IP address`},
		{"no users", auth("      realm = \"a\"\n"), 3, "Missing users"},
		{"bad realm", auth("      realm = \"a\\\"b\"\n      users = { \"a\" = \"" + testHash + "\" }\n"), 4, "Invalid realm"},
		{"not bcrypt", auth("      users = { \"alice\" = \"{SHA}abc\" }\n"), 4, `Invalid password hash; User "alice": the hash is not bcrypt`},
		{"bad user", auth("      users = { \"a:b\" = \"" + testHash + "\" }\n"), 4, `Invalid user`},
		{"htpasswd md5", auth("      htpasswd = \"" + md5 + "\"\n"), 4, "md5.htpasswd:4: user \"bob\": the hash is not bcrypt"},
		{"htpasswd missing", auth("      htpasswd = \"" + filepath.Join(dir, "none") + "\"\n"), 4, "Invalid htpasswd file"},
		{"two basic_auth", site("  basic_auth {\n    users = { \"a\" = \"" + testHash + "\" }\n  }\n  basic_auth {\n  }\n  route \"/\" {\n    respond {}\n  }\n"), 5, "Duplicate basic_auth block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { oneError(t, tt.src, tt.line, tt.want) })
	}
}

// testHash is bcrypt("correct horse") at cost 10.
const testHash = "$2a$10$HF6Y.9G5AmEyaTwSxmIaIe7rgsalSEorsYWrdmZokXz39.cDIdBU2"

// TestAccessLoads checks that the keys load, the htpasswd path resolved
// against the file's directory, and that ReadUsers merges both sources.
func TestAccessLoads(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "users"), []byte("bob:"+testHash+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := site("  allow = [\"10.0.0.0/8\"]\n  basic_auth {\n    users = { \"alice\" = \"" + testHash + "\" }\n    htpasswd = \"users\"\n  }\n  route \"/\" {\n    deny = [\"10.1.0.0/16\"]\n    respond {}\n  }\n")
	c, err := Parse([]byte(src), filepath.Join(dir, "c.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Sites[0]
	if s.Allow[0] != "10.0.0.0/8" || s.Routes[0].Deny[0] != "10.1.0.0/16" || s.BasicAuth.Realm != DefaultRealm {
		t.Errorf("site %+v", s)
	}
	users, err := s.BasicAuth.ReadUsers()
	if err != nil || len(users) != 2 || users["bob"] != testHash || users["alice"] != testHash {
		t.Errorf("ReadUsers: %v %v", users, err)
	}
}

// TestProxyRewriteErrors checks strip_prefix and request_headers.
func TestProxyRewriteErrors(t *testing.T) {
	proxy := func(body string) string {
		return site("  route \"/api/\" {\n    proxy {\n      upstreams = [\"a:1\"]\n" + body + "    }\n  }\n")
	}
	tests := []struct {
		name string
		src  string
		line int
		want string
	}{
		{"strip_prefix not bool", proxy("      strip_prefix = \"yes\"\n"), 5, "a bool is required"},
		{"set Host", proxy("      request_headers {\n        set = { \"host\" = \"x\" }\n      }\n"), 6, "it cannot be set"},
		{"set placeholder", proxy("      request_headers {\n        set = { \"X-A\" = \"{nope}\" }\n      }\n"), 6, "Unknown placeholder {nope}"},
		{"remove not token", proxy("      request_headers {\n        remove = [\"a b\"]\n      }\n"), 6, "Invalid header name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { oneError(t, tt.src, tt.line, tt.want) })
	}
}

// TestFallbackAndErrorPagesErrors checks static fallback and error_pages.
func TestFallbackAndErrorPagesErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "404.html"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	static := func(fallback string) string {
		return site("  route \"/\" {\n    static {\n      root = \"" + dir + "\"\n      fallback = \"" + fallback + "\"\n    }\n  }\n")
	}
	pages := func(m string) string {
		return site("  error_pages = {\n" + m + "  }\n  route \"/\" {\n    respond {}\n  }\n")
	}
	tests := []struct {
		name string
		src  string
		line int
		want string
	}{
		{"fallback relative", static("index.html"), 5, "Invalid fallback"},
		{"fallback dotdot", static("/../x"), 5, "Invalid fallback"},
		{"fallback missing", static("/index.html"), 5, "no such file"},
		{"page status", pages("    \"200\" = \"" + filepath.Join(dir, "404.html") + "\"\n"), 3, `Invalid error page status; The status "200"`},
		{"page missing", pages("    \"404\" = \"" + filepath.Join(dir, "none.html") + "\"\n"), 3, "Invalid error page"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { oneError(t, tt.src, tt.line, tt.want) })
	}
	src := site("  error_pages = { \"404\" = \"404.html\" }\n  route \"/\" {\n    static {\n      root = \".\"\n      fallback = \"/404.html\"\n    }\n  }\n")
	c, err := Parse([]byte(src), filepath.Join(dir, "c.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Sites[0].ErrorPages["404"]; got != filepath.Join(dir, "404.html") {
		t.Errorf("error page %q, want it resolved against the file's directory", got)
	}
	if got := c.Sites[0].Routes[0].Static.Fallback; got != "/404.html" {
		t.Errorf("fallback %q", got)
	}
}

// TestRequestIDErrors checks request_id.
func TestRequestIDErrors(t *testing.T) {
	oneError(t, site("  request_id = \"X Id\"\n  route \"/\" {\n    respond {}\n  }\n"), 2, "Invalid request_id")
	oneError(t, site("  route \"/\" {\n    request_id = \"Content-Length\"\n    respond {}\n  }\n"), 3, "Invalid request_id")
	c, err := Parse([]byte(site("  request_id = \"X-Request-Id\"\n  route \"/\" {\n    request_id = \"X-Trace\"\n    respond {}\n  }\n")), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if c.Sites[0].RequestID != "X-Request-Id" || c.Sites[0].Routes[0].RequestID != "X-Trace" {
		t.Errorf("request_id %q %q", c.Sites[0].RequestID, c.Sites[0].Routes[0].RequestID)
	}
}
