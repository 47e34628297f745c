package serve

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"testing"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/protocol"
)

var generatedID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// TestRequestID checks request_id: generated, or kept from a trusted peer
// when well formed; sent back on every response (a 403 included),
// forwarded upstream, and in Request.ID for the access log.
func TestRequestID(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Up-Id", r.Header.Get("X-Request-Id"))
		w.Header().Set("X-Up-Count", string(rune('0'+len(r.Header.Values("X-Request-Id")))))
	}))
	t.Cleanup(up.Close)
	h := newHandler(t, []config.Site{{
		Name: "s", Hosts: []string{"*"}, Access: config.Access{RequestID: "X-Request-Id"},
		Routes: []config.Route{
			{Prefix: "/api/", Proxy: &config.Proxy{
				Upstreams: []string{upstreamAddr(up)}, ConnectTimeout: testTimeout, ResponseTimeout: testTimeout,
				Balance: config.BalanceRoundRobin, FailTimeout: testTimeout, KeepaliveTimeout: testTimeout, Host: config.ProxyHostClient,
			}},
			{Prefix: "/closed/", Access: config.Access{Allow: []string{"10.0.0.0/8"}}, Respond: &config.Respond{Status: 200}},
			{Prefix: "/", Respond: &config.Respond{Status: 200, Body: "ok"}},
		},
	}}, Options{})
	logged := make(chan string, 16)
	logf := func(r *protocol.Request, w *protocol.ResponseWriter, _ time.Time) {
		logged <- string(r.ID)
	}
	lnU, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lnT, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	untrusted := serveWith(t, h, lnU, protocol.ListenOptions{}, logf)
	trusted := serveWith(t, h, lnT, protocol.ListenOptions{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}, logf)

	for _, tt := range []struct {
		name, addr, target, sent string
		kept                     bool
		status                   int
	}{
		{"generated", untrusted, "/", "", false, 200},
		{"untrusted peer's replaced", untrusted, "/", "abc-123", false, 200},
		{"trusted peer's kept", trusted, "/", "abc-123", true, 200},
		{"malformed replaced", trusted, "/", "a b", false, 200},
		{"on a 403", untrusted, "/closed/", "", false, 403},
		{"forwarded", trusted, "/api/x", "req.7", true, 200},
		{"forwarded, generated", untrusted, "/api/x", "zzz", false, 200},
	} {
		var hdrs []string
		if tt.sent != "" {
			hdrs = append(hdrs, "X-Request-Id: "+tt.sent)
		}
		r := get(t, tt.addr, "GET", tt.target, hdrs...)
		id := r.header.Get("X-Request-Id")
		switch {
		case r.status != tt.status:
			t.Errorf("%s: status %d", tt.name, r.status)
		case tt.kept && id != tt.sent:
			t.Errorf("%s: ID %q, want %q kept", tt.name, id, tt.sent)
		case !tt.kept && !generatedID.MatchString(id):
			t.Errorf("%s: ID %q, want a generated one", tt.name, id)
		}
		if tt.target == "/api/x" && (r.header.Get("X-Up-Id") != id || r.header.Get("X-Up-Count") != "1") {
			t.Errorf("%s: upstream got %q (%s fields), want %q", tt.name, r.header.Get("X-Up-Id"), r.header.Get("X-Up-Count"), id)
		}
		select {
		case got := <-logged:
			if got != id {
				t.Errorf("%s: logged ID %q, want %q", tt.name, got, id)
			}
		case <-time.After(testTimeout):
			t.Fatalf("%s: no log line", tt.name)
		}
	}
}

// TestAccessLogRequestID checks that both formats write the ID, and that
// lines without one are as before.
func TestAccessLogRequestID(t *testing.T) {
	e := logEntry{method: []byte("GET"), target: []byte("/"), major: 1, minor: 1, status: 200, id: []byte("abc-1")}
	start := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	if got := string(e.appendText(nil, start, 0, 1)); !regexp.MustCompile(` pid=1 dur_ms=0\.000 request_id=abc-1\n$`).MatchString(got) {
		t.Errorf("combined: %q", got)
	}
	if got := string(e.appendJSON(nil, start, 0, 1)); !regexp.MustCompile(`,"request_id":"abc-1"}\n$`).MatchString(got) {
		t.Errorf("json: %q", got)
	}
	e.id = nil
	if got := string(e.appendText(nil, start, 0, 1)); !regexp.MustCompile(` dur_ms=0\.000\n$`).MatchString(got) {
		t.Errorf("combined without an ID: %q", got)
	}
}

// TestRequestIDEmbedded checks that a site's middleware also stands in
// front of the embedding program's handler for the paths no route
// matches: a net/http handler sees the request's ID in its field, and the
// response carries it and the site's headers.
func TestRequestIDEmbedded(t *testing.T) {
	app := protocol.FromHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("app saw " + r.Header.Get("X-Request-Id")))
	}))
	h := newHandler(t, []config.Site{{
		Name: "s", Hosts: []string{"*"}, Access: config.Access{RequestID: "X-Request-Id"},
		Headers: &config.Headers{Set: map[string]string{"X-Site": "1"}},
		Routes:  []config.Route{{Prefix: "/fixed", Respond: &config.Respond{Status: 200}}},
	}}, Options{Fallback: app})
	addr := startServer(t, h, nil)
	r := get(t, addr, "GET", "/app", "X-Request-Id: from-client")
	id := r.header.Get("X-Request-Id")
	if r.status != 200 || !generatedID.MatchString(id) || r.body != "app saw "+id || r.header.Get("X-Site") != "1" {
		t.Errorf("%d %q, ID %q, X-Site %q", r.status, r.body, id, r.header.Get("X-Site"))
	}
}
