package protocol

import (
	"runtime"
	"testing"
)

// TestProcsPolicy: the GOMAXPROCS the master gives each worker, what a
// worker on goroutines keeps, and the loops each makes.
func TestProcsPolicy(t *testing.T) {
	for _, tc := range []struct{ cpus, workers, want int }{
		{1, 1, 2}, {2, 2, 2}, {2, 1, 3}, {16, 4, 5}, {16, 3, 7}, {4, 8, 2}, {0, 1, 2},
	} {
		if got := WorkerProcs(tc.cpus, tc.workers); got != tc.want {
			t.Errorf("WorkerProcs(%d CPUs, %d workers) = %d, want %d", tc.cpus, tc.workers, got, tc.want)
		}
	}
	for procs, want := range map[int]int{1: 1, 2: 1, 5: 4} {
		if got := ProcsOnGoroutines(procs); got != want {
			t.Errorf("ProcsOnGoroutines(%d) = %d, want %d", procs, got, want)
		}
	}
	for _, tc := range []struct {
		procs, loops int
		direct       bool
	}{{1, 1, false}, {2, 1, true}, {5, 4, true}} {
		if n, d := loopLayout(tc.procs); n != tc.loops || d != tc.direct {
			t.Errorf("loopLayout(%d) = %d loops, direct %v; want %d, %v", tc.procs, n, d, tc.loops, tc.direct)
		}
	}
}

// TestLoopsFollowTheLayout: in each serving mode, a server with event loops
// lays them out as loopLayout says for its GOMAXPROCS; in gomaxprocs1, one
// loop in the runtime's poller, which Serve accepts for.
func TestLoopsFollowTheLayout(t *testing.T) {
	inModes(t, func(t *testing.T) {
		s, addr := startServer(t, hello, nil)
		if st, body := get(t, addr, "/"); st != 200 || body != "Hello, World!" {
			t.Fatalf("%d %q", st, body)
		}
		if modeOf(t).loop == 0 {
			return // not LoopSafe: a goroutine per connection
		}
		s.mu.Lock()
		loops := s.evloops
		s.mu.Unlock()
		n, direct := loopLayout(runtime.GOMAXPROCS(0))
		if len(loops) != n || len(loops) > 0 && loops[0].direct != direct {
			t.Fatalf("%d loops, want %d (direct %v)", len(loops), n, direct)
		}
		if modeOf(t).procs == 1 && direct {
			t.Fatal("GOMAXPROCS=1 with direct loops")
		}
	})
}
