package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseTemplate(t *testing.T) {
	lit := func(s string) TemplatePart { return TemplatePart{Kind: Literal, Text: s} }
	for _, tc := range []struct {
		in   string
		want []TemplatePart
	}{
		{"https://{host}{uri}", []TemplatePart{lit("https://"), {Kind: PlaceholderHost}, {Kind: PlaceholderURI}}},
		{"{scheme}://{host}:{port}{path}?{query}", []TemplatePart{{Kind: PlaceholderScheme}, lit("://"), {Kind: PlaceholderHost},
			lit(":"), {Kind: PlaceholderPort}, {Kind: PlaceholderPath}, lit("?"), {Kind: PlaceholderQuery}}},
		{"/u/{remote_addr}/{header.X-User}", []TemplatePart{lit("/u/"), {Kind: PlaceholderRemoteAddr}, lit("/"),
			{Kind: PlaceholderHeader, Text: "X-User"}}},
		{"/a{b{uri}", []TemplatePart{lit("/a{b"), {Kind: PlaceholderURI}}}, // a brace that opens nothing
		{"/x}{", []TemplatePart{lit("/x}{")}},
		{"", nil},
	} {
		got, err := ParseTemplate(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseTemplate(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"{hots}", "/{}", "{header.}", "{header.a b}", "{HOST}", "{uri }", "x{header.X:Y}"} {
		if _, err := ParseTemplate(bad); !errors.Is(err, ErrPlaceholder) {
			t.Errorf("ParseTemplate(%q): err = %v, want ErrPlaceholder", bad, err)
		}
	}
}

// TestRedirectPlaceholders checks that forkd -t accepts every placeholder
// in a redirect location and points at an unknown one.
func TestRedirectPlaceholders(t *testing.T) {
	site := func(loc string) string {
		return "site \"s\" {\n  route \"/\" {\n    redirect {\n      location = \"" + loc + "\"\n    }\n  }\n}\n"
	}
	if _, err := Parse([]byte(site("{scheme}://{host}:{port}{path}?{query}&u={uri}&ip={remote_addr}&h={header.X-Id}")), "c.hcl"); err != nil {
		t.Fatal(err)
	}
	_, err := Parse([]byte(site("https://{host}{port}{url}")), "c.hcl")
	if err == nil || !strings.Contains(err.Error(), "c.hcl:4:18: Invalid location; Unknown placeholder {url}") {
		t.Errorf("err = %v", err)
	}
}

func TestProxyUpgrades(t *testing.T) {
	proxy := func(extra string) string {
		return "site \"s\" {\n  route \"/\" {\n    proxy {\n      upstreams = [\"127.0.0.1:9000\"]\n" + extra + "    }\n  }\n}\n"
	}
	c, err := Parse([]byte(proxy("")), "c.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if u := c.Sites[0].Routes[0].Proxy.Upgrades; !reflect.DeepEqual(u, []string{"websocket"}) {
		t.Errorf("default upgrades = %q", u)
	}
	c, err = Parse([]byte(proxy("      upgrades = []\n")), "c.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if u := c.Sites[0].Routes[0].Proxy.Upgrades; u == nil || len(u) != 0 {
		t.Errorf("upgrades = [] gave %#v, want none (not the default)", u)
	}
	for _, tc := range []struct{ extra, want string }{
		{"      upgrades = [\"websocket\", \"h2c\"]\n", "c.hcl:5:32: Invalid upgrades; \"h2c\" is never tunnelled"},
		{"      upgrades = [\"H2C\"]\n", "c.hcl:5:19: Invalid upgrades"},
		{"      upgrades = [\"websocket/13\"]\n", "c.hcl:5:19: Invalid upgrades; \"websocket/13\" is not a protocol name"},
		{"      upgrades = [\"a b\"]\n", "c.hcl:5:19: Invalid upgrades"},
		{"      upgrades = \"websocket\"\n", "c.hcl:5:18:"},
	} {
		_, err := Parse([]byte(proxy(tc.extra)), "c.hcl")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %s", tc.extra, err, tc.want)
		}
	}
	// Set in code, without SetDefaults: nil is the default too.
	d := Default()
	d.Sites = []Site{{Name: "s", Hosts: []string{"*"}, Routes: []Route{{Prefix: "/", Proxy: &Proxy{Upstreams: []string{"127.0.0.1:1"}}}}}}
	d.SetDefaults()
	if u := d.Sites[0].Routes[0].Proxy.Upgrades; !reflect.DeepEqual(u, []string{"websocket"}) {
		t.Errorf("SetDefaults: upgrades = %q", u)
	}
}
