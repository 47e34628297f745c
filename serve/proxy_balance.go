package serve

import (
	"sync/atomic"

	"github.com/forkd/forkd/internal/lograte"
	"github.com/forkd/forkd/protocol/upstream"
)

// backend is one upstream of a proxy route, with its pool and health.
type backend struct {
	addr   string // as configured, for logs
	pool   *upstream.Pool
	weight int
	cur    int // smooth weighted round robin state, under proxy.mu

	active    atomic.Int32 // requests in flight, for least_conn
	fails     atomic.Int32 // failures in the current window
	window    atomic.Int64 // unix nanoseconds the failure window started
	downUntil atomic.Int64 // unix nanoseconds; skipped before then

	logLim *lograte.Limiter
}

// available reports whether b may be tried at now (unix nanoseconds).
func (b *backend) available(now int64) bool { return b.downUntil.Load() <= now }

// pick chooses the backend for the next attempt among those available and
// not yet tried: smooth weighted round robin (nginx's: every pick adds
// each candidate's weight to its current value, takes the largest and
// subtracts the total from it) or the fewest requests in flight per weight.
func (p *proxy) pick(tried []bool, now int64) int {
	if p.leastConn {
		best := -1
		n := len(p.backends)
		start := int(p.rr.Add(1)) // ties go round robin
		for k := range n {
			i := (start + k) % n
			b := p.backends[i]
			if tried[i] || !b.available(now) {
				continue
			}
			if best < 0 {
				best = i
				continue
			}
			bb := p.backends[best]
			if int64(b.active.Load())*int64(bb.weight) < int64(bb.active.Load())*int64(b.weight) {
				best = i
			}
		}
		return best
	}
	if len(p.backends) == 1 {
		if tried[0] || !p.backends[0].available(now) {
			return -1
		}
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	best, total := -1, 0
	for i, b := range p.backends {
		if tried[i] || !b.available(now) {
			continue
		}
		b.cur += b.weight
		total += b.weight
		if best < 0 || b.cur > p.backends[best].cur {
			best = i
		}
	}
	if best >= 0 {
		p.backends[best].cur -= total
	}
	return best
}
