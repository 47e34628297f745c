package serve

import (
	"fmt"
	"strconv"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/zone"
	"github.com/forkd/forkd/protocol"
)

// rateLimit answers a rate_limit block's status, with Retry-After, to a
// request whose key has used up its rate and burst, and passes the others
// on. The key is expanded into the request's scratch buffer (reqPath.key)
// and the check is a few atomic operations on the zone the master shares
// with every worker: nothing allocates and nothing blocks, so it runs on
// the event loop like the route.
type rateLimit struct {
	lim    *zone.Limiter
	key    *template
	status int
	next   routeHandler
}

// newRateLimits wraps next in the rate limits names lists, the first
// name outermost.
func (h *handler) newRateLimits(names []string, next routeHandler) (routeHandler, error) {
	for i := len(names) - 1; i >= 0; i-- {
		z, err := h.zoneFor(names[i])
		if err != nil {
			return nil, err
		}
		next = &rateLimit{lim: z.lim, key: z.key, status: z.block.Status, next: next}
	}
	return next, nil
}

func (l *rateLimit) serveRoute(w *protocol.ResponseWriter, r *protocol.Request, p *reqPath) {
	p.key = l.key.appendTo(p.key[:0], r, p)
	if len(p.key) == 0 {
		// As nginx's limit_req: a request whose key is empty (no such
		// header, a unix-socket client's address) is not counted.
		l.next.serveRoute(w, r, p)
		return
	}
	ok, retry := l.lim.Allow(p.key)
	if ok {
		l.next.serveRoute(w, r, p)
		return
	}
	var buf [20]byte
	w.Header().SetBytes("Retry-After", strconv.AppendInt(buf[:0], retryAfter(retry), 10))
	writeError(w, l.status)
}

// retryAfter is Retry-After's delay-seconds for retry: rounded up, and at
// least 1 (RFC 9110 section 10.2.3).
func retryAfter(retry time.Duration) int64 {
	return max(1, int64((retry+time.Second-1)/time.Second))
}

// rateZone is one rate_limit block of the configuration with its zone.
type rateZone struct {
	block config.RateLimit
	lim   *zone.Limiter
	key   *template
	own   bool // made here (no master gave one): closed with the handler
}

// zoneFor returns the zone of the rate_limit block name: the one the master
// handed over (Options.Zones), or, in a process without a master (tests,
// a handler built on its own), one made for this process alone.
func (h *handler) zoneFor(name string) (*rateZone, error) {
	if z, ok := h.zones[name]; ok {
		return z, nil
	}
	var block *config.RateLimit
	for i := range h.rateLimits {
		if h.rateLimits[i].Name == name {
			block = &h.rateLimits[i]
		}
	}
	if block == nil {
		return nil, fmt.Errorf("rate_limit %q: no such block", name)
	}
	key, err := newTemplate(block.Key)
	if err != nil {
		return nil, fmt.Errorf("rate_limit %q: %w", name, err)
	}
	z := &rateZone{block: *block, key: key}
	if lim := h.sharedZones[name]; lim != nil {
		z.lim = lim
	} else if h.sharedZones != nil {
		// A master handed zones over but not this one: a zone of our own
		// would hold per worker only, a silent factor of N.
		return nil, fmt.Errorf("rate_limit %q: the master handed over no zone for it", name)
	} else {
		lim, err := zone.NewLimiter(block.ZoneSpec())
		if err != nil {
			return nil, err
		}
		z.lim, z.own = lim, true
	}
	h.zones[name] = z
	return z, nil
}
