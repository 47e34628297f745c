package master

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/forkd/forkd/internal/control"
	"github.com/forkd/forkd/ipc"
)

// Environment of a master started by USR2 (binary upgrade).
const (
	envUpgradeFDs     = "FORKD_UPGRADE_FDS"     // "addr=fd,..." listeners handed over (ipc.EncodeFDs)
	envUpgradeMetrics = "FORKD_UPGRADE_METRICS" // "addr=fd" of the metrics listener, if any
	envUpgradeCtl     = "FORKD_UPGRADE_CTL"     // fd of the control socket, if any
	envUpgradeReady   = "FORKD_UPGRADE_READY"   // fd of the pipe to write one byte to when ready
	envUpgradeFrom    = "FORKD_UPGRADE_FROM"    // pid of the old master
	envUpgradeGen     = "FORKD_UPGRADE_GEN"     // the old master's latest generation; the new one goes on from it
)

// upgradeGeneration is the generation a master starts with: 1, or after a
// binary upgrade the one after the old master's latest, so that numbers in
// logs, status and metrics never repeat across the hand-over.
func upgradeGeneration() (int, error) {
	v := os.Getenv(envUpgradeGen)
	if v == "" {
		return 1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s=%q: not a generation", envUpgradeGen, v)
	}
	return n + 1, nil
}

// upgradeEvent is the outcome of a binary upgrade: ready, or the new
// master's failure.
type upgradeEvent struct {
	ready bool
	err   error
}

// upgrade holds the state of a successor master while it boots.
type upgrade struct {
	cmd  *exec.Cmd
	pid  int
	done bool
}

// startUpgrade executes the binary on disk as a new master, handing it every
// listener and the control socket. The old master keeps serving until the
// new one writes its readiness byte; if the new one exits first, the upgrade
// failed and nothing changes.
func (m *Master) startUpgrade() {
	if m.upgrading != nil && !m.upgrading.done {
		m.log.Warn("binary upgrade already in progress", "new_master_pid", m.upgrading.pid)
		return
	}
	if m.phase != running {
		return
	}
	r, w, err := os.Pipe()
	if err != nil {
		m.log.Error("binary upgrade: pipe", "error", err)
		return
	}
	defer w.Close()
	var files []*os.File
	add := func(f *os.File) int {
		files = append(files, f)
		return 2 + len(files)
	}
	readyFD := add(w)
	var fds []ipc.NamedFD
	for addr, l := range m.listeners {
		fds = append(fds, ipc.NamedFD{Name: addr, FD: add(l.file)})
	}
	env := append(os.Environ(),
		envUpgradeFDs+"="+ipc.EncodeFDs(fds),
		envUpgradeReady+"="+strconv.Itoa(readyFD),
		envUpgradeFrom+"="+strconv.Itoa(m.pid),
		envUpgradeGen+"="+strconv.Itoa(m.latestGen()),
	)
	var zfds []ipc.NamedFD
	for _, z := range m.zones.files() {
		zfds = append(zfds, ipc.NamedFD{Name: z.Address, FD: add(z.File)})
	}
	env = append(env, envUpgradeZones+"="+ipc.EncodeFDs(zfds))
	if m.metricsFile != nil {
		env = append(env, envUpgradeMetrics+"="+ipc.EncodeFDs([]ipc.NamedFD{{Name: m.cfg.Metrics.Address, FD: add(m.metricsFile)}}))
	}
	if m.ctlSrv != nil {
		cf, err := m.ctlSrv.File()
		if err == nil {
			cf, err = inheritable(cf)
		}
		if err != nil {
			m.log.Error("binary upgrade: control socket", "error", err)
		} else {
			defer cf.Close()
			env = append(env, envUpgradeCtl+"="+strconv.Itoa(add(cf)))
		}
	}
	bin := m.opts.Binary
	cmd := exec.Command(bin, m.opts.MasterArgs...)
	cmd.Args[0] = m.opts.Args[0]
	cmd.Env = env
	cmd.ExtraFiles = files
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	pid, err := m.env.exec(cmd)
	if err != nil {
		r.Close()
		m.log.Error("binary upgrade failed: cannot start the new binary; still serving", "binary", bin, "error", err)
		return
	}
	m.upgrading = &upgrade{cmd: cmd, pid: pid}
	m.log.Info("binary upgrade: new master started", "binary", bin, "new_master_pid", pid)
	go func() {
		defer r.Close()
		b := make([]byte, 1)
		n, err := r.Read(b)
		if n == 1 {
			m.upgrades <- upgradeEvent{ready: true}
			return
		}
		if err == nil || errors.Is(err, io.EOF) {
			err = errors.New("new master exited before it was ready")
		}
		m.upgrades <- upgradeEvent{err: err}
	}()
	// Its exit, if it fails, reaches the loop as SIGCHLD (reapChildren).
	_ = cmd.Process.Release()
}

// latestGen is the newest generation this master has numbered: the current
// one, or a reload's still booting.
func (m *Master) latestGen() int {
	if m.pending != nil {
		return m.pending.gen
	}
	return m.gen
}

// handleUpgrade acts on the successor's outcome: on success the old master
// (us) hands over to it and stops gracefully; on failure it keeps serving.
func (m *Master) handleUpgrade(ev upgradeEvent) {
	u := m.upgrading
	if u == nil || u.done {
		return
	}
	if !ev.ready {
		u.done = true // kept until reaped, so its exit is known as its own
		if m.ctlSrv != nil {
			m.ctlSrv.KeepFile(false) // ours again: remove it when we stop
		}
		m.log.Error("binary upgrade failed; the old master keeps serving", "new_master_pid", u.pid, "error", ev.err)
		return
	}
	u.done = true
	m.log.Info("binary upgrade: new master is ready; stopping this master gracefully", "new_master_pid", u.pid)
	m.handedOver = true // from now on the new master speaks to systemd
	m.shutdown(stopping)
}

// adoptUpgrade takes the listeners and control socket handed over by an old
// master, when this master was started by USR2.
func (m *Master) adoptUpgrade() error {
	v, ok := os.LookupEnv(envUpgradeFDs)
	if !ok {
		return nil
	}
	defer func() {
		for _, k := range []string{envUpgradeFDs, envUpgradeMetrics, envUpgradeCtl, envUpgradeFrom, envUpgradeGen} {
			os.Unsetenv(k)
		}
	}()
	fds, err := ipc.DecodeFDs(envUpgradeFDs, v)
	if err != nil {
		return err
	}
	for _, e := range fds {
		syscall.CloseOnExec(e.FD)
		f, err := inheritable(os.NewFile(uintptr(e.FD), e.Name))
		if err != nil {
			return fmt.Errorf("inherited listener %s: %w", e.Name, err)
		}
		l := &listener{address: e.Name, file: f}
		if path, ok := strings.CutPrefix(e.Name, "unix:"); ok {
			var st syscall.Stat_t
			if syscall.Stat(path, &st) == nil {
				l.unix, l.ino = path, st.Ino
			}
		}
		m.listeners[e.Name] = l
	}
	mfds, err := ipc.DecodeFDs(envUpgradeMetrics, os.Getenv(envUpgradeMetrics))
	if err != nil {
		return err
	}
	for _, e := range mfds {
		syscall.CloseOnExec(e.FD)
		m.inheritedMetrics = &listener{address: e.Name, file: os.NewFile(uintptr(e.FD), "metrics")}
	}
	if s := os.Getenv(envUpgradeCtl); s != "" {
		fd, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("%s: %w", envUpgradeCtl, err)
		}
		syscall.CloseOnExec(fd)
		f := os.NewFile(uintptr(fd), "control")
		srv, err := control.FromFile(f, m.cfg.ControlSocketPath())
		f.Close()
		if err != nil {
			return err
		}
		// The file stays the old master's until we serve: if we fail, it
		// must still find its socket where it was.
		srv.KeepFile(true)
		m.ctlSrv = srv
	}
	if s := os.Getenv(envUpgradeReady); s != "" {
		fd, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("%s: %w", envUpgradeReady, err)
		}
		syscall.CloseOnExec(fd)
		m.readyPipe = os.NewFile(uintptr(fd), "upgrade-ready")
	}
	os.Unsetenv(envUpgradeReady)
	m.log.Info("binary upgrade: took over listeners from the old master", "old_master_pid", os.Getenv(envUpgradeFrom))
	return nil
}

// signalUpgradeReady tells the old master (if any) that we serve, and
// systemd that we are its main process now.
func (m *Master) signalUpgradeReady() {
	if m.readyPipe == nil {
		return
	}
	if err := m.writePidfile(); err != nil {
		// Without a pidfile nobody could find us: fail the upgrade, so the
		// old master keeps serving with its own.
		m.log.Error("binary upgrade failed: cannot write pidfile; stopping this new master", "error", err)
		// Stop answering on the control socket we share with the old
		// master before it learns of the failure: from then on every
		// `forkd status` must reach the master that keeps serving. The
		// file stays (KeepFile): it is still the old master's.
		if m.ctlSrv != nil {
			m.ctlSrv.Close()
		}
		m.readyPipe.Close()
		m.readyPipe = nil
		m.exitCode = ExitConfig
		m.shutdown(quitting)
		return
	}
	if m.ctlSrv != nil {
		m.ctlSrv.KeepFile(false)
	}
	m.notify("MAINPID=" + strconv.Itoa(m.pid))
	if _, err := m.readyPipe.Write([]byte{1}); err != nil {
		m.log.Warn("binary upgrade: cannot tell the old master we are ready", "error", err)
	}
	m.readyPipe.Close()
	m.readyPipe = nil
}
