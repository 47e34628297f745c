// Package top computes and renders the frames of `forkd top`: a live view
// of a master and its workers, built from successive answers to the
// control socket's status command.
//
// The master does no arithmetic for it. Each status answer carries every
// worker's cumulative request counter and the time the master received it
// (WorkerStatus.Beat), so the client derives a worker's request rate from
// two answers: the counter's difference over the heartbeats' interval. A
// worker is known by its pid; one that restarts gets a new pid, and thus a
// new rate, never a negative one.
package top

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/forkd/forkd/internal/control"
)

// Sort orders, in the order the s key cycles through them.
const (
	SortSlot  = "slot"  // slot ascending, newer generation first
	SortRate  = "rps"   // request rate, highest first
	SortRSS   = "rss"   // resident memory, largest first
	SortConns = "conns" // open connections, most first
	SortAge   = "age"   // oldest first
)

// SortOrders lists the sort orders in the order NextSort cycles through.
var SortOrders = []string{SortSlot, SortRate, SortRSS, SortConns, SortAge}

// NextSort returns the sort order after s (the first after the last, or
// after an unknown one).
func NextSort(s string) string {
	i := slices.Index(SortOrders, s)
	return SortOrders[(i+1)%len(SortOrders)]
}

// minSpan is the shortest interval between two heartbeats that a rate is
// measured over. Workers send one a second; two received closer together
// were queued while the master's loop was busy, and their receipt times
// say little about when the requests were served.
const minSpan = 500 * time.Millisecond

// rate is what Rates keeps per worker: its counter at its latest heartbeat,
// and the rate over the interval that ended there.
type rate struct {
	beat     time.Time
	requests uint64
	perSec   float64
	known    bool
}

// Rates derives per-worker request rates from successive status answers.
// The zero value is not ready; use NewRates.
type Rates struct {
	byPID map[int]*rate
}

// NewRates returns an empty Rates.
func NewRates() *Rates { return &Rates{byPID: make(map[int]*rate)} }

// Update takes one status answer. A worker whose heartbeat has not moved
// since the previous answer keeps the rate of its latest interval; one
// whose counter went backwards (a reset) has no rate until its next
// heartbeat; workers that are gone are forgotten.
func (r *Rates) Update(st *control.Status) {
	seen := make(map[int]bool, len(st.Workers))
	for _, w := range st.Workers {
		seen[w.PID] = true
		if w.Beat.IsZero() {
			continue // booting: no counters yet
		}
		p, ok := r.byPID[w.PID]
		if !ok {
			r.byPID[w.PID] = &rate{beat: w.Beat, requests: w.Requests}
			continue
		}
		if w.Beat.Sub(p.beat) < minSpan {
			// The same heartbeat, or two read in a burst after the
			// master's loop was held up: measure over a longer span.
			continue
		}
		if w.Requests < p.requests {
			p.perSec, p.known = 0, false
		} else {
			p.perSec = float64(w.Requests-p.requests) / w.Beat.Sub(p.beat).Seconds()
			p.known = true
		}
		p.beat, p.requests = w.Beat, w.Requests
	}
	for pid := range r.byPID {
		if !seen[pid] {
			delete(r.byPID, pid)
		}
	}
}

// Rate returns the request rate of the worker with pid, per second, and
// whether it is known yet (two heartbeats seen).
func (r *Rates) Rate(pid int) (float64, bool) {
	p, ok := r.byPID[pid]
	if !ok || !p.known {
		return 0, false
	}
	return p.perSec, true
}

// Complete reports whether every worker of st that has sent counters has a
// known rate: the first frame of `forkd top` waits for it (within a bound)
// so that its rates are not blank.
func (r *Rates) Complete(st *control.Status) bool {
	for _, w := range st.Workers {
		if w.Beat.IsZero() {
			continue
		}
		if _, ok := r.Rate(w.PID); !ok {
			return false
		}
	}
	return true
}

// sortWorkers orders ws by the sort order by; ties fall back to slot
// order, so the view does not jump between two equal rows.
func sortWorkers(ws []control.WorkerStatus, by string, r *Rates) {
	bySlot := func(a, b control.WorkerStatus) int {
		if c := cmp.Compare(a.Slot, b.Slot); c != 0 {
			return c
		}
		return cmp.Compare(b.Generation, a.Generation)
	}
	rateOf := func(w control.WorkerStatus) float64 {
		v, ok := r.Rate(w.PID)
		if !ok {
			return -1
		}
		return v
	}
	slices.SortStableFunc(ws, func(a, b control.WorkerStatus) int {
		var c int
		switch by {
		case SortRate:
			c = cmp.Compare(rateOf(b), rateOf(a))
		case SortRSS:
			c = cmp.Compare(b.RSS, a.RSS)
		case SortConns:
			c = cmp.Compare(b.OpenConns, a.OpenConns)
		case SortAge:
			c = a.Started.Compare(b.Started)
		}
		if c != 0 {
			return c
		}
		return bySlot(a, b)
	})
}

// formatRate writes a rate with one decimal below 100/s and none above.
func formatRate(v float64) string {
	if v < 100 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}
