package master

import (
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/control"
	"github.com/forkd/forkd/internal/logging"
	"github.com/forkd/forkd/internal/metrics"
	"github.com/forkd/forkd/ipc"
)

// fakeOS is the env of a master under unit test: a clock the test moves,
// process starts recorded with made-up pids, signals and sd_notify messages
// recorded instead of sent.
type fakeOS struct {
	now      time.Time
	pid      int
	started  []workerSpec
	signals  []string // "pid:SIG"
	notified []string
	startErr error
	tty      bool // the master has a controlling terminal
	// exits are the children wait4 reports, in order, then none.
	exits  []exitEvent
	execed []*exec.Cmd
}

func (f *fakeOS) env() env {
	return env{
		now: func() time.Time { return f.now },
		start: func(spec workerSpec) (int, *ipc.Conn, error) {
			if f.startErr != nil {
				return 0, nil, f.startErr
			}
			f.pid++
			f.started = append(f.started, spec)
			return f.pid, nil, nil
		},
		kill: func(pid int, sig syscall.Signal) error {
			f.signals = append(f.signals, fmt.Sprintf("%d:%s", pid, sigName(sig)))
			return nil
		},
		notify: func(lines ...string) error {
			f.notified = append(f.notified, strings.Join(lines, "\n"))
			return nil
		},
		wait4: func(pid int, ws *unix.WaitStatus, options int) (int, error) {
			if pid != -1 || options&unix.WNOHANG == 0 {
				return 0, fmt.Errorf("wait4(%d, %#x): the master waits for any child, without blocking", pid, options)
			}
			if len(f.exits) == 0 {
				return 0, nil // children, none exited
			}
			ev := f.exits[0]
			f.exits = f.exits[1:]
			*ws = unix.WaitStatus(ev.status)
			return ev.pid, nil
		},
		exec: func(cmd *exec.Cmd) (int, error) {
			f.pid++
			f.execed = append(f.execed, cmd)
			return f.pid, nil
		},
		terminal: func() bool { return f.tty },
	}
}

func sigName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGKILL:
		return "KILL"
	case syscall.SIGTERM:
		return "TERM"
	case syscall.SIGQUIT:
		return "QUIT"
	case syscall.SIGUSR1:
		return "USR1"
	}
	return sig.String()
}

func (f *fakeOS) advance(d time.Duration) { f.now = f.now.Add(d) }

// takeSignals returns the signals sent since the last call.
func (f *fakeOS) takeSignals() []string {
	s := f.signals
	f.signals = nil
	return s
}

func testConfig(workers int) *config.Config {
	cfg := config.Default()
	cfg.Workers = workers
	cfg.WorkerTimeout = 30 * time.Second
	cfg.GracefulTimeout = 10 * time.Second
	cfg.Log.Level = "off"
	return cfg
}

// newTestMaster builds a master around cfg without binding or starting
// anything; its listeners are placeholders.
func newTestMaster(t *testing.T, cfg *config.Config) (*Master, *fakeOS) {
	t.Helper()
	f := &fakeOS{now: time.Unix(1_000_000, 0), pid: 100}
	lf, err := logging.OpenFile("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := newMaster(Options{Config: cfg, Stderr: io.Discard, Args: []string{"forkd"}},
		func(*Master) env { return f.env() })
	if err != nil {
		t.Fatal(err)
	}
	m.logFile = lf
	for _, l := range cfg.Listen {
		m.listeners[l.Address] = &listener{address: l.Address}
	}
	m.log = m.newLogger(cfg)
	return m, f
}

func (m *Master) send(pid int, typ string) {
	m.handleMsg(msgEvent{pid: pid, msg: &ipc.Message{Type: typ}})
}

func (m *Master) beat(pid int, hb ipc.Heartbeat) {
	m.handleMsg(msgEvent{pid: pid, msg: &ipc.Message{Type: ipc.TypeHeartbeat, Heartbeat: &hb}})
}

func exited(pid, status int) exitEvent {
	return exitEvent{pid: pid, status: syscall.WaitStatus(status << 8), known: true}
}

func signaled(pid int, sig syscall.Signal) exitEvent {
	return exitEvent{pid: pid, status: syscall.WaitStatus(sig), known: true}
}

// pids returns the pids of the workers in gen, by slot.
func (m *Master) pids(gen int) map[int]int {
	out := map[int]int{}
	for _, w := range m.workers {
		if w.gen == gen && !w.stopping {
			out[w.slot] = w.pid
		}
	}
	return out
}

// startAll starts the wanted workers, has them all report ready, and lets
// the master see it (READY=1 at start).
func (m *Master) startAll(now time.Time) {
	m.reconcile(now)
	m.readyAll()
	m.reconcile(now)
}

func (m *Master) readyAll() {
	for _, w := range m.workers {
		if !w.ready && !w.stopping {
			m.send(w.pid, ipc.TypeReady)
		}
	}
}

func TestReconcileStartsEverySlotAndSaysReadyOnce(t *testing.T) {
	m, f := newTestMaster(t, testConfig(3))
	m.reconcile(f.now)
	if len(f.started) != 3 {
		t.Fatalf("started %d workers, want 3", len(f.started))
	}
	for i, s := range f.started {
		if s.slot != i || s.gen != 1 {
			t.Fatalf("start %d: slot %d gen %d", i, s.slot, s.gen)
		}
	}
	m.reconcile(f.now)
	if len(f.started) != 3 {
		t.Fatal("reconcile started a slot twice")
	}
	m.readyAll()
	m.reconcile(f.now)
	m.reconcile(f.now)
	if len(f.notified) != 1 || f.notified[0] != "READY=1\nSTATUS=generation 1: 3/3 workers ready" {
		t.Fatalf("notified %q", f.notified)
	}
}

func TestFailedBootsBackOffExponentially(t *testing.T) {
	m, f := newTestMaster(t, testConfig(1))
	m.everReady = true // not the start-up case
	m.reconcile(f.now)
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}
	for i, d := range want {
		pid := m.pids(1)[0]
		m.reap(exited(pid, 1))
		if got := m.slot(0).next.Sub(f.now); got != d {
			t.Fatalf("failure %d: restart in %v, want %v", i+1, got, d)
		}
		f.advance(d - time.Millisecond)
		m.reconcile(f.now)
		if len(f.started) != i+1 {
			t.Fatalf("failure %d: restarted before the back-off ended", i+1)
		}
		f.advance(time.Millisecond)
		m.reconcile(f.now)
		if len(f.started) != i+2 {
			t.Fatalf("failure %d: not restarted after the back-off", i+1)
		}
	}
	if backoff(20) != backoffCap {
		t.Fatalf("backoff(20) = %v, want the cap", backoff(20))
	}
	// A worker killed by the master before it was ready is a failed boot too.
	pid := m.pids(1)[0]
	f.advance(m.cfg.WorkerTimeout + time.Second)
	m.checkTimeouts(f.now)
	if s := f.takeSignals(); len(s) != 1 || s[0] != fmt.Sprintf("%d:KILL", pid) {
		t.Fatalf("signals %v", s)
	}
	m.reap(signaled(pid, syscall.SIGKILL))
	if m.slot(0).failures != 5 {
		t.Fatalf("failures %d after a killed boot, want 5", m.slot(0).failures)
	}
	// A ready worker that lived past the boot window resets the count.
	m.reconcile(f.now.Add(time.Minute))
	f.advance(time.Minute)
	pid = m.pids(1)[0]
	m.send(pid, ipc.TypeReady)
	f.advance(bootWindow + time.Second)
	m.reap(signaled(pid, syscall.SIGSEGV))
	if m.slot(0).failures != 0 || !m.slot(0).next.IsZero() {
		t.Fatalf("after a crash of a healthy worker: failures %d next %v", m.slot(0).failures, m.slot(0).next)
	}
	if m.stats.restarts[restartCrash] != 1 || m.stats.restarts[restartBootFailure] != 5 {
		t.Fatalf("restarts %v", m.stats.restarts)
	}
}

func TestBootErrorAtStartExitsThree(t *testing.T) {
	m, f := newTestMaster(t, testConfig(2))
	m.reconcile(f.now)
	pid := m.pids(1)[0]
	m.handleMsg(msgEvent{pid: pid, msg: &ipc.Message{Type: ipc.TypeBootError, Error: "static root: no such directory"}})
	m.reap(exited(pid, 3))
	if m.exitCode != ExitBootFailed || m.phase != quitting {
		t.Fatalf("exit code %d phase %v", m.exitCode, m.phase)
	}
}

func TestSilentWorkerIsKilledAndReplaced(t *testing.T) {
	m, f := newTestMaster(t, testConfig(1))
	m.reconcile(f.now)
	pid := m.pids(1)[0]
	m.send(pid, ipc.TypeReady)
	f.advance(10 * time.Second)
	m.beat(pid, ipc.Heartbeat{})
	f.advance(30 * time.Second)
	m.checkTimeouts(f.now)
	if len(f.takeSignals()) != 0 {
		t.Fatal("killed a worker exactly at worker_timeout")
	}
	f.advance(time.Millisecond)
	m.checkTimeouts(f.now)
	if s := f.takeSignals(); len(s) != 1 || s[0] != fmt.Sprintf("%d:KILL", pid) {
		t.Fatalf("signals %v", s)
	}
	m.reap(signaled(pid, syscall.SIGKILL))
	if m.stats.restarts[restartTimeout] != 1 {
		t.Fatalf("restarts %v", m.stats.restarts)
	}
	m.reconcile(f.now)
	if len(f.started) != 2 {
		t.Fatal("a timed-out worker was not replaced at once")
	}
}

func TestPausedMasterCreditsTheGap(t *testing.T) {
	m, f := newTestMaster(t, testConfig(2))
	m.cfg.WorkerTimeout = 2 * time.Second
	m.reconcile(f.now)
	m.readyAll()
	// The loop meant to wake in a second, but the master was stopped for 4.
	m.wake = f.now.Add(time.Second)
	f.advance(5 * time.Second)
	m.afterWake(f.now)
	if s := f.takeSignals(); len(s) != 0 {
		t.Fatalf("a paused master killed its workers on resume: %v", s)
	}
	// Messages already received are handled before liveness is judged.
	m.wake = f.now
	f.advance(1900 * time.Millisecond)
	for _, pid := range m.pids(1) {
		m.msgs <- msgEvent{pid: pid, msg: &ipc.Message{Type: ipc.TypeHeartbeat, Heartbeat: &ipc.Heartbeat{}}}
	}
	m.wake = f.now
	f.advance(2100 * time.Millisecond)
	m.wake = f.now // woke on time: no credit
	m.afterWake(f.now)
	if s := f.takeSignals(); len(s) != 0 {
		t.Fatalf("workers with queued heartbeats were killed: %v", s)
	}
	// A worker that really is silent still dies.
	f.advance(2100 * time.Millisecond)
	m.wake = f.now
	m.afterWake(f.now)
	if s := f.takeSignals(); len(s) != 2 {
		t.Fatalf("silent workers: signals %v, want 2 kills", s)
	}
}

func TestReloadCommitsOnlyWhenAllNewWorkersAreReady(t *testing.T) {
	cfg1 := testConfig(2)
	m, f := newTestMaster(t, cfg1)
	cfg2 := testConfig(3)
	m.opts.Load = func() (*config.Config, error) { return cfg2, nil }
	m.startAll(f.now)
	old := m.pids(1)
	f.notified = nil

	m.reload(nil)
	m.reconcile(f.now)
	if m.pending == nil || m.gen != 1 || m.cfg != cfg1 {
		t.Fatalf("reload applied before its workers were ready: gen %d", m.gen)
	}
	if len(f.started) != 5 || f.started[4].gen != 2 || f.started[4].cfg != cfg2 {
		t.Fatalf("started %v", f.started)
	}
	news := m.pids(2)
	m.send(news[0], ipc.TypeReady)
	m.send(news[1], ipc.TypeReady)
	m.reconcile(f.now)
	if m.gen != 1 || len(f.takeSignals()) != 0 {
		t.Fatal("committed with one new worker not ready, or stopped old workers early")
	}
	m.send(news[2], ipc.TypeReady)
	m.reconcile(f.now)
	if m.gen != 2 || m.cfg != cfg2 || m.pending != nil || m.want != 3 {
		t.Fatalf("not committed: gen %d pending %v", m.gen, m.pending)
	}
	m.reconcile(f.now)
	sig := f.takeSignals()
	if len(sig) != 2 || !containsAll(sig, fmt.Sprintf("%d:TERM", old[0]), fmt.Sprintf("%d:TERM", old[1])) {
		t.Fatalf("old workers not stopped gracefully: %v", sig)
	}
	if len(f.notified) != 2 || !strings.HasPrefix(f.notified[0], "RELOADING=1\nMONOTONIC_USEC=") ||
		f.notified[1] != "READY=1\nSTATUS=generation 2: 3/3 workers ready" {
		t.Fatalf("notified %q", f.notified)
	}
	if m.lastReload == nil || !m.lastReload.OK {
		t.Fatalf("last reload %+v", m.lastReload)
	}
}

func containsAll(have []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}

func TestReloadRefusedWhenANewWorkerFails(t *testing.T) {
	cfg1 := testConfig(2)
	m, f := newTestMaster(t, cfg1)
	cfg2 := testConfig(2)
	m.opts.Load = func() (*config.Config, error) { return cfg2, nil }
	m.startAll(f.now)
	old := m.pids(1)
	f.notified = nil
	reply := make(chan control.Response, 1)
	m.reload(reply)
	m.reconcile(f.now)
	news := m.pids(2)
	m.send(news[0], ipc.TypeReady)
	m.handleMsg(msgEvent{pid: news[1], msg: &ipc.Message{Type: ipc.TypeBootError, Error: "worker start hook: no database"}})
	m.reap(exited(news[1], 3))

	if m.pending != nil || m.gen != 1 || m.cfg != cfg1 {
		t.Fatalf("refused reload changed state: gen %d", m.gen)
	}
	if s := f.takeSignals(); len(s) != 1 || s[0] != fmt.Sprintf("%d:TERM", news[0]) {
		t.Fatalf("the new generation's ready worker was not stopped: %v", s)
	}
	if len(f.notified) != 2 || f.notified[1] != "READY=1\nSTATUS=reload failed: worker start hook: no database" {
		t.Fatalf("notified %q", f.notified)
	}
	if r := <-reply; r.OK || r.Error != "worker start hook: no database" {
		t.Fatalf("control reply %+v", r)
	}
	if m.lastReload == nil || m.lastReload.OK || m.stats.reloadFailures != 1 || m.stats.restarts[restartBootFailure] != 0 {
		t.Fatalf("last reload %+v, failures %d, restarts %v", m.lastReload, m.stats.reloadFailures, m.stats.restarts)
	}
	// The stopped worker of the refused generation exits; nothing restarts it.
	m.reap(exited(news[0], 0))
	m.reconcile(f.now)
	if n := len(f.started); n != 4 {
		t.Fatalf("%d starts, want 4", n)
	}
	// An old worker that dies now is replaced from the kept configuration.
	f.advance(time.Minute)
	m.reap(signaled(old[1], syscall.SIGKILL))
	m.reconcile(f.now)
	if last := f.started[len(f.started)-1]; last.gen != 1 || last.cfg != cfg1 || last.slot != 1 {
		t.Fatalf("replacement started as gen %d slot %d (%+v)", last.gen, last.slot, f.started)
	}
}

func TestReloadRefusedBeforeAnyWorker(t *testing.T) {
	m, f := newTestMaster(t, testConfig(2))
	m.opts.Load = func() (*config.Config, error) { return nil, errors.New("config.hcl:3,1: bad") }
	m.startAll(f.now)
	f.notified = nil
	m.reload(nil)
	m.reconcile(f.now)
	if len(f.started) != 2 || m.pending != nil || m.gen != 1 {
		t.Fatal("an invalid configuration started workers")
	}
	if len(f.notified) != 2 || f.notified[1] != "READY=1\nSTATUS=reload failed: configuration invalid: config.hcl:3,1: bad" {
		t.Fatalf("notified %q", f.notified)
	}
	// A log file the master cannot open refuses the reload the same way.
	cfg2 := testConfig(2)
	cfg2.Log.File = "/nonexistent-dir/forkd.log"
	m.opts.Load = func() (*config.Config, error) { return cfg2, nil }
	m.reload(nil)
	m.reconcile(f.now)
	if len(f.started) != 2 || m.pending != nil || !strings.Contains(m.lastReload.Error, "log file") {
		t.Fatalf("an unopenable log file started workers: %+v", m.lastReload)
	}
}

func TestNewerReloadSupersedesAndStoppingIgnoresReload(t *testing.T) {
	m, f := newTestMaster(t, testConfig(1))
	m.opts.Load = func() (*config.Config, error) { return testConfig(1), nil }
	m.startAll(f.now)
	m.reload(nil)
	m.reconcile(f.now)
	first := m.pending
	firstPid := f.pid
	m.reload(nil)
	m.reconcile(f.now)
	if m.pending == first || m.pending == nil {
		t.Fatal("the second reload did not replace the first")
	}
	if s := f.takeSignals(); len(s) != 1 || s[0] != fmt.Sprintf("%d:TERM", firstPid) {
		t.Fatalf("the superseded generation's worker was not stopped: %v", s)
	}
	m.readyAll()
	m.reconcile(f.now)
	if m.gen != 2 {
		t.Fatalf("gen %d after the second reload", m.gen)
	}
	m.handleSignal(syscall.SIGTERM)
	n := len(f.started)
	m.handleSignal(syscall.SIGHUP)
	m.handleSignal(syscall.SIGTTIN)
	m.reconcile(f.now)
	if m.pending != nil || len(f.started) != n || m.want != 1 {
		t.Fatal("a stopping master acted on HUP or TTIN")
	}
}

func TestMemoryRecyclesOneWorkerAtATimeAfterTheWindow(t *testing.T) {
	cfg := testConfig(3)
	cfg.MaxWorkerMemory = 100 << 20
	cfg.MaxWorkerMemoryWindow = 30 * time.Second
	m, f := newTestMaster(t, cfg)
	m.startAll(f.now)
	pids := m.pids(1)
	big := ipc.Heartbeat{RSS: 200 << 20}
	for _, pid := range pids {
		m.beat(pid, big)
	}
	// A spike that ends inside the window recycles nothing.
	f.advance(20 * time.Second)
	m.beat(pids[0], ipc.Heartbeat{RSS: 50 << 20})
	f.advance(10 * time.Second)
	m.beat(pids[0], big)
	m.checkMemory(f.now)
	m.reconcile(f.now)
	recycled := 0
	for _, w := range m.workers {
		if w.retiring == stopMemory {
			recycled++
			if w.pid == pids[0] {
				t.Fatal("recycled the worker whose spike ended")
			}
		}
	}
	if recycled != 1 {
		t.Fatalf("%d workers recycled at once, want 1", recycled)
	}
	m.checkMemory(f.now)
	if len(f.takeSignals()) != 0 {
		t.Fatal("stopped a worker before its successor was ready")
	}
	if len(f.started) != 4 {
		t.Fatalf("%d starts: no successor for the recycled worker", len(f.started))
	}
	m.send(f.pid, ipc.TypeReady)
	m.reconcile(f.now)
	if s := f.takeSignals(); len(s) != 1 || !strings.HasSuffix(s[0], ":TERM") {
		t.Fatalf("signals %v", s)
	}
}

func TestClassifyExits(t *testing.T) {
	for _, tc := range []struct {
		ev     exitEvent
		killed killReason
		kind   exitKind
		text   string
	}{
		{exited(1, 0), notKilled, exitClean, "exited"},
		{exited(1, 2), notKilled, exitStatus, "exited with status 2"},
		{exited(1, 3), notKilled, exitBootFailed, "failed to boot"},
		{signaled(1, syscall.SIGSEGV), notKilled, exitSignal, "killed by signal segmentation fault"},
		{signaled(1, syscall.SIGKILL), notKilled, exitSIGKILL, "killed by SIGKILL (perhaps out of memory?)"},
		{signaled(1, syscall.SIGKILL), killTimeout, exitKilled, "timeout"},
		{exitEvent{pid: 1}, notKilled, exitUnknown, "unknown"},
	} {
		c := classify(tc.ev, tc.killed)
		if c.kind != tc.kind || c.String() != tc.text {
			t.Errorf("classify(%v, %v) = %v %q, want %v %q", tc.ev.status, tc.killed, c.kind, c.String(), tc.kind, tc.text)
		}
	}
}

func TestStatusCountersSurviveWorkers(t *testing.T) {
	m, f := newTestMaster(t, testConfig(1))
	m.reconcile(f.now)
	pid := m.pids(1)[0]
	m.send(pid, ipc.TypeReady)
	m.beat(pid, ipc.Heartbeat{Requests: 7, Status: metrics.Classes{0, 5, 1, 1, 0},
		H2Status: metrics.Classes{0, 2, 0, 1, 0}, H2OpenConns: 1})
	if s := m.buildSnapshot(); len(s.Workers) != 1 || s.Workers[0].H2Status != (metrics.Classes{0, 2, 0, 1, 0}) || s.Workers[0].H2OpenConns != 1 {
		t.Fatalf("live workers %+v", s.Workers)
	}
	f.advance(time.Minute)
	m.reap(exited(pid, 0))
	if s := m.buildSnapshot(); s.Retired != (metrics.Classes{0, 5, 1, 1, 0}) || s.RetiredH2 != (metrics.Classes{0, 2, 0, 1, 0}) {
		t.Fatalf("retired %v, HTTP/2 %v", s.Retired, s.RetiredH2)
	}
}

// logTo sends m's log, at debug level, to a buffer the test reads.
func logTo(m *Master) *strings.Builder {
	var b strings.Builder
	m.log = hclog.New(&hclog.LoggerOptions{Output: &b, Level: hclog.Trace})
	return &b
}

// TestWINCHWithATerminal: resizing the master's terminal sends WINCH; with
// a controlling terminal it is ignored, logged once, while without one
// (systemd, setsid) it stops every worker and status says so.
func TestWINCHWithATerminal(t *testing.T) {
	m, f := newTestMaster(t, testConfig(2))
	m.startAll(f.now)
	log := logTo(m)
	f.tty = true
	for range 3 {
		m.handleSignal(syscall.SIGWINCH)
		m.reconcile(f.now)
	}
	if m.winched || len(f.takeSignals()) != 0 {
		t.Fatal("WINCH with a terminal stopped workers")
	}
	if n := strings.Count(log.String(), "[WARN]  ignoring WINCH"); n != 1 || strings.Contains(log.String(), "[INFO]") {
		t.Fatalf("logged the ignored WINCH %d times, want once, and nothing else at info:\n%s", n, log)
	}
	if st := m.status(); st.State != control.StateRunning {
		t.Fatalf("state %q", st.State)
	}
	f.tty = false
	m.handleSignal(syscall.SIGWINCH)
	m.reconcile(f.now)
	if !m.winched || len(f.takeSignals()) != 2 {
		t.Fatal("WINCH without a terminal did not stop the workers")
	}
	if st := m.status(); st.State != control.StateIdle {
		t.Fatalf("state %q after WINCH stopped the workers, want %q", st.State, control.StateIdle)
	}
}

// TestTTOUAtOneWorkerSaysRefused: TTOU never goes below one worker, and
// the log says it refused rather than "scaling workers=1".
func TestTTOUAtOneWorkerSaysRefused(t *testing.T) {
	m, f := newTestMaster(t, testConfig(2))
	m.startAll(f.now)
	log := logTo(m)
	m.handleSignal(syscall.SIGTTOU)
	m.handleSignal(syscall.SIGTTOU)
	if m.want != 1 {
		t.Fatalf("want %d", m.want)
	}
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	last := lines[len(lines)-1]
	if !strings.Contains(log.String(), "scaling: workers=1") || !strings.Contains(last, "not scaling down") || !strings.Contains(last, "workers=1") {
		t.Fatalf("log:\n%s", log)
	}
}

// TestRetireLogsTheRealCount: a worker that reached max_requests before
// its first heartbeat is logged with the count it reached, not 0.
func TestRetireLogsTheRealCount(t *testing.T) {
	m, f := newTestMaster(t, testConfig(1))
	m.startAll(f.now)
	log := logTo(m)
	pid := m.pids(1)[0]
	m.handleMsg(msgEvent{pid: pid, msg: &ipc.Message{Type: ipc.TypeRetire, Heartbeat: &ipc.Heartbeat{Requests: 25}}})
	if !strings.Contains(log.String(), "max_requests") || !strings.Contains(log.String(), "requests=25") {
		t.Fatalf("log:\n%s", log)
	}
}

// TestUpgradeGeneration: a master started by USR2 numbers its generations
// on from the old master's, and its first generation is the start-up one
// (a boot error there still exits 3).
func TestUpgradeGeneration(t *testing.T) {
	for v, want := range map[string]int{"": 1, "1": 2, "7": 8} {
		t.Setenv(envUpgradeGen, v)
		if got, err := upgradeGeneration(); err != nil || got != want {
			t.Errorf("%s=%q: generation %d, %v; want %d", envUpgradeGen, v, got, err, want)
		}
	}
	t.Setenv(envUpgradeGen, "x")
	if _, err := upgradeGeneration(); err == nil {
		t.Error("a malformed generation was accepted")
	}

	t.Setenv(envUpgradeGen, "") // the test master reads it as New does
	m, f := newTestMaster(t, testConfig(1))
	m.gen, m.firstGen = 8, 8
	m.reconcile(f.now)
	pid := m.pids(8)[0]
	m.handleMsg(msgEvent{pid: pid, msg: &ipc.Message{Type: ipc.TypeBootError, Error: "no database"}})
	m.reap(exited(pid, 3))
	if m.exitCode != ExitBootFailed {
		t.Fatalf("boot error in the first generation 8: exit code %d", m.exitCode)
	}
	if m.latestGen() != 8 {
		t.Fatalf("latest generation %d", m.latestGen())
	}
}

// TestReapChildrenReapsEveryExit: one wake reaps every child wait4 reports,
// workers and orphans alike, each exit classified and counted once, and
// stops when none is left.
func TestReapChildrenReapsEveryExit(t *testing.T) {
	m, f := newTestMaster(t, testConfig(2))
	m.reconcile(f.now)
	pids := m.pids(1) // by slot
	for _, pid := range pids {
		m.send(pid, ipc.TypeReady)
	}
	f.advance(bootWindow + time.Second)
	f.exits = []exitEvent{signaled(pids[0], syscall.SIGSEGV), exited(999, 0), exited(pids[1], 1)}
	m.reapChildren()
	if len(f.exits) != 0 || len(m.workers) != 0 {
		t.Fatalf("after reapChildren: exits left %v, workers %d", f.exits, len(m.workers))
	}
	if m.stats.restarts[restartCrash] != 2 {
		t.Fatalf("restarts %v, want 2 crashes", m.stats.restarts)
	}
	if got := m.buildSnapshot().Restarts; len(got) != 1 || got["crash"] != 2 {
		t.Fatalf("snapshot restarts %v, want crash 2", got)
	}
}

// TestRestartCauseNames: each counter's label, the stop causes' from their
// own names.
func TestRestartCauseNames(t *testing.T) {
	want := map[restartCause]string{restartCrash: "crash", restartBootFailure: "boot failure", restartTimeout: "timeout",
		restartReload: "reload", restartScaleDown: "scale down", restartMaxRequests: "max_requests", restartMemory: "max_worker_memory"}
	for c := restartCause(0); c < numRestartCauses; c++ {
		if c.String() != want[c] {
			t.Errorf("restartCause(%d) = %q, want %q", c, c.String(), want[c])
		}
	}
	for _, s := range []stopCause{stopShutdown, stopRefused, stopWinch, stopNone} {
		if c, ok := s.restart(); ok {
			t.Errorf("stop %s counts as restart %s", s, c)
		}
	}
}
