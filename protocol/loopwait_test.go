package protocol

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDirectLoopWait: a direct loop looks for events without a timeout
// first (pollReady) only after a batch of pollBatch events or more; after a
// smaller one it waits in the kernel at once, which returns the events that
// are there already, and a wait that finds none ends at the sweep.
func TestDirectLoopWait(t *testing.T) {
	s := &Server{epoch: time.Now()}
	l, err := newEventLoop(s, true)
	if err != nil {
		t.Fatal(err)
	}
	defer l.closeFds()
	wake := func() {
		if _, err := unix.Write(l.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0}); err != nil {
			t.Fatal(err)
		}
	}
	now := func() time.Duration { return time.Since(s.epoch) }
	for _, tc := range []struct {
		name      string
		last      int  // the last batch's size
		event     bool // an event is there
		wantPolls int
	}{
		{"small batch, event there", 1, true, 0},
		{"small batch, none", pollBatch - 1, false, 0},
		{"large batch, event there", pollBatch, true, 1},
		{"large batch, none", loopEvents, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l.next, l.ready, l.polls, l.timedOut = tc.last, tc.last, 0, false
			l.sweepAt = now() + 20*time.Millisecond
			if tc.event {
				l.sweepAt = now() + time.Minute // the event ends the wait
				wake()
			}
			l.waitKernel()
			if l.polls != tc.wantPolls {
				t.Errorf("looked without a timeout %d times, want %d", l.polls, tc.wantPolls)
			}
			if tc.event {
				if l.ready != 1 || l.timedOut {
					t.Errorf("fetched %d events (timed out %v), want the one there", l.ready, l.timedOut)
				}
			} else if l.ready != 0 || !l.timedOut {
				t.Errorf("no event: fetched %d, timed out %v; want the sweep", l.ready, l.timedOut)
			}
		})
	}
}
