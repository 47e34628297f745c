package serve

import (
	"slices"
	"time"

	"github.com/forkd/forkd/protocol"
)

// failed counts a failure of b (nginx's max_fails within fail_timeout) and
// logs it, at most once per second per upstream.
func (p *proxy) failed(b *backend, now int64, msg string, err error) {
	if p.maxFails > 0 {
		if w := b.window.Load(); now-w > int64(p.failTimeout) {
			if b.window.CompareAndSwap(w, now) {
				b.fails.Store(0)
			}
		}
		if b.fails.Add(1) >= p.maxFails {
			b.fails.Store(0)
			b.downUntil.Store(now + int64(p.failTimeout))
			p.logf(b, now, msg+"; upstream marked down", err, "for", p.failTimeout)
			return
		}
	}
	p.logf(b, now, msg, err)
}

// logf writes a rate-limited warning about b.
func (p *proxy) logf(b *backend, now int64, msg string, err error, kv ...any) {
	if ok, n := b.logLim.Allow(time.Unix(0, now)); ok {
		args := append([]any{"upstream", b.addr, "error", err}, kv...)
		if n > 0 {
			args = append(args, "suppressed", n)
		}
		p.logger.Warn(msg, args...)
	}
}

// DownUpstreams lists, sorted and without repeats, the upstreams of h's
// proxy routes that this process holds down at now (max_fails failures
// within fail_timeout), at most max of them; nil for a handler New did
// not make.
func DownUpstreams(h protocol.Handler, now time.Time, max int) []string {
	hh, ok := h.(*handler)
	if !ok {
		return nil
	}
	var out []string
	t := now.UnixNano()
	for _, p := range hh.proxies {
		for _, b := range p.backends {
			if !b.available(t) && !slices.Contains(out, b.addr) {
				out = append(out, b.addr)
			}
		}
	}
	slices.Sort(out)
	if len(out) > max {
		out = out[:max]
	}
	return out
}

// succeeded clears b's failures after a response.
func (b *backend) succeeded() {
	if b.fails.Load() != 0 {
		b.fails.Store(0)
	}
}
