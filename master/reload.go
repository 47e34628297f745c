package master

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/control"
	"github.com/forkd/forkd/internal/logging"
	"github.com/forkd/forkd/ipc"
)

// reloadTxn is a reload in progress: a new generation that boots beside the
// current one and becomes current only when every one of its workers has
// reported ready. Until then the current configuration, generation and
// workers stay as they are, and whatever dies among the current workers is
// replaced from the current configuration. If any worker of the new
// generation fails before that, the reload is refused and undone whole.
type reloadTxn struct {
	cfg     *config.Config
	gen     int
	cfgFile *os.File      // the new generation's configuration for its workers
	zones   *zoneSet      // its shared-memory zones: the current ones it keeps, and new ones
	logFile *logging.File // the master's new log file, when log.file changed
	opened  []string      // listeners bound for this reload alone
	spawned map[int]bool  // slots started (each once: a failure refuses the reload)
	replies []chan control.Response

	pidfile bool            // cfg.Pidfile is new and written
	ctl     *control.Server // a new control socket (path changed or file gone); nil: keep
	ctlOff  bool            // the new configuration has no control socket
}

// reload re-reads the configuration and starts a new generation from it. An
// invalid configuration, or one whose files or listeners the master cannot
// open, is refused at once; otherwise the outcome comes when the new
// generation is ready or has failed (advanceReload, endReload). reply, if
// not nil, receives that outcome.
func (m *Master) reload(reply chan control.Response) {
	if m.phase != running {
		m.log.Warn("reload ignored: the master is stopping")
		answer(reply, errors.New("the master is stopping"))
		return
	}
	m.notify("RELOADING=1", monotonicUsec())
	if m.pending != nil {
		m.log.Info("a newer reload supersedes the one in progress", "generation", m.pending.gen)
		m.endReload(m.pending, errors.New("superseded by a newer reload"), false)
	}
	txn, err := m.prepareReload()
	if err != nil {
		m.refuseReload(err)
		answer(reply, err)
		return
	}
	if reply != nil {
		txn.replies = append(txn.replies, reply)
	}
	m.pending = txn
	m.log.Info("reloading: starting a new generation", "new_generation", txn.gen, "workers", txn.cfg.Workers)
	m.logWarnings(txn.cfg)
}

// prepareReload loads the configuration and opens everything the new
// generation needs from the master before any worker starts: its log files,
// listeners and configuration file. On error nothing has changed.
func (m *Master) prepareReload() (*reloadTxn, error) {
	cfg := m.cfg
	if m.opts.Load != nil {
		c, err := m.opts.Load()
		if err != nil {
			return nil, fmt.Errorf("configuration invalid: %w", err)
		}
		cfg = c
	}
	if _, err := credential(cfg); err != nil {
		return nil, err
	}
	txn := &reloadTxn{cfg: cfg, gen: m.gen + 1, spawned: make(map[int]bool)}
	if cfg.Log.File != m.cfg.Log.File {
		lf, err := logging.OpenFile(cfg.Log.File)
		if err != nil {
			return nil, fmt.Errorf("cannot open the new log file: %w", err)
		}
		txn.logFile = lf
	}
	if err := checkLogFile(cfg.Log.Access); err != nil {
		txn.close(m)
		return nil, fmt.Errorf("cannot open the new access log: %w", err)
	}
	opened, err := m.openListeners(cfg)
	if err != nil {
		txn.close(m)
		return nil, fmt.Errorf("cannot open listeners: %w", err)
	}
	txn.opened = opened
	if txn.cfgFile, err = ipc.ConfigFile(cfg); err != nil {
		txn.close(m)
		return nil, err
	}
	if txn.zones, err = makeZones(cfg, m.zones, nil); err != nil {
		txn.close(m)
		return nil, err
	}
	if err := m.prepareOwnFiles(txn); err != nil {
		txn.close(m)
		return nil, err
	}
	return txn, nil
}

// prepareOwnFiles applies, in advance, a change of the master's own files:
// a new pidfile is written (it names this same process), a new control
// socket is opened, and a control socket whose file was removed is made
// again. The old ones go at commit; on refusal the new ones do.
func (m *Master) prepareOwnFiles(txn *reloadTxn) error {
	if m.readyPipe != nil {
		return nil // a successor of USR2 takes these over once it serves
	}
	if p := txn.cfg.Pidfile; p != "" && p != m.cfg.Pidfile {
		if err := m.writePidfileAt(p); err != nil {
			return fmt.Errorf("cannot write the new pidfile: %w", err)
		}
		txn.pidfile = true
	}
	path := txn.cfg.ControlSocketPath()
	switch {
	case path == "":
		txn.ctlOff = m.ctlSrv != nil
	case m.ctlSrv == nil || path != m.ctlSrv.Path() || !m.ctlSrv.Present():
		if m.ctlSrv != nil && path == m.ctlSrv.Path() {
			m.log.Warn("control socket file is gone; making it again", "path", path)
		}
		srv, err := control.Listen(path)
		if err != nil {
			return fmt.Errorf("cannot open the new control socket: %w", err)
		}
		txn.ctl = srv
	}
	return nil
}

// checkLogFile tells whether a log file can be opened for appending (it is
// created if missing, as the workers would).
func checkLogFile(path string) error {
	if path == "" || path == "-" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	return f.Close()
}

// advanceReload starts what is missing of the new generation and commits
// it once all its workers are ready.
func (m *Master) advanceReload(txn *reloadTxn) {
	for slot := 0; slot < txn.cfg.Workers; slot++ {
		if txn.spawned[slot] {
			continue
		}
		txn.spawned[slot] = true
		if err := m.spawn(workerSpec{slot: slot, gen: txn.gen, cfg: txn.cfg, cfgFile: txn.cfgFile, zones: txn.zones}, txn); err != nil {
			m.endReload(txn, fmt.Errorf("cannot start worker: %w", err), true)
			return
		}
	}
	ready := 0
	for _, w := range m.workers {
		if w.txn == txn && w.ready && !w.stopping {
			ready++
		}
	}
	if ready == txn.cfg.Workers {
		m.commitReload(txn)
	}
}

// commitReload makes the new generation current. The old workers are
// retired by reconcile, each once its slot's successor serves.
func (m *Master) commitReload(txn *reloadTxn) {
	m.pending = nil
	oldPidfile := m.cfg.Pidfile
	m.cfg = txn.cfg
	m.gen = txn.gen
	m.want = txn.cfg.Workers
	m.winched = false
	m.everReady = true
	m.cfgFile.Close()
	m.cfgFile = txn.cfgFile
	m.zones.closeExcept(txn.zones)
	m.zones = txn.zones
	if txn.logFile != nil {
		m.logFile.Close()
		m.logFile = txn.logFile
	}
	for _, w := range m.workers {
		if w.txn == txn {
			w.txn = nil
		}
	}
	m.closeUnlisted(txn.cfg)
	if txn.pidfile {
		m.removePidfileAt(oldPidfile)
	}
	if txn.ctl != nil || txn.ctlOff {
		if m.ctlSrv != nil {
			m.ctlSrv.Close()
		}
		m.ctlSrv = txn.ctl
		if m.ctlSrv != nil {
			m.serveControl(m.ctlSrv)
		}
	}
	m.log = m.newLogger(txn.cfg)
	m.prepareLogFiles()
	m.checkFileLimit(txn.cfg)
	m.stats.reloads++
	for _, s := range m.slots {
		s.failures, s.next = 0, time.Time{}
	}
	m.lastReload = &control.ReloadOutcome{At: m.env.now(), OK: true}
	m.log.Info("all workers ready: reload complete, the new generation serves", "workers", m.want)
	m.notify("READY=1", "STATUS="+m.statusLine())
	for _, r := range txn.replies {
		answer(r, nil)
	}
}

// refuseReload reports a reload that failed before any worker started.
func (m *Master) refuseReload(err error) {
	m.stats.reloadFailures++
	m.lastReload = &control.ReloadOutcome{At: m.env.now(), Error: err.Error()}
	m.log.Error("reload refused; the old configuration keeps serving", "error", err.Error())
	m.notify("READY=1", "STATUS=reload failed: "+firstLine(err.Error()))
}

// endReload undoes a reload in progress: its workers stop, what was opened
// for it closes, and the current configuration and generation stay. With
// report set the failure is logged, counted, shown in status and sent to
// systemd (a superseded or interrupted reload is not a failure).
func (m *Master) endReload(txn *reloadTxn, cause error, report bool) {
	if m.pending == txn {
		m.pending = nil
	}
	for _, w := range m.workers {
		if w.txn == txn && !w.stopping {
			m.stopWorker(w, stopRefused)
		}
	}
	txn.close(m)
	if report {
		m.refuseReload(cause)
	}
	for _, r := range txn.replies {
		answer(r, cause)
	}
}

// close releases what prepareReload opened for a reload that will not
// become current.
func (txn *reloadTxn) close(m *Master) {
	if txn.pidfile {
		m.removePidfileAt(txn.cfg.Pidfile)
	}
	if txn.ctl != nil {
		txn.ctl.Close()
	}
	if txn.cfgFile != nil {
		txn.cfgFile.Close()
	}
	txn.zones.closeExcept(m.zones)
	if txn.logFile != nil {
		txn.logFile.Close()
	}
	for _, addr := range txn.opened {
		if l, ok := m.listeners[addr]; ok && !listed(m.cfg, addr) {
			l.close()
			delete(m.listeners, addr)
		}
	}
}

func listed(cfg *config.Config, addr string) bool {
	for _, l := range cfg.Listen {
		if l.Address == addr {
			return true
		}
	}
	return false
}

// answer sends a control command's outcome, if anyone asked.
func answer(reply chan control.Response, err error) {
	if reply == nil {
		return
	}
	if err != nil {
		reply <- control.Response{Error: err.Error()}
		return
	}
	reply <- control.Response{OK: true}
}
