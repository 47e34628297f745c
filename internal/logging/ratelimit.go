package logging

import (
	"sync/atomic"
	"time"
)

// Limiter lets one log line through per interval and counts the ones it
// holds back, so an error that repeats under load costs a line per interval
// instead of a line per request. The zero value lets one line through per
// second. It is safe for concurrent use.
type Limiter struct {
	Every time.Duration // the interval; 0 means a second

	next atomic.Int64 // unix nanoseconds before which lines are held back
	held atomic.Uint64
}

// Allow reports whether a line may be logged at now, and how many lines
// were held back since the last one that passed (log it with the line).
func (l *Limiter) Allow(now time.Time) (ok bool, suppressed uint64) {
	every := l.Every
	if every <= 0 {
		every = time.Second
	}
	t := now.UnixNano()
	n := l.next.Load()
	if t < n || !l.next.CompareAndSwap(n, t+int64(every)) {
		l.held.Add(1)
		return false, 0
	}
	return true, l.held.Swap(0)
}
