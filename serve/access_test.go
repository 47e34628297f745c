package serve

import (
	"encoding/base64"
	"net/netip"
	"testing"

	"github.com/forkd/forkd/config"
	"golang.org/x/crypto/bcrypt"
)

// TestAccessAndBasicAuth checks allow/deny and basic_auth in front of a
// route: 403 and 401 (with the challenge), the site's headers on them,
// and credentials verified once and then remembered.
func TestAccessAndBasicAuth(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	ok := func(body string) *config.Respond { return &config.Respond{Status: 200, Body: body} }
	h := newHandler(t, []config.Site{{
		Name: "s", Hosts: []string{"*"},
		Headers: &config.Headers{Set: map[string]string{"X-Site": "1"}},
		Access:  config.Access{Deny: []string{"192.0.2.0/24"}},
		Routes: []config.Route{
			{Prefix: "/lan/", Access: config.Access{Allow: []string{"10.0.0.0/8"}}, Respond: ok("lan")},
			{Prefix: "/local/", Access: config.Access{Allow: []string{"127.0.0.0/8"}}, Respond: ok("local")},
			{Prefix: "/denied/", Access: config.Access{Allow: []string{"127.0.0.0/8"}, Deny: []string{"127.0.0.1"}}, Respond: ok("no")},
			{Prefix: "/admin/", Access: config.Access{BasicAuth: &config.BasicAuth{Realm: "admin", Users: map[string]string{"alice": string(hash)}}}, Respond: ok("admin")},
			{Prefix: "/", Respond: ok("open")},
		},
	}}, Options{})
	addr := startServer(t, h, nil)
	basic := func(cred string) string {
		return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(cred))
	}
	for _, tt := range []struct {
		name, target, header string
		status               int
		body                 string
	}{
		{"open", "/", "", 200, "open"},
		{"not in allow", "/lan/x", "", 403, "403 Forbidden\n"},
		{"in allow", "/local/x", "", 200, "local"},
		{"deny wins", "/denied/x", "", 403, "403 Forbidden\n"},
		{"no credentials", "/admin/", "", 401, "401 Unauthorized\n"},
		{"wrong password", "/admin/", basic("alice:nope"), 401, "401 Unauthorized\n"},
		{"unknown user", "/admin/", basic("bob:s3cret"), 401, "401 Unauthorized\n"},
		{"not basic", "/admin/", "Authorization: Bearer x", 401, "401 Unauthorized\n"},
		{"bad base64", "/admin/", "Authorization: Basic !!!", 401, "401 Unauthorized\n"},
		{"right", "/admin/", basic("alice:s3cret"), 200, "admin"},
		{"right again (remembered)", "/admin/", basic("alice:s3cret"), 200, "admin"},
		{"scheme in any case", "/admin/", "Authorization: bAsIc " + base64.StdEncoding.EncodeToString([]byte("alice:s3cret")), 200, "admin"},
	} {
		var hdrs []string
		if tt.header != "" {
			hdrs = append(hdrs, tt.header)
		}
		r := get(t, addr, "GET", tt.target, hdrs...)
		if r.status != tt.status || r.body != tt.body {
			t.Errorf("%s: %d %q, want %d %q", tt.name, r.status, r.body, tt.status, tt.body)
		}
		if r.header.Get("X-Site") != "1" {
			t.Errorf("%s: no site header", tt.name)
		}
		if got := r.header.Get("WWW-Authenticate"); (tt.status == 401) != (got != "") {
			t.Errorf("%s: WWW-Authenticate %q", tt.name, got)
		} else if tt.status == 401 && got != `Basic realm="admin", charset="UTF-8"` {
			t.Errorf("%s: WWW-Authenticate %q", tt.name, got)
		}
	}
}

// TestAccessListAdmits checks the allow and deny rules alone.
func TestAccessListAdmits(t *testing.T) {
	l := newAccessList(config.Access{Allow: []string{"10.0.0.0/8", "::1"}, Deny: []string{"10.1.0.0/16"}}, nil)
	for _, tt := range []struct {
		addr string
		want bool
	}{
		{"10.2.3.4", true}, {"10.1.2.3", false}, {"11.0.0.1", false}, {"::1", true}, {"::ffff:10.2.3.4", true},
	} {
		if got := l.admits(mustAddr(t, tt.addr), true); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.addr, got, tt.want)
		}
	}
	if l.admits(mustAddr(t, "10.2.3.4"), false) {
		t.Error("a peer without an address passed an allow list")
	}
	if newAccessList(config.Access{}, nil) != nil {
		t.Error("no lists: a wrapper anyway")
	}
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestBasicAuthSharedBySite checks that a site's basic_auth is one set of
// users for all its routes, so that credentials verified on one route are
// remembered on the others.
func TestBasicAuthSharedBySite(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	h := newHandler(t, []config.Site{{
		Name: "s", Hosts: []string{"*"},
		Access: config.Access{BasicAuth: &config.BasicAuth{Realm: "r", Users: map[string]string{"u": string(hash)}}},
		Routes: []config.Route{
			{Prefix: "/a", Respond: &config.Respond{Status: 200}},
			{Prefix: "/b", Respond: &config.Respond{Status: 200}},
		},
	}}, Options{}).(*handler)
	if len(h.auths) != 1 {
		t.Fatalf("%d sets of users, want 1", len(h.auths))
	}
	addr := startServer(t, h, nil)
	cred := "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("u:pw"))
	for _, path := range []string{"/a", "/b", "/nothing"} {
		r := get(t, addr, "GET", path, cred)
		if want := map[bool]int{true: 404, false: 200}[path == "/nothing"]; r.status != want {
			t.Errorf("%s: %d, want %d", path, r.status, want)
		}
	}
	for _, users := range h.auths {
		users.mu.RLock()
		n := len(users.verified)
		users.mu.RUnlock()
		if n != 1 {
			t.Errorf("%d credentials remembered, want 1", n)
		}
	}
	if r := get(t, addr, "GET", "/nothing"); r.status != 401 {
		t.Errorf("the site's 404 without credentials: %d, want 401", r.status)
	}
}
