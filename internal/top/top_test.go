package top

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/forkd/forkd/internal/control"
)

var t0 = time.Date(2026, 12, 5, 14, 0, 0, 0, time.UTC)

func worker(slot, pid, gen int, beat time.Duration, requests uint64) control.WorkerStatus {
	w := control.WorkerStatus{Slot: slot, PID: pid, Generation: gen, Started: t0.Add(-time.Minute),
		Requests: requests, State: "ready"}
	if beat >= 0 {
		w.Beat = t0.Add(beat)
	}
	return w
}

func TestRates(t *testing.T) {
	r := NewRates()
	st := &control.Status{Workers: []control.WorkerStatus{worker(0, 100, 1, 0, 1000), worker(1, 101, 1, -1, 0)}}
	r.Update(st)
	if _, ok := r.Rate(100); ok {
		t.Fatal("a rate after one sample")
	}
	if r.Complete(st) {
		t.Fatal("complete after one sample")
	}
	// Same heartbeat again: still no rate.
	r.Update(st)
	if _, ok := r.Rate(100); ok {
		t.Fatal("a rate from one heartbeat seen twice")
	}
	st = &control.Status{Workers: []control.WorkerStatus{worker(0, 100, 1, 2*time.Second, 3000), worker(1, 101, 1, -1, 0)}}
	r.Update(st)
	if v, ok := r.Rate(100); !ok || v != 1000 {
		t.Fatalf("rate = %v, %v; want 1000/s", v, ok)
	}
	if !r.Complete(st) {
		t.Fatal("not complete: the booting worker (no heartbeat) should not count")
	}
	// The heartbeat has not moved: the rate of the last interval stays.
	r.Update(st)
	if v, _ := r.Rate(100); v != 1000 {
		t.Fatalf("rate = %v after an unchanged heartbeat; want 1000 kept", v)
	}
	// A counter that goes backwards (reset) gives no rate, never a
	// negative one; the next heartbeat gives one again.
	r.Update(&control.Status{Workers: []control.WorkerStatus{worker(0, 100, 1, 3*time.Second, 10)}})
	if v, ok := r.Rate(100); ok || v < 0 {
		t.Fatalf("rate after a reset = %v, %v; want unknown", v, ok)
	}
	r.Update(&control.Status{Workers: []control.WorkerStatus{worker(0, 100, 1, 4*time.Second, 510)}})
	if v, ok := r.Rate(100); !ok || v != 500 {
		t.Fatalf("rate = %v, %v; want 500/s", v, ok)
	}
	// The slot's worker restarts: a new pid starts afresh, with a lower
	// counter, and the old pid is forgotten.
	r.Update(&control.Status{Workers: []control.WorkerStatus{worker(0, 200, 1, 5*time.Second, 7)}})
	if _, ok := r.Rate(100); ok {
		t.Fatal("the exited worker still has a rate")
	}
	if _, ok := r.Rate(200); ok {
		t.Fatal("the new worker has a rate after one heartbeat")
	}
	// Two heartbeats read 100ms apart (queued while the master was busy)
	// give no rate of their own: the span grows to the next one.
	r.Update(&control.Status{Workers: []control.WorkerStatus{worker(0, 200, 1, 5100*time.Millisecond, 1007)}})
	if _, ok := r.Rate(200); ok {
		t.Fatal("a rate over 100ms between two heartbeats")
	}
	r.Update(&control.Status{Workers: []control.WorkerStatus{worker(0, 200, 1, 6*time.Second, 1007)}})
	if v, ok := r.Rate(200); !ok || v != 1000 {
		t.Fatalf("rate = %v, %v; want 1000/s", v, ok)
	}
}

func TestSortOrders(t *testing.T) {
	r := NewRates()
	ws := []control.WorkerStatus{
		{Slot: 2, PID: 12, Generation: 1, Started: t0.Add(-3 * time.Minute), RSS: 30, OpenConns: 1, Beat: t0, Requests: 0},
		{Slot: 0, PID: 10, Generation: 1, Started: t0.Add(-1 * time.Minute), RSS: 10, OpenConns: 3, Beat: t0, Requests: 0},
		{Slot: 1, PID: 11, Generation: 1, Started: t0.Add(-2 * time.Minute), RSS: 20, OpenConns: 2, Beat: t0, Requests: 0},
	}
	r.Update(&control.Status{Workers: ws})
	next := slices.Clone(ws)
	next[0].Beat, next[0].Requests = t0.Add(time.Second), 50  // pid 12: 50/s
	next[1].Beat, next[1].Requests = t0.Add(time.Second), 100 // pid 10: 100/s
	next[2].Beat, next[2].Requests = t0.Add(time.Second), 10  // pid 11: 10/s
	r.Update(&control.Status{Workers: next})
	want := map[string][]int{
		SortSlot:  {10, 11, 12},
		SortRate:  {10, 12, 11},
		SortRSS:   {12, 11, 10},
		SortConns: {10, 11, 12},
		SortAge:   {12, 11, 10},
	}
	s := SortSlot
	for range SortOrders {
		got := slices.Clone(next)
		sortWorkers(got, s, r)
		var pids []int
		for _, w := range got {
			pids = append(pids, w.PID)
		}
		if !slices.Equal(pids, want[s]) {
			t.Errorf("sort %s: pids %v, want %v", s, pids, want[s])
		}
		s = NextSort(s)
	}
	if s != SortSlot {
		t.Errorf("NextSort does not cycle back to %s: %s", SortSlot, s)
	}
}

func TestRender(t *testing.T) {
	st := &control.Status{
		MasterPID: 99, Started: t0.Add(-2 * time.Hour), Generation: 2, Config: "/etc/forkd/config.hcl",
		State: control.StateRunning, Reloading: false, Now: t0,
		LastReload: &control.ReloadOutcome{At: t0.Add(-90 * time.Second), OK: true},
		Workers: []control.WorkerStatus{
			{Slot: 0, PID: 210, Generation: 2, Started: t0.Add(-90 * time.Second), Requests: 5000, OpenConns: 3, RSS: 9 << 20, State: "ready", Beat: t0.Add(-time.Second)},
			{Slot: 0, PID: 110, Generation: 1, Started: t0.Add(-time.Hour), Requests: 800, OpenConns: 1, RSS: 8 << 20, State: "stopping", Beat: t0.Add(-time.Second)},
			{Slot: 1, PID: 211, Generation: 2, Started: t0.Add(-90 * time.Second), Requests: 4000, OpenConns: 2, RSS: 10 << 20, State: "ready", Beat: t0.Add(-time.Second)},
		},
	}
	r := NewRates()
	prev := &control.Status{Workers: slices.Clone(st.Workers)}
	for i := range prev.Workers {
		prev.Workers[i].Beat = t0.Add(-2 * time.Second)
		prev.Workers[i].Requests -= 100 * uint64(i+1)
	}
	r.Update(prev)
	r.Update(st)
	raw, _ := json.Marshal(st)
	var b strings.Builder
	if err := Render(&b, Frame{Status: st, Raw: raw, Rates: r, Sort: SortSlot}); err != nil {
		t.Fatal(err)
	}
	want := `forkd top  2026-12-05 14:00:00Z  master 99  running  generation 2  up 2h00m
config: /etc/forkd/config.hcl
last reload: applied 1m30s ago
workers: 2, 1 of older generations draining  total: 600 req/s  6 conns  RSS 27.0MiB
sort: slot

SLOT  PID  GEN  AGE    REQ/S  REQUESTS  CONNS  RSS      STATE
0     210  2    1m30s  100    5000      3      9.0MiB   ready
1     211  2    1m30s  300    4000      2      10.0MiB  ready

draining (older generations):
SLOT  PID  GEN  AGE    REQ/S  REQUESTS  CONNS  RSS     STATE
0     110  1    1h00m  200    800       1      8.0MiB  draining
`
	if got := b.String(); got != want {
		t.Errorf("frame:\n%s\nwant:\n%s", got, want)
	}
}

func TestRenderStates(t *testing.T) {
	st := &control.Status{MasterPID: 7, Started: t0, Generation: 3, State: control.StateDraining,
		DrainEnds: t0.Add(2500 * time.Millisecond), Reloading: true, Now: t0,
		LastReload: &control.ReloadOutcome{At: t0.Add(-5 * time.Second), Error: "bad\x1b[2Jconfig"}}
	var b strings.Builder
	Render(&b, Frame{Status: st, Sort: SortRate, Keys: true})
	out := b.String()
	for _, s := range []string{
		"draining (listeners close in 2.5s), reloading",
		"config: (built-in defaults)",
		"reload in progress (new generation booting); last reload: FAILED 5s ago: bad [2Jconfig",
		"workers: 0  total: 0.0 req/s",
		"sort: rps  (s: next sort, q: quit)",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("frame lacks %q:\n%s", s, out)
		}
	}
	if strings.ContainsRune(out, 0x1b) {
		t.Errorf("frame carries an escape character:\n%q", out)
	}

	b.Reset()
	Render(&b, Frame{Now: t0})
	if !strings.Contains(b.String(), "waiting for the master's first answer") {
		t.Errorf("frame before the first answer:\n%s", b.String())
	}
	b.Reset()
	Render(&b, Frame{Now: t0, Err: errors.New("no forkd master is running")})
	if !strings.Contains(b.String(), "master not reachable: no forkd master is running") {
		t.Errorf("unreachable frame:\n%s", b.String())
	}
}

func TestRenderBounds(t *testing.T) {
	st := &control.Status{MasterPID: 7, Started: t0, Generation: 1, Now: t0, Config: strings.Repeat("x", 200)}
	for i := range 20 {
		st.Workers = append(st.Workers, control.WorkerStatus{Slot: i, PID: 1000 + i, Generation: 1, Started: t0})
	}
	var b strings.Builder
	Render(&b, Frame{Status: st, Width: 60, Height: 10})
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 10 {
		t.Fatalf("%d lines, want 10:\n%s", len(lines), b.String())
	}
	for _, l := range lines {
		if n := len([]rune(l)); n > 60 {
			t.Errorf("line of %d runes, want at most 60: %q", n, l)
		}
	}
	// 7 lines of header and 20 rows: 9 shown, then the count of the 18
	// left out.
	if !strings.HasPrefix(lines[9], "… 18 more lines") {
		t.Errorf("last line %q, want the count of the lines left out", lines[9])
	}
}

// TestRenderExtraSections: status fields this client has no type for (a
// newer master's) are shown generically, lists of objects as tables.
func TestRenderExtraSections(t *testing.T) {
	st := &control.Status{MasterPID: 7, Started: t0, Generation: 1, Now: t0}
	raw := json.RawMessage(`{"master_pid":7,"generation":1,"workers":[],
		"zones":[{"name":"api","rate":"10r/s","keys":3,"rejected":12},{"name":"login","rate":"1r/s","keys":0,"rejected":0,"burst":5}],
		"empty":[],"note":"hello\nworld"}`)
	var b strings.Builder
	Render(&b, Frame{Status: st, Raw: raw})
	out := b.String()
	for _, s := range []string{
		"zones:\nNAME   RATE   KEYS  REJECTED  BURST\napi    10r/s  3     12        -\nlogin  1r/s   0     0         5\n",
		"note: hello world",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("frame lacks %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, "empty") {
		t.Errorf("an empty list is shown:\n%s", out)
	}
}
