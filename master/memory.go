package master

import (
	"time"

	"github.com/forkd/forkd/internal/control"
)

// checkMemory recycles a worker whose resident set stays above
// max_worker_memory for max_worker_memory_window, the way max_requests
// recycles one: a successor starts, and the worker drains once it serves.
//
// The window answers the usual objection to memory limits (they can be
// temporary): RSS is read from every heartbeat, and a worker is recycled
// only if no heartbeat in the window showed it at or below the limit. One
// worker at a time is recycled, so capacity never drops by more than the
// one slot whose successor is booting.
func (m *Master) checkMemory(now time.Time) {
	limit := m.cfg.MaxWorkerMemory
	if limit == 0 {
		return
	}
	var candidate *worker
	for _, w := range m.workers {
		if w.txn != nil || w.gen != m.gen || w.stopping {
			continue
		}
		if w.retiring != stopNone {
			return // one at a time: wait for that one's successor
		}
		if !w.ready || w.overMemory.IsZero() || now.Sub(w.overMemory) < m.cfg.MaxWorkerMemoryWindow {
			continue
		}
		if candidate == nil || w.overMemory.Before(candidate.overMemory) {
			candidate = w
		}
	}
	if candidate == nil {
		return
	}
	candidate.retiring = stopMemory
	m.log.Warn("worker above max_worker_memory; recycling it gracefully",
		"worker_pid", candidate.pid, "slot", candidate.slot,
		"rss", control.FormatBytes(candidate.beat.RSS), "rss_bytes", candidate.beat.RSS,
		"limit", control.FormatBytes(limit), "above_for", now.Sub(candidate.overMemory).Round(time.Second).String())
}

// noteMemory records, from a heartbeat, since when w is above the limit.
func (m *Master) noteMemory(w *worker, now time.Time) {
	switch limit := m.cfg.MaxWorkerMemory; {
	case limit == 0 || w.beat.RSS <= limit:
		w.overMemory = time.Time{}
	case w.overMemory.IsZero():
		w.overMemory = now
	}
}
