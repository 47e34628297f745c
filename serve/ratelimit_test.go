package serve

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/zone"
	"github.com/forkd/forkd/protocol"
)

// TestRateLimitRoute checks a site's and a route's rate limits: burst+1
// requests pass, the next gets the block's status with Retry-After, and
// keys (here a header) are counted apart.
func TestRateLimitRoute(t *testing.T) {
	ok := &config.Respond{Status: 200, Body: "ok"}
	cfg := &config.Config{
		RateLimits: []config.RateLimit{
			{Name: "site", Key: "{remote_addr}", Interval: time.Minute, Burst: 5, Size: zone.MinSize, Status: 429},
			{Name: "per_key", Key: "{header.X-Key}", Interval: time.Minute, Burst: 1, Size: zone.MinSize, Status: 503},
		},
		Sites: []config.Site{{
			Name: "s", Hosts: []string{"*"}, Access: config.Access{RateLimit: []string{"site"}},
			Headers: &config.Headers{Set: map[string]string{"X-Site": "1"}},
			Routes: []config.Route{
				{Prefix: "/keyed/", Access: config.Access{RateLimit: []string{"per_key"}}, Respond: ok},
				{Prefix: "/", Respond: ok},
			},
		}},
	}
	h, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.(interface{ Close() error }).Close()
	addr := startServer(t, h, nil)
	for i, tt := range []struct {
		target, header string
		status         int
	}{
		{"/keyed/", "X-Key: a", 200},
		{"/keyed/", "X-Key: a", 200},
		{"/keyed/", "X-Key: a", 503}, // per_key's burst 1 used up; the site's counted 3
		{"/keyed/", "", 200},         // no key: per_key does not count it (nginx's rule)
		{"/keyed/", "X-Key: b", 200}, // another key
		{"/", "", 200},               // the site's 6th: burst 5 used up
		{"/", "", 429},
		{"/keyed/", "X-Key: c", 429}, // the site's limit comes first
	} {
		var hdrs []string
		if tt.header != "" {
			hdrs = append(hdrs, tt.header)
		}
		r := get(t, addr, "GET", tt.target, hdrs...)
		if r.status != tt.status {
			t.Fatalf("request %d %s %s: status %d, want %d", i, tt.target, tt.header, r.status, tt.status)
		}
		if r.status == 200 {
			continue
		}
		ra, err := strconv.Atoi(r.header.Get("Retry-After"))
		if err != nil || ra < 1 || ra > 60 {
			t.Fatalf("request %d: Retry-After %q", i, r.header.Get("Retry-After"))
		}
		if r.header.Get("X-Site") != "1" {
			t.Fatalf("request %d: the refusal lacks the site's headers", i)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	for d, want := range map[time.Duration]int64{
		0: 1, time.Microsecond: 1, time.Second: 1, time.Second + 1: 2, 59500 * time.Millisecond: 60,
	} {
		if got := retryAfter(d); got != want {
			t.Errorf("retryAfter(%v) = %d, want %d", d, got, want)
		}
	}
}

type nopRoute struct{}

func (nopRoute) serveRoute(*protocol.ResponseWriter, *protocol.Request, *reqPath) {}

func newCheck(t testing.TB) (*rateLimit, *protocol.Request, *reqPath) {
	t.Helper()
	lim, err := zone.NewLimiter(zone.Spec{Name: "b", Size: 1 << 20, Interval: time.Nanosecond * 1000, Tau: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lim.Close() })
	key, err := newTemplate("{remote_addr}")
	if err != nil {
		t.Fatal(err)
	}
	l := &rateLimit{lim: lim, key: key, status: 429, next: nopRoute{}}
	r := &protocol.Request{Path: []byte("/"), RemoteAddr: &net.TCPAddr{IP: net.IPv4(203, 0, 113, 9), Port: 4711}}
	p := &reqPath{buf: make([]byte, 0, 256)}
	p.clean(r.Path)
	return l, r, p
}

// TestRateLimitAllocs: a check, key expansion included, allocates nothing.
func TestRateLimitAllocs(t *testing.T) {
	l, r, p := newCheck(t)
	if n := testing.AllocsPerRun(1000, func() { l.serveRoute(nil, r, p) }); n != 0 {
		t.Fatalf("%v allocations per check", n)
	}
}

// BenchmarkRateLimitCheck measures one allowed check: the key expanded
// from the client address, hashed, and the zone's compare-and-swap.
func BenchmarkRateLimitCheck(b *testing.B) {
	l, r, p := newCheck(b)
	b.ReportAllocs()
	for b.Loop() {
		l.serveRoute(nil, r, p)
	}
}

// TestRateLimitNeedsHandedZone: with zones from a master, a block it gave
// no zone for fails New instead of limiting per process.
func TestRateLimitNeedsHandedZone(t *testing.T) {
	cfg := &config.Config{
		RateLimits: []config.RateLimit{{Name: "a", Key: "{remote_addr}", Interval: time.Second, Size: zone.MinSize, Status: 429}},
		Sites: []config.Site{{Name: "s", Hosts: []string{"*"}, Access: config.Access{RateLimit: []string{"a"}},
			Routes: []config.Route{{Prefix: "/", Respond: &config.Respond{Status: 200}}}}},
	}
	if _, err := New(cfg, Options{Zones: map[string]*zone.Limiter{}}); err == nil {
		t.Fatal("New accepted a rate_limit without its zone")
	}
}
