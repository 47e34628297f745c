package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestValidateBuilt checks a configuration built in code, as the embedding
// API does: no file positions, so diagnostics name the key path.
func TestValidateBuilt(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "public"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := &Config{
		Sites: []Site{{
			Name: "app",
			Routes: []Route{
				{Prefix: "/", Proxy: &Proxy{Upstreams: []string{"127.0.0.1:9000"}}},
				{Prefix: "/static/", Static: &Static{Root: "public"}},
				{Prefix: "/ping", Respond: &Respond{Body: "pong"}},
			},
		}},
		Listen: []Listen{{Address: "unix:forkd.sock"}},
	}
	c.SetDefaults()
	c.Normalize(dir)
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	r := c.Sites[0].Routes
	if r[0].Proxy.ConnectTimeout != 5*time.Second || r[0].Proxy.ResponseTimeout != 60*time.Second {
		t.Errorf("proxy timeouts = %v, %v", r[0].Proxy.ConnectTimeout, r[0].Proxy.ResponseTimeout)
	}
	if r[1].Static.Root != filepath.Join(dir, "public") || len(r[1].Static.Index) != 1 || r[1].Static.Index[0] != "index.html" {
		t.Errorf("static = %+v", r[1].Static)
	}
	if r[2].Respond.Status != 200 {
		t.Errorf("respond status = %d", r[2].Respond.Status)
	}
	if !reflect.DeepEqual(c.Listen[0], Listen{Address: "unix:" + filepath.Join(dir, "forkd.sock"), Mode: 0o666}) {
		t.Errorf("listen = %+v", c.Listen[0])
	}
	if len(c.Sites[0].Hosts) != 1 || c.Sites[0].Hosts[0] != "*" {
		t.Errorf("hosts = %q", c.Sites[0].Hosts)
	}

	c.Workers = 0
	c.Sites[0].Routes[0].Prefix = "api"
	c.Sites[0].Routes[2].Static = &Static{Root: dir, Index: []string{"index.html"}}
	c.Metrics = &Metrics{Address: c.Listen[0].Address, Path: "/metrics"}
	err := c.Validate()
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("err = %v, want *Error", err)
	}
	want := []string{
		"workers: Invalid workers; The value must be 0 (one per CPU) or between 1 and 1024; got 0.",
		fmt.Sprintf(`metrics.address: Duplicate listen address; The metrics address %q is already a listener at listen[0].address.`, c.Listen[0].Address),
		`sites[0].routes[0].prefix: Invalid route prefix; The prefix "api" must start with "/".`,
		`sites[0].routes[2].respond: Conflicting route handlers; Route "/ping" already has a static block at sites[0].routes[2].static; a route takes exactly one of static, proxy, respond, health or redirect.`,
	}
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Errorf("err =\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
}

func TestNetwork(t *testing.T) {
	for _, tt := range []struct{ addr, network, want string }{
		{"127.0.0.1:8080", "tcp", "127.0.0.1:8080"},
		{"[::1]:80", "tcp", "[::1]:80"},
		{":80", "tcp", ":80"},
		{"unix:/run/forkd.sock", "unix", "/run/forkd.sock"},
		{"unix:@abstract", "unix", "@abstract"},
	} {
		n, a := Listen{Address: tt.addr}.Network()
		if n != tt.network || a != tt.want {
			t.Errorf("Network(%q) = %q, %q; want %q, %q", tt.addr, n, a, tt.network, tt.want)
		}
		if n2, a2 := (Metrics{Address: tt.addr}).Network(); n2 != n || a2 != a {
			t.Errorf("Metrics.Network(%q) = %q, %q", tt.addr, n2, a2)
		}
	}
}

func TestControlSocketPath(t *testing.T) {
	for _, tt := range []struct{ sock, pid, want string }{
		{"", "", ""},
		{"/run/c.sock", "/run/forkd.pid", "/run/c.sock"},
		{"", "/run/forkd.pid", "/run/forkd.sock"},
		{"", "/run/forkd", "/run/forkd.sock"},
	} {
		c := &Config{ControlSocket: tt.sock, Pidfile: tt.pid}
		if got := c.ControlSocketPath(); got != tt.want {
			t.Errorf("ControlSocketPath(%q, %q) = %q, want %q", tt.sock, tt.pid, got, tt.want)
		}
	}
}

func TestSocketMode(t *testing.T) {
	for _, tt := range []struct {
		mode string
		want uint32
	}{
		{`"0660"`, 0o660},
		{`"660"`, 0o660},
		{`"0o600"`, 0o600},
		{`660`, 0o660},
		{`0777`, 0o777},
		{`7`, 0o7},
	} {
		src := "listen {\n  address = \"unix:/tmp/x.sock\"\n  mode = " + tt.mode + "\n}\n"
		c, err := Parse([]byte(src), "mode.hcl")
		if err != nil {
			t.Errorf("mode = %s: %v", tt.mode, err)
			continue
		}
		if got := c.Listen[0].Mode; got != tt.want {
			t.Errorf("mode = %s gave %#o, want %#o", tt.mode, got, tt.want)
		}
	}
	for _, bad := range []string{`"rw-rw-rw-"`, `-1`, `6.5`, `"01777"`, `true`, `""`} {
		src := "listen {\n  address = \"unix:/tmp/x.sock\"\n  mode = " + bad + "\n}\n"
		if _, err := Parse([]byte(src), "mode.hcl"); err == nil || !strings.HasPrefix(err.Error(), "mode.hcl:3:") {
			t.Errorf("mode = %s: err = %v, want one at line 3", bad, err)
		}
	}
}

func TestHostsAndHeaders(t *testing.T) {
	src := `site "s" {
  hosts = ["Example.com.", "*.Example.com", "192.0.2.1", "[2001:db8::1]", "under_score.local"]
  route "/" {
    respond {
      headers = {
        "Cache-Control" = "no-store"
        x-custom        = 1
      }
    }
  }
}
`
	c, err := Parse([]byte(src), "hosts.hcl")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"example.com", "*.example.com", "192.0.2.1", "[2001:db8::1]", "under_score.local"}
	if strings.Join(c.Sites[0].Hosts, " ") != strings.Join(want, " ") {
		t.Errorf("hosts = %q, want %q", c.Sites[0].Hosts, want)
	}
	h := c.Sites[0].Routes[0].Respond.Headers
	if len(h) != 2 || h["Cache-Control"] != "no-store" || h["x-custom"] != "1" {
		t.Errorf("headers = %q", h)
	}

	dup := strings.Replace(src, "x-custom        = 1", "cache-control = \"max-age=1\"", 1)
	_, err = Parse([]byte(dup), "hosts.hcl")
	if err == nil || !strings.HasPrefix(err.Error(), "hosts.hcl:7:") || !strings.Contains(err.Error(), `Duplicate header; The header "cache-control" is also set as "Cache-Control".`) {
		t.Errorf("err = %v, want Duplicate header at line 7", err)
	}
}
