package serve

import (
	"io"
	"net"
	"testing"

	"github.com/forkd/forkd/config"
)

// TestSitesPerListener serves two listeners whose sites both match every
// host: each connection gets the sites of the listener it arrived on, the
// one bound to its address before one bound to every interface.
func TestSitesPerListener(t *testing.T) {
	lnA, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lnB, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	respond := func(body string) []config.Route {
		return []config.Route{{Prefix: "/", Respond: &config.Respond{Status: 200, Body: body}}}
	}
	cfg := &config.Config{
		Listen: []config.Listen{{Address: "127.0.0.1:1", Name: "a"}, {Address: "0.0.0.0:2", Name: "b"}},
		Sites: []config.Site{
			{Name: "a", Hosts: []string{"*"}, Listen: []string{"a"}, Routes: respond("a")},
			{Name: "b", Hosts: []string{"*"}, Listen: []string{"b"}, Routes: respond("b")},
			{Name: "both", Hosts: []string{"both.example"}, Routes: respond("both")},
		},
	}
	bound := map[string]net.Addr{"127.0.0.1:1": lnA.Addr(), "0.0.0.0:2": &net.TCPAddr{Port: lnB.Addr().(*net.TCPAddr).Port}}
	h, err := New(cfg, Options{Bound: bound})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.(io.Closer).Close() })
	addrA, addrB := serveListener(t, h, lnA), serveListener(t, h, lnB)
	for _, tt := range []struct{ addr, host, want string }{
		{addrA, "example.com", "a"},
		{addrB, "example.com", "b"},
		{addrA, "both.example", "both"},
		{addrB, "both.example", "both"},
	} {
		r := rawRequest(t, tt.addr, "GET", "GET / HTTP/1.1\r\nHost: "+tt.host+"\r\nConnection: close\r\n\r\n")
		if r.status != 200 || r.body != tt.want {
			t.Errorf("%s Host %s: %d %q, want 200 %q", tt.addr, tt.host, r.status, r.body, tt.want)
		}
	}
	// A connection on no configured listener gets the sites of every
	// listener alone.
	other := startServer(t, h, nil)
	if r := rawRequest(t, other, "GET", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); r.status != 404 {
		t.Errorf("unknown listener: %d %q, want 404", r.status, r.body)
	}
}
