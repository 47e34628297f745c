package config

import (
	"errors"
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
		{"two blocks", site("  route \"/\" {\n    headers {}\n    headers {}\n    respond {}\n  }\n"), 4, "Duplicate headers block"},
		{"unknown key", site("  headers {\n    append = {}\n  }\n  route \"/\" {\n    respond {}\n  }\n"), 3, `An argument named "append"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { oneError(t, tt.src, tt.line, tt.want) })
	}
}
