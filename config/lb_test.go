package config

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestLoadBalancerKeys loads drain_delay, a health route and a listener's
// trusted networks.
func TestLoadBalancerKeys(t *testing.T) {
	c, err := Parse([]byte(`
drain_delay = "1500ms"
listen {
  address        = "127.0.0.1:0"
  proxy_protocol = true
  trusted        = ["127.0.0.1/32", "10.0.0.0/8", "::1", "fd00::/8"]
}
site "s" {
  route "/ready" {
    health {}
  }
}
`), "c.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if c.DrainDelay != 1500*time.Millisecond {
		t.Errorf("drain_delay = %v", c.DrainDelay)
	}
	if r := c.Sites[0].Routes[0]; r.Health == nil || r.Static != nil || r.Respond != nil {
		t.Errorf("route = %+v", r)
	}
	want := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("fd00::/8")}
	if !c.Listen[0].ProxyProtocol {
		t.Error("proxy_protocol = true not loaded")
	}
	if got := c.Listen[0].TrustedPrefixes(); !reflect.DeepEqual(got, want) {
		t.Errorf("trusted = %v, want %v", got, want)
	}
	if d := Default(); d.DrainDelay != 0 {
		t.Errorf("default drain_delay = %v", d.DrainDelay)
	}
}

// TestTrustedWithoutProxyProtocol: trusted alone names the peers whose
// forwarding headers proxy routes believe.
func TestTrustedWithoutProxyProtocol(t *testing.T) {
	c, err := Parse([]byte("listen {\n  address = \"127.0.0.1:80\"\n  trusted = [\"127.0.0.1/32\", \"10.0.0.0/8\"]\n}\n"), "c.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if l := c.Listen[0]; l.ProxyProtocol || len(l.TrustedPrefixes()) != 2 {
		t.Errorf("listen = %+v", l)
	}
}

// TestProxyProtocolChecks covers the checks that need more than one key.
func TestProxyProtocolChecks(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string // one per diagnostic, in order
	}{
		{"no trusted", "listen {\n  address = \"127.0.0.1:80\"\n  proxy_protocol = true\n}\n",
			[]string{"c.hcl:3:", "Missing trusted"}},
		{"unix with trusted", "listen {\n  address = \"unix:/tmp/x.sock\"\n  proxy_protocol = true\n  trusted = [\"10.0.0.0/8\"]\n}\n",
			[]string{"c.hcl:4:", "Invalid trusted"}},
		{"unix with trusted, no proxy_protocol", "listen {\n  address = \"unix:/tmp/x.sock\"\n  trusted = [\"10.0.0.0/8\"]\n}\n",
			[]string{"c.hcl:3:", "Invalid trusted"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src), "c.hcl")
			var e *Error
			if !errors.As(err, &e) || len(e.Diags) != len(tt.want)/2 {
				t.Fatalf("error %v, want %d problems", err, len(tt.want)/2)
			}
			for i, line := range strings.Split(e.Error(), "\n") {
				if !strings.HasPrefix(line, tt.want[2*i]) || !strings.Contains(line, tt.want[2*i+1]) {
					t.Errorf("problem %d: %q, want %q ... %q", i, line, tt.want[2*i], tt.want[2*i+1])
				}
			}
		})
	}
}
