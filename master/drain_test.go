package master

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/forkd/forkd/internal/control"
	"github.com/forkd/forkd/ipc"
)

// TestDrainDelay follows a TERM with drain_delay: the master drains first
// (listeners open, workers untouched, HUP and TTIN ignored, a crashed
// worker replaced and started draining), and stops gracefully only when
// drain_delay has passed.
func TestDrainDelay(t *testing.T) {
	cfg := testConfig(2)
	cfg.DrainDelay = 5 * time.Second
	m, f := newTestMaster(t, cfg)
	m.reconcile(f.now)
	m.readyAll()
	m.reconcile(f.now)
	f.takeSignals()

	m.handleSignal(syscall.SIGTERM)
	if m.phase != draining || len(m.listeners) == 0 || len(f.takeSignals()) != 0 {
		t.Fatalf("after TERM: phase %d, %d listeners, signals sent", m.phase, len(m.listeners))
	}
	if st := m.status(); st.State != control.StateDraining || !st.DrainEnds.Equal(f.now.Add(5*time.Second)) {
		t.Fatalf("status %q until %v", st.State, st.DrainEnds)
	}
	f.advance(4500 * time.Millisecond)
	if d := m.nextDeadline(f.now); d > 500*time.Millisecond {
		t.Fatalf("the loop sleeps %v, past the drain's end", d)
	}
	m.handleSignal(syscall.SIGHUP)
	m.handleSignal(syscall.SIGTTIN)
	m.handleSignal(syscall.SIGTERM) // a second TERM does not cut the drain short
	if m.pending != nil || m.want != 2 || m.phase != draining {
		t.Fatalf("HUP/TTIN/TERM while draining: pending %v, want %d, phase %d", m.pending != nil, m.want, m.phase)
	}

	// A worker that crashes while the instance drains is replaced, and
	// the replacement starts draining.
	pid := m.pids(1)[0]
	m.reap(signaled(pid, syscall.SIGSEGV))
	if m.done() {
		t.Fatal("the master would exit while draining")
	}
	m.reconcile(f.now)
	if last := f.started[len(f.started)-1]; len(f.started) != 3 || !last.draining {
		t.Fatalf("replacement: %d started, last %+v", len(f.started), last)
	}
	m.readyAll()

	f.advance(500*time.Millisecond - time.Millisecond)
	m.reconcile(f.now)
	if m.phase != draining || len(f.takeSignals()) != 0 {
		t.Fatal("stopped before drain_delay")
	}
	f.advance(time.Millisecond)
	m.reconcile(f.now)
	if m.phase != stopping || len(m.listeners) != 0 {
		t.Fatalf("after drain_delay: phase %d, %d listeners", m.phase, len(m.listeners))
	}
	sigs := f.takeSignals()
	if len(sigs) != 2 {
		t.Fatalf("signals %v", sigs)
	}
	for _, w := range m.workers {
		if !w.stopping || w.stopCause != stopShutdown {
			t.Fatalf("worker %d not stopping for shutdown", w.pid)
		}
		m.reap(exited(w.pid, 0))
	}
	if !m.done() {
		t.Fatal("not done after the workers stopped")
	}
	if st := m.status(); st.State != control.StateStopping {
		t.Fatalf("state %q", st.State)
	}
}

// TestDrainQuitAndHandover: QUIT ends a drain at once; no drain_delay, or
// a master that handed over to a successor (USR2), stops without one.
func TestDrainQuitAndHandover(t *testing.T) {
	for _, tc := range []struct {
		name       string
		delay      time.Duration
		handedOver bool
		sigs       []syscall.Signal
		want       phase
	}{
		{"quit while draining", time.Second, false, []syscall.Signal{syscall.SIGTERM, syscall.SIGQUIT}, quitting},
		{"no delay", 0, false, []syscall.Signal{syscall.SIGTERM}, stopping},
		{"handed over", time.Second, true, []syscall.Signal{syscall.SIGTERM}, stopping},
		{"handed over while draining", time.Second, false, []syscall.Signal{syscall.SIGTERM, 0}, stopping},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(1)
			cfg.DrainDelay = tc.delay
			m, f := newTestMaster(t, cfg)
			m.handedOver = tc.handedOver
			m.reconcile(f.now)
			pid := m.pids(1)[0]
			m.send(pid, ipc.TypeReady)
			for _, s := range tc.sigs {
				if s == 0 {
					// A USR2 successor became ready: handleUpgrade.
					m.handedOver = true
					m.shutdown(stopping)
					continue
				}
				m.handleSignal(s)
			}
			if m.phase != tc.want || len(m.listeners) != 0 {
				t.Fatalf("phase %d, %d listeners", m.phase, len(m.listeners))
			}
			want := fmt.Sprintf("%d:%s", pid, map[phase]string{quitting: "QUIT", stopping: "TERM"}[tc.want])
			if s := f.takeSignals(); len(s) == 0 || s[len(s)-1] != want {
				t.Fatalf("signals %v, want last %s", s, want)
			}
		})
	}
}
