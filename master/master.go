// Package master is forkd's arbiter: it owns the listening sockets, starts
// workers by re-executing its own binary, and supervises them. One goroutine
// (the loop in Run) owns all state; signals, child exits, ipc messages,
// control requests and timers reach it over channels.
package master

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/control"
	"github.com/forkd/forkd/internal/logging"
	"github.com/forkd/forkd/internal/metrics"
	"github.com/forkd/forkd/internal/sdnotify"
	"github.com/forkd/forkd/ipc"
	"github.com/forkd/forkd/protocol"
)

// Exit codes of the master.
const (
	ExitOK         = 0
	ExitConfig     = 1 // bad configuration or start-up failure
	ExitBootFailed = 3 // workers failed to boot
)

// Boot-loop policy: a worker that dies within bootWindow of its start (or
// before it was ready) counts as a failed boot of its slot; the slot is
// restarted after an exponential back-off, capped.
const (
	bootWindow      = 2 * time.Second
	backoffBase     = 100 * time.Millisecond
	backoffCap      = 10 * time.Second
	startupAttempts = 5 // failed boots of one slot, before any worker was ready, that halt the master
	quickStopWait   = 2 * time.Second
	killGrace       = time.Second // after graceful_timeout, before SIGKILL
)

// Options configure a master.
type Options struct {
	// Config is the validated initial configuration.
	Config *config.Config
	// Load re-reads the configuration on HUP; nil means HUP keeps Config.
	Load func() (*config.Config, error)
	// Executable is the binary workers run; default /proc/self/exe.
	Executable string
	// Args is the worker's argv (Args[0] is its name); default os.Args[:1].
	Args []string
	// Stderr receives the start-up error lines; default os.Stderr.
	Stderr io.Writer
	// Binary and MasterArgs start a new master on USR2: the binary on disk
	// (default: os.Executable at start-up) and its arguments (default
	// os.Args[1:]).
	Binary     string
	MasterArgs []string
}

// Master is a running arbiter; build it with New, run it with Run.
type Master struct {
	opts    Options
	cfg     *config.Config
	log     hclog.Logger
	logFile *logging.File
	pid     int
	started time.Time

	env      env
	gen      int
	firstGen int      // the generation the master started with (after a binary upgrade, the old master's next)
	cfgFile  *os.File // the current generation's configuration, for its workers
	want     int
	winched  bool
	// winchIgnored is set once a WINCH was ignored because the master has
	// a controlling terminal (logged the first time only).
	winchIgnored bool
	everReady    bool
	phase        phase
	exitCode     int
	pendingUp    bool       // READY=1 still owed to systemd for the first generation
	pending      *reloadTxn // a new generation booting, not yet current
	drainEnd     time.Time  // while draining: when the listeners close and workers drain
	wake         time.Time  // when the loop's timer is due: later means the master was not running

	workers   map[int]*worker
	slots     map[int]*slotState
	listeners map[string]*listener

	sigs    chan os.Signal
	msgs    chan msgEvent
	stopped chan struct{} // closed when Run's loop has ended

	stats counters

	sd         *sdnotify.Notifier
	extra      []string // socket-activated addresses no listen block names
	ctl        chan ctlReq
	ctlSrv     *control.Server
	bgErr      chan error
	lastReload *control.ReloadOutcome

	upgrades   chan upgradeEvent
	upgrading  *upgrade
	handedOver bool     // a successor master took over
	readyPipe  *os.File // set in a master started by USR2

	metricsSrv       *http.Server
	metricsFile      *os.File  // an inheritable copy of the metrics socket, for USR2
	inheritedMetrics *listener // the metrics socket an old master handed over
	snaps            chan chan metrics.Snapshot

	tickets *ticketKeys // TLS session-ticket keys; nil until a TLS worker starts

	zones *zoneSet // the current generation's shared-memory zones (zones.go)
}

type phase int

const (
	running  phase = iota
	draining       // TERM with drain_delay: health routes answer 503, listeners stay open, workers are replaced
	stopping
	quitting
)

type slotState struct {
	failures int
	next     time.Time
}

type counters struct {
	restarts       [numRestartCauses]uint64
	reloads        uint64
	reloadFailures uint64
	retired        metrics.Classes // final status-class counts of exited workers
	retiredH2      metrics.Classes // the HTTP/2 part of retired
	retiredReqs    uint64
}

// stallGrace is how late the loop may wake before it counts the delay as a
// stretch in which the master itself was not running (SIGSTOP, a VM pause,
// swapping) and credits it to every worker's heartbeat clock.
const stallGrace = 100 * time.Millisecond

// New prepares a master: it opens the log file and binds every listener.
func New(opts Options) (*Master, error) {
	m, err := newMaster(opts, osEnv)
	if err != nil {
		return nil, err
	}
	// A user or group that does not exist would make every worker fail to
	// start: refuse at once, before binding anything.
	if _, err := credential(m.cfg); err != nil {
		return nil, err
	}
	cf, err := ipc.ConfigFile(m.cfg)
	if err != nil {
		return nil, err
	}
	m.cfgFile = cf
	lf, err := logging.OpenFile(m.cfg.Log.File)
	if err != nil {
		m.cfgFile.Close()
		return nil, err
	}
	m.logFile = lf
	m.log = m.newLogger(m.cfg)
	if err := m.setupSystemd(); err != nil {
		m.closeAll()
		return nil, err
	}
	if err := m.adoptUpgrade(); err != nil {
		m.closeAll()
		return nil, err
	}
	if err := m.openZones(); err != nil {
		m.closeAll()
		return nil, err
	}
	if _, err := m.openListeners(m.cfg); err != nil {
		m.closeAll()
		return nil, err
	}
	if err := m.listenControl(); err != nil {
		m.closeAll()
		return nil, err
	}
	if err := m.serveMetrics(); err != nil {
		m.closeAll()
		return nil, err
	}
	return m, nil
}

// newMaster builds the master for opts around the environment mkEnv makes
// for it: osEnv in New, a fake in unit tests, which so build their masters
// the way production does. It opens and binds nothing; New does that next.
func newMaster(opts Options, mkEnv func(*Master) env) (*Master, error) {
	if opts.Config == nil {
		return nil, errors.New("master: no configuration")
	}
	if opts.Executable == "" {
		opts.Executable = "/proc/self/exe"
	}
	if len(opts.Args) == 0 {
		opts.Args = os.Args[:1]
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.Binary == "" {
		if exe, err := os.Executable(); err == nil {
			opts.Binary = exe
		} else {
			opts.Binary = os.Args[0]
		}
	}
	if opts.MasterArgs == nil {
		opts.MasterArgs = os.Args[1:]
	}
	m := &Master{
		opts:      opts,
		cfg:       opts.Config,
		pid:       os.Getpid(),
		want:      opts.Config.Workers,
		workers:   make(map[int]*worker),
		slots:     make(map[int]*slotState),
		listeners: make(map[string]*listener),
		sigs:      make(chan os.Signal, 64),
		msgs:      make(chan msgEvent, 256),
		stopped:   make(chan struct{}),
		pendingUp: true,
		ctl:       make(chan ctlReq),
		bgErr:     make(chan error, 1),
		upgrades:  make(chan upgradeEvent, 4),
		snaps:     make(chan chan metrics.Snapshot),
	}
	m.env = mkEnv(m)
	m.started = m.env.now()
	// A master started by USR2 goes on from its predecessor's generations.
	gen, err := upgradeGeneration()
	if err != nil {
		return nil, err
	}
	m.gen, m.firstGen = gen, gen
	return m, nil
}

func (m *Master) newLogger(cfg *config.Config) hclog.Logger {
	return logging.New(cfg.Log, "forkd", m.logFile).With("role", "master", "pid", m.pid, "generation", m.gen)
}

// openListeners binds what cfg lists and we lack, and returns the addresses
// it opened; on error it closes them again. A unix socket whose file was
// removed is bound anew in passing (that repair is kept even if the reload
// that made it is refused).
func (m *Master) openListeners(cfg *config.Config) ([]string, error) {
	var opened []*listener
	for _, l := range cfg.Listen {
		if have, ok := m.listeners[l.Address]; ok {
			if !have.gone() {
				continue
			}
			// Someone removed the socket file: nobody can connect. Make a
			// new socket there; workers still holding the old one drain.
			ln, err := bind(l)
			if err != nil {
				return nil, err
			}
			m.log.Warn("unix socket file was removed; listening on a new one", "address", l.Address)
			have.close()
			m.listeners[l.Address] = ln
			continue
		}
		ln, err := bind(l)
		if err != nil {
			for _, o := range opened {
				o.close()
			}
			return nil, err
		}
		opened = append(opened, ln)
	}
	addrs := make([]string, 0, len(opened))
	for _, o := range opened {
		m.listeners[o.address] = o
		addrs = append(addrs, o.address)
	}
	return addrs, nil
}

// closeUnlisted closes the listeners cfg no longer lists. Workers keep
// their own copies, so closing ours never cuts a draining worker off.
func (m *Master) closeUnlisted(cfg *config.Config) {
	keep := make(map[string]bool, len(cfg.Listen))
	for _, l := range cfg.Listen {
		keep[l.Address] = true
	}
	for _, a := range m.extra {
		keep[a] = true
	}
	for addr, l := range m.listeners {
		if !keep[addr] && !l.activated {
			l.close()
			delete(m.listeners, addr)
		}
	}
}

// Run runs the master until it stops and returns its exit code.
func (m *Master) Run() int {
	// Pdeathsig is tied to the thread that forked the child: keep the loop,
	// which spawns every worker, on one thread for its whole life.
	runtime.LockOSThread()
	fixThreads()
	signal.Notify(m.sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT,
		syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGCHLD)
	defer signal.Stop(m.sigs)
	signal.Ignore(syscall.SIGPIPE)
	m.setProcName(programName(m.opts.Args[0]) + ": master")

	// A master started by USR2 takes the pidfile over only once it serves.
	if m.readyPipe == nil {
		if err := m.writePidfile(); err != nil {
			m.log.Error("cannot write pidfile", "error", err)
			m.closeAll()
			return ExitConfig
		}
	}
	m.prepareLogFiles()
	m.log.Info("master started", "workers", m.want, "listen", m.addresses(), "config", m.cfg.Path)
	m.logWarnings(m.cfg)
	m.checkFileLimit(m.cfg)
	m.notifyStatus()

	timer := time.NewTimer(0)
	defer timer.Stop()
	wd, stopWD := m.watchdog()
	defer stopWD()
	for {
		m.reconcile(m.env.now())
		if m.done() {
			break
		}
		now := m.env.now()
		next := m.nextDeadline(now)
		m.wake = now.Add(next)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
		select {
		case sig := <-m.sigs:
			m.handleSignal(sig.(syscall.Signal))
		case ev := <-m.msgs:
			m.handleMsg(ev)
		case ev := <-m.upgrades:
			m.handleUpgrade(ev)
		case ch := <-m.snaps:
			ch <- m.buildSnapshot()
		case r := <-m.ctl:
			m.handleControl(r)
		case err := <-m.bgErr:
			m.log.Error("background server failed", "error", err)
		case <-wd:
			m.notify("WATCHDOG=1")
		case <-timer.C:
		}
		m.afterWake(m.env.now())
	}
	close(m.stopped)
	m.log.Info("master stopped", "exit_code", m.exitCode)
	m.closeAll()
	return m.exitCode
}

// afterWake runs the checks that judge workers by time. Liveness is judged
// only after every message already received is handled, and a stretch in
// which the master itself did not run is not counted against anyone.
func (m *Master) afterWake(now time.Time) {
	if late := now.Sub(m.wake); late > stallGrace {
		m.creditStall(late)
	}
	for drained := false; !drained; {
		select {
		case ev := <-m.msgs:
			m.handleMsg(ev)
		default:
			drained = true
		}
	}
	m.checkTimeouts(now)
	m.checkMemory(now)
	m.rotateTickets(now)
}

// creditStall moves every worker's clocks forward by d: the master was not
// running (stopped, paused, starved) for that long, so heartbeats could not
// be read and deadlines could not be acted on; the workers were not silent.
func (m *Master) creditStall(d time.Duration) {
	lvl := hclog.Debug // a busy machine wakes the loop a little late
	if d >= time.Second {
		lvl = hclog.Warn
	}
	m.log.Log(lvl, "master was not running; not counting the gap against workers", "gap", d.Round(time.Millisecond).String())
	for _, w := range m.workers {
		w.lastBeat = w.lastBeat.Add(d)
		if w.stopping {
			w.stopDeadline = w.stopDeadline.Add(d)
		}
		if !w.overMemory.IsZero() {
			w.overMemory = w.overMemory.Add(d)
		}
	}
}

func (m *Master) done() bool {
	return m.phase >= stopping && len(m.workers) == 0
}

// serving tells whether workers are kept at the wanted count: while running
// and while draining (a crashed worker is replaced then too).
func (m *Master) serving() bool {
	return m.phase == running || m.phase == draining
}

// nextDeadline is how long the loop may sleep before some timer is due.
func (m *Master) nextDeadline(now time.Time) time.Duration {
	next := now.Add(time.Second)
	if m.phase == draining && m.drainEnd.Before(next) {
		next = m.drainEnd
	}
	for _, w := range m.workers {
		if w.exit != nil {
			if d := w.exitAt.Add(exitGrace); d.Before(next) {
				next = d
			}
			continue
		}
		if w.stopping {
			if w.stopDeadline.Before(next) {
				next = w.stopDeadline
			}
			continue
		}
		if d := w.lastBeat.Add(m.timeoutOf(w)); d.Before(next) {
			next = d
		}
	}
	for _, s := range m.slots {
		if s.next.After(now) && s.next.Before(next) {
			next = s.next
		}
	}
	next = m.ticketDeadline(next)
	d := next.Sub(now)
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return d
}

// timeoutOf is the heartbeat timeout that applies to w: its own
// generation's worker_timeout.
func (m *Master) timeoutOf(w *worker) time.Duration {
	if w.txn != nil {
		return w.txn.cfg.WorkerTimeout
	}
	return m.cfg.WorkerTimeout
}

func (m *Master) handleSignal(sig syscall.Signal) {
	if sig == syscall.SIGCHLD {
		m.reapChildren()
		return
	}
	if sig == syscall.SIGWINCH && m.env.terminal() {
		m.ignoreWINCH()
		return
	}
	m.log.Info("signal received", "signal", sig.String())
	if m.phase != running {
		switch sig {
		case syscall.SIGHUP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGUSR2, syscall.SIGWINCH:
			m.log.Warn("ignoring signal: the master is stopping", "signal", sig.String())
			return
		}
	}
	switch sig {
	case syscall.SIGHUP:
		m.reload(nil)
	case syscall.SIGTERM:
		m.shutdown(stopping)
	case syscall.SIGINT, syscall.SIGQUIT:
		m.shutdown(quitting)
	case syscall.SIGTTIN:
		if ok, why := m.canGrow(1); !ok {
			m.log.Warn("not scaling up: a task limit would be reached", "workers", m.want, "reason", why)
			return
		}
		m.want++
		m.log.Info("scaling", "workers", m.want)
	case syscall.SIGTTOU:
		if m.want <= 1 {
			m.log.Warn("not scaling down: at least one worker must run", "workers", m.want)
			return
		}
		m.want--
		m.log.Info("scaling", "workers", m.want)
	case syscall.SIGUSR1:
		m.reopenLogs()
	case syscall.SIGUSR2:
		m.startUpgrade()
	case syscall.SIGWINCH:
		m.winched = true
		m.log.Info("stopping all workers gracefully; master stays (HUP starts them again)")
	}
}

// ignoreWINCH ignores a WINCH sent while the master has a controlling
// terminal: resizing the terminal window sends it to the foreground
// process group, and stopping every worker then would be a trap (gunicorn
// ignores WINCH unless daemonized). Under systemd, or started with setsid,
// the master has no terminal and WINCH stops the workers. Logged once.
func (m *Master) ignoreWINCH() {
	if m.winchIgnored {
		m.log.Trace("ignoring WINCH: the master has a controlling terminal")
		return
	}
	m.winchIgnored = true
	m.log.Warn("ignoring WINCH: the master has a controlling terminal, whose window resizes send it; "+
		"WINCH stops the workers only in a master without one (under systemd, or started with setsid); logged once",
		"signal", syscall.SIGWINCH.String())
}

// shutdown stops the master: gracefully (stopping) or quickly (quitting).
// A graceful stop with drain_delay drains first: health routes answer 503
// for drain_delay while everything else is served, and only then do the
// listeners close (reconcile ends the drain). A second TERM while draining
// changes nothing; INT or QUIT stops at once. After a binary upgrade handed
// over there is no drain, and one under way ends: the successor serves the
// same sockets, and its health routes must not be mixed with ours answering
// 503.
func (m *Master) shutdown(p phase) {
	if m.phase == quitting || m.phase == p || (p == stopping && m.phase == draining && !m.handedOver) {
		return
	}
	if p == stopping && m.phase == running && m.cfg.DrainDelay > 0 && !m.handedOver {
		m.startDrain()
		return
	}
	m.stop(p)
}

// startDrain enters the drain period: every worker, and every worker
// started until it ends, answers 503 on health routes.
func (m *Master) startDrain() {
	m.phase = draining
	m.drainEnd = m.env.now().Add(m.cfg.DrainDelay)
	m.notify("STOPPING=1", "STATUS=draining: health routes answer 503 for "+m.cfg.DrainDelay.String())
	if m.pending != nil {
		m.endReload(m.pending, errors.New("the master is stopping"), false)
	}
	m.log.Info("draining: health routes answer 503; listeners close after drain_delay", "drain_delay", m.cfg.DrainDelay.String())
	for _, w := range m.workers {
		m.tellDrain(w)
	}
}

// tellDrain tells a running worker that the instance drains. A worker that
// cannot hear it is on its way out anyway (its exit follows).
func (m *Master) tellDrain(w *worker) {
	if w.conn == nil || w.stopping {
		return
	}
	if err := w.conn.Send(&ipc.Message{Type: ipc.TypeDrain}); err != nil {
		m.log.Warn("cannot tell worker to drain", "worker_pid", w.pid, "error", err)
	}
}

// stop closes the listeners and stops every worker, gracefully or quickly.
func (m *Master) stop(p phase) {
	if m.phase == running {
		m.notify("STOPPING=1")
	}
	m.phase = p
	if m.pending != nil {
		m.endReload(m.pending, errors.New("the master is stopping"), false)
	}
	for _, w := range m.workers {
		if p == quitting {
			w.stopping = true
			w.stopCause = stopShutdown
			w.stopDeadline = m.env.now().Add(quickStopWait)
			m.signal(w, syscall.SIGQUIT)
		} else if !w.stopping {
			m.stopWorker(w, stopShutdown)
		}
	}
	// Stop accepting at once: workers keep their own copies until they drain.
	m.closeListeners()
}

func (m *Master) reopenLogs() {
	if err := m.logFile.Reopen(); err != nil {
		m.log.Error("reopen log file", "error", err)
		// The error may have gone only to the old, perhaps deleted, file.
		fmt.Fprintf(m.opts.Stderr, "forkd: reopening log file %s failed: %v\n", m.cfg.Log.File, err)
	}
	m.prepareLogFiles()
	for _, w := range m.workers {
		m.signal(w, syscall.SIGUSR1)
	}
	m.log.Info("log files reopened")
}

// active returns the worker serving slot in the current generation that is
// neither retiring nor stopping.
func (m *Master) active(slot int) *worker {
	for _, w := range m.workers {
		if w.slot == slot && w.gen == m.gen && w.txn == nil && w.retiring == stopNone && !w.stopping {
			return w
		}
	}
	return nil
}

func (m *Master) wanted() int {
	if m.winched {
		return 0
	}
	return m.want
}

// reconcile compares the wanted workers with the actual ones: it starts what
// is missing by slot, drives a pending reload, and retires what a ready
// successor has replaced.
func (m *Master) reconcile(now time.Time) {
	if m.phase == draining && !now.Before(m.drainEnd) {
		m.log.Info("drain_delay over; stopping gracefully")
		m.stop(stopping)
	}
	if !m.serving() {
		return
	}
	if m.pending != nil {
		// First: committing it changes what is wanted.
		m.advanceReload(m.pending)
	}
	want := m.wanted()
	for slot := 0; slot < want; slot++ {
		if m.active(slot) != nil {
			continue
		}
		s := m.slot(slot)
		if now.Before(s.next) {
			continue
		}
		if err := m.spawn(workerSpec{slot: slot, gen: m.gen, cfg: m.cfg, cfgFile: m.cfgFile, zones: m.zones, draining: m.phase == draining}, nil); err != nil {
			s.failures++
			s.next = now.Add(backoff(s.failures))
			m.log.Error("cannot start worker", "slot", slot, "error", err)
		}
	}
	allReady := true
	for slot := 0; slot < want; slot++ {
		if a := m.active(slot); a == nil || !a.ready {
			allReady = false
		}
	}
	for _, w := range m.workers {
		if w.stopping || w.txn != nil {
			continue
		}
		var cause stopCause
		switch {
		case w.slot >= want:
			cause = stopScaleDown
			if m.winched {
				cause = stopWinch
			}
		case w.gen != m.gen:
			cause = stopReload
		case w.retiring != stopNone:
			cause = w.retiring
		default:
			continue
		}
		// Keep serving until the successor in this slot is ready, so the
		// listeners always have someone accepting.
		if w.slot < want {
			if a := m.active(w.slot); a == nil || !a.ready {
				continue
			}
		}
		m.stopWorker(w, cause)
	}
	if allReady && m.pendingUp && want > 0 {
		m.pendingUp = false
		m.log.Info("all workers ready", "workers", want)
		m.notify("READY=1", "STATUS="+m.statusLine())
		m.signalUpgradeReady()
	}
}

func (m *Master) slot(n int) *slotState {
	s, ok := m.slots[n]
	if !ok {
		s = &slotState{}
		m.slots[n] = s
	}
	return s
}

func backoff(failures int) time.Duration {
	d := time.Duration(float64(backoffBase) * math.Pow(2, float64(failures-1)))
	if d > backoffCap || d <= 0 {
		d = backoffCap
	}
	return d
}

// signal sends sig to w, unless w has exited: its pid, already waited
// for, may belong to another process by now.
func (m *Master) signal(w *worker, sig syscall.Signal) {
	if w.exit != nil {
		return
	}
	_ = m.env.kill(w.pid, sig)
}

func (m *Master) stopWorker(w *worker, cause stopCause) {
	w.stopping = true
	w.stopCause = cause
	// The worker ends its own drain at graceful_timeout and closes what is
	// left; SIGKILL follows only if it cannot.
	w.stopDeadline = m.env.now().Add(m.cfg.GracefulTimeout + killGrace)
	m.log.Info("stopping worker gracefully", "worker_pid", w.pid, "slot", w.slot, "worker_generation", w.gen, "cause", cause.String())
	m.signal(w, syscall.SIGTERM)
}

// checkTimeouts kills workers silent for worker_timeout and stopping workers
// past graceful_timeout. A worker whose message waits unread in its socket
// is not silent.
func (m *Master) checkTimeouts(now time.Time) {
	for _, w := range m.workers {
		if w.exit != nil {
			if now.Sub(w.exitAt) >= exitGrace {
				m.reap(*w.exit) // its stream never ended: handle it anyway
			}
			continue
		}
		if w.killedFor != notKilled {
			continue
		}
		switch {
		case w.stopping && now.After(w.stopDeadline):
			m.kill(w, killStopTimeout)
			m.log.Warn("worker did not stop in time; killing", "worker_pid", w.pid, "slot", w.slot)
		case !w.stopping && now.Sub(w.lastBeat) > m.timeoutOf(w):
			if w.conn != nil && w.conn.Pending() {
				continue // read on the next turn
			}
			m.kill(w, killTimeout)
			m.log.Error("worker timed out (no heartbeat); killing", "worker_pid", w.pid, "slot", w.slot,
				"silent_for", now.Sub(w.lastBeat).Round(time.Millisecond).String())
		}
	}
}

func (m *Master) kill(w *worker, why killReason) {
	w.killedFor = why
	m.signal(w, syscall.SIGKILL)
}

// spawn starts one worker; txn is the reload it boots for (nil: it joins
// the current generation).
func (m *Master) spawn(spec workerSpec, txn *reloadTxn) error {
	pid, conn, err := m.env.start(spec)
	if err != nil {
		return err
	}
	now := m.env.now()
	w := &worker{slot: spec.slot, gen: spec.gen, pid: pid, conn: conn, txn: txn, started: now, lastBeat: now}
	m.workers[pid] = w
	m.sendTLS(w, spec.cfg)
	m.log.Debug("worker started", "worker_pid", pid, "slot", spec.slot, "worker_generation", spec.gen)
	return nil
}

// workerEnv is the environment a worker starts with: ours, minus systemd's
// variables meant for the master alone, plus a GOMAXPROCS that shares the
// CPUs between workers (protocol.WorkerProcs) unless the operator chose
// one.
func workerEnv(cfg *config.Config) []string {
	env := make([]string, 0, len(os.Environ())+1)
	hasProcs := false
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID":
			continue
		case "GOMAXPROCS":
			hasProcs = true
		}
		if strings.HasPrefix(k, "FORKD_") {
			continue
		}
		env = append(env, kv)
	}
	if !hasProcs && cfg.Workers > 0 {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(protocol.WorkerProcs(runtime.NumCPU(), cfg.Workers)), ipc.EnvLoopP+"=1")
	}
	return env
}

func (m *Master) handleMsg(ev msgEvent) {
	w, ok := m.workers[ev.pid]
	if !ok {
		return
	}
	if ev.err != nil {
		w.streamDone = true
		if w.exit != nil {
			m.reap(*w.exit)
			return
		}
		if !errors.Is(ev.err, io.EOF) && !errors.Is(ev.err, net.ErrClosed) && !errors.Is(ev.err, ipc.ErrTooBig) &&
			!w.ready && !w.stopping && w.killedFor == notKilled {
			// A worker we cannot hear from cannot boot.
			m.log.Error("ipc failure; killing worker", "worker_pid", w.pid, "error", ev.err)
			m.kill(w, killIPC)
		}
		return // the exit event follows
	}
	now := m.env.now()
	switch ev.msg.Type {
	case ipc.TypeReady:
		w.ready = true
		w.lastBeat = now
		if w.txn == nil {
			m.everReady = true
			m.slot(w.slot).failures = 0
		}
		m.log.Info("worker ready", "worker_pid", w.pid, "slot", w.slot, "worker_generation", w.gen)
	case ipc.TypeHeartbeat:
		w.lastBeat = now
		if ev.msg.Heartbeat != nil {
			w.beat = *ev.msg.Heartbeat
			m.noteMemory(w, now)
		}
	case ipc.TypeBootError:
		w.bootErr = ev.msg.Error
	case ipc.TypeRetire:
		if hb := ev.msg.Heartbeat; hb != nil {
			// The count at the moment max_requests was reached, not the
			// last heartbeat's (0 in a worker's first second).
			w.beat = *hb
			w.lastBeat = now
		}
		if w.retiring == stopNone && !w.stopping {
			w.retiring = stopMaxRequests
			m.log.Info("worker reached max_requests; replacing it", "worker_pid", w.pid, "slot", w.slot, "requests", w.beat.Requests)
		}
	}
}

// reapChildren waits for every child that has exited: workers, a
// successor master that failed, and, when forkd runs as PID 1 (a
// container's init), the orphans reparented to it, which gunicorn's arbiter
// reaps too. This is the one place the master waits for children.
func (m *Master) reapChildren() {
	for {
		var ws unix.WaitStatus
		pid, err := m.env.wait4(-1, &ws, unix.WNOHANG)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return // ECHILD: no children; 0: none has exited
		}
		switch {
		case m.workers[pid] != nil:
			m.exited(m.workers[pid], exitEvent{pid: pid, status: syscall.WaitStatus(ws), known: true})
		case m.upgrading != nil && m.upgrading.pid == pid:
			m.handleUpgrade(upgradeEvent{err: fmt.Errorf("new master %s", causeOf(syscall.WaitStatus(ws)))})
			if m.upgrading.done && !m.handedOver {
				m.upgrading = nil
			}
		default:
			m.log.Debug("reaped an orphan", "orphan_pid", pid)
		}
	}
}

// exited records a worker's exit; it is handled (reap) once every message
// the worker sent has been read, so that a boot error sent just before the
// exit is known when the exit is classified.
func (m *Master) exited(w *worker, ev exitEvent) {
	w.exit = &ev
	w.exitAt = m.env.now()
	if w.conn == nil || w.streamDone {
		m.reap(ev)
	}
}

// reap handles one exited worker: classify, count, and schedule a restart.
func (m *Master) reap(ev exitEvent) {
	w, ok := m.workers[ev.pid]
	if !ok {
		return
	}
	delete(m.workers, ev.pid)
	if w.conn != nil {
		w.conn.Close()
	}
	// A worker killed inside a store write leaves its bucket locked; free
	// it now, before its pid can be reused.
	// (The master maps the current generation's zones and a pending
	// reload's; a store it no longer maps is left to the workers' own
	// recovery.)
	n := m.zones.release(w.pid)
	if m.pending != nil && m.pending.zones != nil && m.pending.zones.store != m.zones.storeOrNil() {
		n += m.pending.zones.release(w.pid)
	}
	if n > 0 {
		m.log.Warn("freed the shared store locks of a dead worker", "worker_pid", w.pid, "locks", n)
	}
	m.stats.retiredReqs += w.beat.Requests
	m.stats.retired = m.stats.retired.Plus(w.beat.Status)
	m.stats.retiredH2 = m.stats.retiredH2.Plus(w.beat.H2Status)
	cause := classify(ev, w.killedFor)
	now := m.env.now()
	if w.stopping && w.killedFor == notKilled {
		m.log.Info("worker stopped", "worker_pid", w.pid, "slot", w.slot, "worker_generation", w.gen, "cause", w.stopCause.String())
		if c, ok := w.stopCause.restart(); ok {
			m.stats.restarts[c]++
		}
		return
	}
	if w.txn != nil {
		// A worker of a new generation died before that generation
		// became current: the reload is refused, nothing is restarted.
		msg := w.bootErr
		if msg == "" {
			msg = "worker " + cause.String()
		}
		m.log.Error("worker of the new generation died", "worker_pid", w.pid, "slot", w.slot, "worker_generation", w.gen,
			"cause", cause.String(), "uptime", now.Sub(w.started).Round(time.Millisecond).String())
		if w.txn == m.pending {
			m.endReload(w.txn, errors.New(msg), true)
		}
		return
	}
	// Whatever ends a worker before it is ready, the master's SIGKILL
	// included, is a failed boot: back-off, and exit 3 at start.
	failedBoot := !w.ready || now.Sub(w.started) < bootWindow
	switch {
	case failedBoot:
		m.stats.restarts[restartBootFailure]++
	case w.killedFor == killTimeout:
		m.stats.restarts[restartTimeout]++
	default:
		m.stats.restarts[restartCrash]++
	}
	s := m.slot(w.slot)
	if failedBoot {
		s.failures++
		s.next = now.Add(backoff(s.failures))
	} else {
		s.failures = 0
		s.next = time.Time{}
	}
	args := []any{"worker_pid", w.pid, "slot", w.slot, "worker_generation", w.gen, "cause", cause.String(),
		"uptime", now.Sub(w.started).Round(time.Millisecond).String()}
	if w.bootErr != "" {
		args = append(args, "error", w.bootErr)
	}
	if m.serving() && s.failures > 0 {
		args = append(args, "failed_boots", s.failures, "restart_in", backoff(s.failures).String())
	}
	m.log.Error("worker died", args...)
	if !m.serving() || !failedBoot {
		return
	}
	if !m.everReady && (w.bootErr != "" || s.failures >= startupAttempts) && w.gen == m.firstGen {
		msg := w.bootErr
		if msg == "" {
			msg = cause.String()
		}
		m.log.Error("no worker could boot; stopping", "error", msg)
		if m.cfg.Log.File != "" {
			fmt.Fprintf(m.opts.Stderr, "forkd: workers failed to boot: %s\n", msg)
		}
		m.exitCode = ExitBootFailed
		m.shutdown(quitting)
	}
}

func (m *Master) addresses() []string {
	out := make([]string, 0, len(m.cfg.Listen))
	for _, l := range m.cfg.Listen {
		out = append(out, l.Address)
	}
	return out
}

func (m *Master) statusLine() string {
	ready := 0
	for _, w := range m.workers {
		if w.gen == m.gen && w.txn == nil && w.ready && !w.stopping {
			ready++
		}
	}
	return fmt.Sprintf("generation %d: %d/%d workers ready", m.gen, ready, m.wanted())
}

func (m *Master) notifyStatus() {
	m.notify("STATUS=" + m.statusLine())
}

// notify sends one sd_notify datagram (nothing without NOTIFY_SOCKET). After
// a binary upgrade handed over, the new master speaks to systemd: a
// STOPPING=1 from the old one would stop the service.
func (m *Master) notify(lines ...string) {
	if m.handedOver {
		return
	}
	if err := m.env.notify(lines...); err != nil {
		m.log.Warn("sd_notify failed", "error", err)
	}
}

func (m *Master) writePidfile() error {
	return m.writePidfileAt(m.cfg.Pidfile)
}

func (m *Master) writePidfileAt(p string) error {
	if p == "" {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".forkd.pid.*")
	if err != nil {
		return fmt.Errorf("pidfile: %w", err)
	}
	_, err = tmp.WriteString(strconv.Itoa(m.pid) + "\n")
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("pidfile: %w", err)
	}
	return nil
}

// removePidfile removes the pidfile if it still names us (a successor
// master from USR2 may have replaced it).
func (m *Master) removePidfile() {
	m.removePidfileAt(m.cfg.Pidfile)
}

func (m *Master) removePidfileAt(p string) {
	if p == "" {
		return
	}
	b, err := os.ReadFile(p)
	if err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(m.pid) {
		os.Remove(p)
	}
}

// closeListeners closes the master's copies of the listeners; after a
// hand-over the successor owns the unix socket files, so they stay.
func (m *Master) closeListeners() {
	for addr, l := range m.listeners {
		if m.handedOver {
			l.unix = ""
		}
		l.close()
		delete(m.listeners, addr)
	}
}

func (m *Master) closeAll() {
	m.stopMetrics()
	if m.ctlSrv != nil {
		m.ctlSrv.Close()
	}
	m.sd.Close()
	m.closeListeners()
	m.removePidfile()
	if m.pending != nil {
		m.pending.close(m)
		m.pending = nil
	}
	if m.cfgFile != nil {
		m.cfgFile.Close()
	}
	m.zones.closeExcept(nil)
	if m.logFile != nil {
		m.logFile.Close() // last: everything above may log
	}
}

func monotonicUsec() string {
	var ts syscall.Timespec
	_ = clockGettime(&ts)
	return "MONOTONIC_USEC=" + strconv.FormatInt(ts.Nano()/1000, 10)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
