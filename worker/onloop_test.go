package worker

import (
	"testing"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/protocol"
)

// TestOnGoroutines: the worker gives back the master's extra P for an
// application that is not LoopSafe and for proxy routes whose exchanges
// run on goroutines (behind error_pages or compress), not otherwise: a
// proxy route served on the loops keeps it.
func TestOnGoroutines(t *testing.T) {
	hello := protocol.HandlerFunc(func(w *protocol.ResponseWriter, r *protocol.Request) {})
	static := &config.Config{Sites: []config.Site{{Routes: []config.Route{{Static: &config.Static{}}, {Respond: &config.Respond{}}}}}}
	proxy := &config.Config{Sites: []config.Site{{Routes: []config.Route{{Static: &config.Static{}}}}, {Routes: []config.Route{{Proxy: &config.Proxy{}}}}}}
	pages := &config.Config{Sites: []config.Site{{Routes: []config.Route{{Static: &config.Static{}}}},
		{ErrorPages: map[string]string{"502": "/502.html"}, Routes: []config.Route{{Proxy: &config.Proxy{}}}}}}
	routeCompress := &config.Config{Sites: []config.Site{{Routes: []config.Route{{Proxy: &config.Proxy{}, Compress: &config.Compress{}}}}}}
	siteCompress := &config.Config{Sites: []config.Site{{Compress: &config.Compress{}, Routes: []config.Route{{Proxy: &config.Proxy{}}}}}}
	for _, tc := range []struct {
		name string
		cfg  *config.Config
		h    protocol.Handler
		want bool
	}{
		{"static and respond routes", static, nil, false},
		{"a LoopSafe application", static, protocol.Nonblocking(hello), false},
		{"an application that may block", static, hello, true},
		{"a proxy route on the loops", proxy, nil, false},
		{"a proxy route behind error_pages", pages, nil, true},
		{"a proxy route that compresses", routeCompress, nil, true},
		{"a proxy route in a site that compresses", siteCompress, nil, true},
	} {
		if got := onGoroutines(tc.cfg, tc.h); got != tc.want {
			t.Errorf("%s: onGoroutines = %v, want %v", tc.name, got, tc.want)
		}
	}
}
