// Package lograte keeps an error that repeats under load (a malformed PROXY
// header from every connection of a misconfigured balancer, say) from
// flooding the log: a Limiter lets one occurrence through per interval and
// counts the others, and the line that gets through says how many were left
// out. It has no dependencies, so the protocol package can use it, and it
// neither locks nor allocates.
package lograte

import (
	"sync/atomic"
	"time"
)

// Limiter lets one event through per interval. The zero value lets every
// event through; use New. It is safe for concurrent use.
type Limiter struct {
	every   int64        // nanoseconds
	next    atomic.Int64 // unix nanoseconds before which events are counted, not logged
	dropped atomic.Uint64
}

// New returns a Limiter that lets one event through per every.
func New(every time.Duration) *Limiter {
	return &Limiter{every: int64(every)}
}

// Allow reports whether the event happening at now should be logged; when
// it should, suppressed is the number of events left out since the last
// one logged (log it with the line, as "suppressed", when not zero).
//
//	if ok, n := lim.Allow(time.Now()); ok {
//		log.Warn("malformed PROXY header; closing", "remote", addr, "error", err, "suppressed", n)
//	}
func (l *Limiter) Allow(now time.Time) (ok bool, suppressed uint64) {
	t := now.UnixNano()
	for {
		next := l.next.Load()
		if t < next {
			l.dropped.Add(1)
			return false, 0
		}
		if l.next.CompareAndSwap(next, t+l.every) {
			return true, l.dropped.Swap(0)
		}
	}
}
