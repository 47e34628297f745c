package config

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRateLimitLoad loads rate_limit and shared blocks and the sites and
// routes that name them, with their defaults.
func TestRateLimitLoad(t *testing.T) {
	src := `
rate_limit "per_ip" {
  rate  = "10r/s"
  burst = 20
  size  = "10MiB"
}
rate_limit "per_key" {
  key    = "{header.X-Api-Key}"
  rate   = "600r/m"
  status = 503
}
shared {}
site "s" {
  rate_limit = ["per_ip"]
  route "/" {
    rate_limit = ["per_key", "per_ip"]
    respond {}
  }
}
`
	c, err := Parse([]byte(src), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	want := []RateLimit{
		{Name: "per_ip", Key: "{remote_addr}", Rate: "10r/s", Interval: 100 * time.Millisecond, Burst: 20, Size: 10 << 20, Status: 429},
		{Name: "per_key", Key: "{header.X-Api-Key}", Rate: "600r/m", Interval: 100 * time.Millisecond, Size: DefaultRateLimitSize, Status: 503},
	}
	if len(c.RateLimits) != 2 || c.RateLimits[0] != want[0] || c.RateLimits[1] != want[1] {
		t.Fatalf("rate limits %+v", c.RateLimits)
	}
	if c.Shared == nil || c.Shared.Size != DefaultSharedSize {
		t.Fatalf("shared %+v", c.Shared)
	}
	if got := c.Sites[0].RateLimit; len(got) != 1 || got[0] != "per_ip" {
		t.Fatalf("site rate_limit %v", got)
	}
	if got := c.Sites[0].Routes[0].RateLimit; len(got) != 2 || got[0] != "per_key" {
		t.Fatalf("route rate_limit %v", got)
	}
}

func TestParseRate(t *testing.T) {
	for s, want := range map[string]time.Duration{
		"1r/s": time.Second, "10r/s": 100 * time.Millisecond, "60r/m": time.Second, "3r/s": 333333333, "1000000r/s": time.Microsecond,
	} {
		if got, err := ParseRate(s); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "10", "10r/h", "0r/s", "-1r/s", "1.5r/s", "10 r/s", "2000000r/s"} {
		if _, err := ParseRate(s); err == nil {
			t.Errorf("ParseRate(%q) accepted", s)
		}
	}
}

// TestRateLimitErrors checks each invalid block or reference on its own:
// one diagnostic, at its line.
func TestRateLimitErrors(t *testing.T) {
	route := "  route \"/\" {\n    respond {}\n  }\n"
	tests := []struct {
		name string
		src  string
		line int
		want string
	}{
		{"no rate", "rate_limit \"a\" {\n}\n", 1, `The argument "rate" is required`},
		{"bad rate", "rate_limit \"a\" {\n  rate = \"10r/h\"\n}\n", 2, "Invalid rate"},
		{"zero rate", "rate_limit \"a\" {\n  rate = \"0r/s\"\n}\n", 2, "Invalid rate"},
		{"negative burst", "rate_limit \"a\" {\n  rate = \"1r/s\"\n  burst = -1\n}\n", 3, "Invalid burst"},
		{"small size", "rate_limit \"a\" {\n  rate = \"1r/s\"\n  size = \"1KiB\"\n}\n", 3, "Invalid size"},
		{"bad status", "rate_limit \"a\" {\n  rate = \"1r/s\"\n  status = 200\n}\n", 3, "Invalid status"},
		{"bad key", "rate_limit \"a\" {\n  rate = \"1r/s\"\n  key = \"{client}\"\n}\n", 3, "Invalid key"},
		{"empty key", "rate_limit \"a\" {\n  rate = \"1r/s\"\n  key = \"\"\n}\n", 3, "Invalid key"},
		{"bad name", "rate_limit \"a b\" {\n  rate = \"1r/s\"\n}\n", 1, "Invalid rate_limit name"},
		{"duplicate", "rate_limit \"a\" {\n  rate = \"1r/s\"\n}\nrate_limit \"a\" {\n  rate = \"1r/s\"\n}\n", 4, "Duplicate rate_limit"},
		{"unknown in site", "rate_limit \"a\" {\n  rate = \"1r/s\"\n}\n" + "site \"s\" {\n  rate_limit = [\"a\",\n \"b\"]\n" + route + "}\n", 6, `Unknown rate_limit; No rate_limit block is named "b"`},
		{"unknown in route", "site \"s\" {\n  route \"/\" {\n    rate_limit = [\"x\"]\n    respond {}\n  }\n}\n", 3, `Unknown rate_limit`},
		{"shared size", "shared {\n  size = 100\n}\n", 2, "Invalid size"},
		{"two shared", "shared {}\nshared {}\n", 2, "Duplicate shared block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src), "t.hcl")
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if strings.Count(msg, "t.hcl:") != 1 || !strings.Contains(msg, "t.hcl:"+strconv.Itoa(tt.line)+":") || !strings.Contains(msg, tt.want) {
				t.Fatalf("got %q; want one error at line %d with %q", msg, tt.line, tt.want)
			}
		})
	}
}
