package serve

import (
	"sync/atomic"

	"github.com/forkd/forkd/protocol"
)

// health is a health route: 200 "ok" while the instance serves, 503
// "draining" once draining is set (drain_delay after TERM), so that a load
// balancer takes the instance out of rotation before its listeners close.
// It answers every method, like a respond route, and is never cached.
type health struct {
	draining *atomic.Bool // nil: never draining
	ok, down *respond
}

func newHealth(draining *atomic.Bool) *health {
	hdr := [][2]string{{"Cache-Control", "no-store"}, {"Content-Type", "text/plain; charset=utf-8"}}
	return &health{
		draining: draining,
		ok:       &respond{status: 200, body: []byte("ok\n"), length: 3, headers: hdr},
		down:     &respond{status: 503, body: []byte("draining\n"), length: 9, headers: hdr},
	}
}

func (h *health) serveRoute(w *protocol.ResponseWriter, r *protocol.Request, p *reqPath) {
	if h.draining != nil && h.draining.Load() {
		h.down.serveRoute(w, r, p)
		return
	}
	h.ok.serveRoute(w, r, p)
}
