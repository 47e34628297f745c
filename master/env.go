package master

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/ipc"
	"golang.org/x/sys/unix"
)

// env is the master's window on the operating system: every process start,
// signal and clock reading of the loop goes through it, so unit tests run
// the supervisor's logic (reconcile, reap, back-off, timeouts, the reload
// transaction) without processes, the way tableflip's env struct does.
type env struct {
	now    func() time.Time
	start  func(spec workerSpec) (pid int, conn *ipc.Conn, err error)
	kill   func(pid int, sig syscall.Signal) error
	notify func(lines ...string) error // sd_notify
	// wait4 is wait4(2), which reapChildren calls with WNOHANG.
	wait4 func(pid int, ws *unix.WaitStatus, options int) (int, error)
	// exec starts a command, a successor master on USR2, and returns its
	// pid; it is reaped by reapChildren like every child.
	exec func(cmd *exec.Cmd) (int, error)
	// terminal tells whether the master has a controlling terminal.
	terminal func() bool
}

// workerSpec is what one worker process starts with.
type workerSpec struct {
	slot, gen int
	cfg       *config.Config
	cfgFile   *os.File // the generation's configuration (ipc.ConfigFile)
	zones     *zoneSet // the generation's shared-memory zones
	draining  bool     // started while the master drains: health routes answer 503
}

// osEnv is the real environment of m: workers are re-executions of the
// binary, each with an ipc socket whose messages reach the loop over
// m.msgs; their exits reach it as SIGCHLD.
func osEnv(m *Master) env {
	return env{
		now:   time.Now,
		start: m.startProcess,
		kill:  syscall.Kill,
		notify: func(lines ...string) error {
			return m.sd.Send(lines...)
		},
		wait4: func(pid int, ws *unix.WaitStatus, options int) (int, error) {
			return unix.Wait4(pid, ws, options, nil)
		},
		exec: func(cmd *exec.Cmd) (int, error) {
			if err := cmd.Start(); err != nil {
				return 0, err
			}
			return cmd.Process.Pid, nil
		},
		terminal: hasTerminal,
	}
}

// startProcess executes one worker and starts the goroutine that forwards
// its messages to the loop.
func (m *Master) startProcess(spec workerSpec) (int, *ipc.Conn, error) {
	conn, theirs, err := ipc.Pair()
	if err != nil {
		return 0, nil, err
	}
	defer theirs.Close()
	lns := make([]ipc.Listener, 0, len(spec.cfg.Listen)+len(m.extra))
	for _, l := range spec.cfg.Listen {
		lns = append(lns, ipc.Listener{Address: l.Address, File: m.listeners[l.Address].file})
	}
	for _, a := range m.extra {
		lns = append(lns, ipc.Listener{Address: a, File: m.listeners[a].file})
	}
	files, envv := ipc.ExtraFiles(theirs, spec.cfgFile, lns, spec.slot, spec.gen)
	files, envv = ipc.AppendZones(files, envv, spec.zones.files())
	cmd := exec.Command(m.opts.Executable)
	cmd.Args = append([]string{workerName(m.opts.Args[0], spec.gen, spec.slot)}, m.opts.Args[1:]...)
	cmd.Env = append(workerEnv(spec.cfg), envv...)
	if spec.draining {
		cmd.Env = append(cmd.Env, ipc.EnvDraining+"=1")
	}
	cmd.ExtraFiles = files
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Pdeathsig: syscall.SIGKILL,
		// Own process group: a terminal's ^C reaches the master only,
		// which then stops the workers in order.
		Setpgid: true,
	}
	cred, err := credential(spec.cfg)
	if err != nil {
		conn.Close()
		return 0, nil, err
	}
	if cred != nil {
		cmd.SysProcAttr.Credential = cred
	}
	if err := cmd.Start(); err != nil {
		conn.Close()
		return 0, nil, fmt.Errorf("start worker: %w", err)
	}
	pid := cmd.Process.Pid
	go func() {
		for {
			msg, err := conn.Recv()
			m.msgs <- msgEvent{pid: pid, msg: msg, err: err}
			if err != nil {
				return
			}
		}
	}()
	// The loop reaps every child itself on SIGCHLD (reapChildren): no
	// goroutine blocks in wait4 for each worker, which would cost the
	// master a thread per worker. Release drops os's handle (a pidfd) now.
	_ = cmd.Process.Release()
	return pid, conn, nil
}

// workerName is a worker's argv[0], which ps and top show, in nginx's
// style: "forkd: worker gen 3 slot 1" (the program's base name first, so
// an embedding program shows its own).
func workerName(arg0 string, gen, slot int) string {
	return programName(arg0) + ": worker gen " + strconv.Itoa(gen) + " slot " + strconv.Itoa(slot)
}

// programName is the base name of the running program as the operator
// started it ("forkd" for /usr/local/bin/forkd).
func programName(arg0 string) string {
	arg0, _, _ = strings.Cut(arg0, ":") // a name we gave, such as "forkd: master"
	return filepath.Base(arg0)
}
