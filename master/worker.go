package master

import (
	"fmt"
	"syscall"
	"time"

	"github.com/forkd/forkd/ipc"
	workerpkg "github.com/forkd/forkd/worker"
)

// worker is the master's record of one worker process. Only the master loop
// touches it.
type worker struct {
	slot, gen, pid int
	conn           *ipc.Conn  // nil in unit tests
	txn            *reloadTxn // the reload this worker boots for; nil once current
	started        time.Time
	lastBeat       time.Time
	ready          bool
	retiring       stopCause // asked for a replacement (max_requests, memory)
	stopping       bool      // TERM (or QUIT) sent
	stopDeadline   time.Time // SIGKILL after this while stopping
	killedFor      killReason
	stopCause      stopCause // why the master stopped it
	bootErr        string
	beat           ipc.Heartbeat
	overMemory     time.Time // since when RSS stays above max_worker_memory

	// A worker's last messages (its boot error) may still be on their way
	// when wait4 reports its exit: the exit is handled once its message
	// stream has ended too, or after exitGrace.
	exit       *exitEvent
	exitAt     time.Time
	streamDone bool
}

// exitGrace bounds how long an exited worker's message stream may take to
// end before its exit is handled anyway.
const exitGrace = time.Second

// stopCause says why the master stopped (or is replacing) a worker.
type stopCause int

const (
	stopNone        stopCause = iota
	stopShutdown              // the master stops
	stopReload                // replaced by a new generation
	stopScaleDown             // TTOU or scale
	stopMaxRequests           // max_requests reached
	stopMemory                // RSS above max_worker_memory for the window
	stopRefused               // its generation's reload was refused
	stopWinch                 // WINCH: all workers stop, the master stays
)

func (c stopCause) String() string {
	switch c {
	case stopShutdown:
		return "shutdown"
	case stopReload:
		return "reload"
	case stopScaleDown:
		return "scale down"
	case stopMaxRequests:
		return "max_requests"
	case stopMemory:
		return "max_worker_memory"
	case stopRefused:
		return "reload refused"
	case stopWinch:
		return "winch"
	default:
		return "none"
	}
}

// restartCause is why the master replaced a worker: the key of its restart
// counters, and the cause label of forkd_worker_restarts_total.
type restartCause uint8

const (
	restartCrash       restartCause = iota
	restartBootFailure              // died before it was ready, or within bootWindow
	restartTimeout                  // killed for missing heartbeats
	restartReload                   // the stops that replace a worker, as stopRestarts pairs them
	restartScaleDown
	restartMaxRequests
	restartMemory
	numRestartCauses
)

// stopRestarts pairs each stop that replaces a worker with its counter;
// the others (shutdown, a refused reload, WINCH) replace none.
var stopRestarts = [...]struct {
	stop    stopCause
	restart restartCause
}{
	{stopReload, restartReload},
	{stopScaleDown, restartScaleDown},
	{stopMaxRequests, restartMaxRequests},
	{stopMemory, restartMemory},
}

// restart returns the counter of a worker stopped for c, false when c
// replaces no worker.
func (c stopCause) restart() (restartCause, bool) {
	for _, p := range stopRestarts {
		if p.stop == c {
			return p.restart, true
		}
	}
	return 0, false
}

func (c restartCause) String() string {
	switch c {
	case restartCrash:
		return "crash"
	case restartBootFailure:
		return "boot failure"
	case restartTimeout:
		return "timeout"
	}
	for _, p := range stopRestarts {
		if p.restart == c {
			return p.stop.String() // one name for the stop and its counter
		}
	}
	return "unknown"
}

// killReason says why the master sent SIGKILL, if it did.
type killReason int

const (
	notKilled       killReason = iota
	killTimeout                // no heartbeat for worker_timeout
	killStopTimeout            // did not stop within graceful_timeout
	killIPC                    // its ipc socket failed before it was ready
)

func (k killReason) String() string {
	switch k {
	case killTimeout:
		return "timeout"
	case killStopTimeout:
		return "graceful timeout"
	case killIPC:
		return "ipc failure"
	default:
		return "not killed"
	}
}

// exitKind classifies how a worker process ended, the way gunicorn's
// reaper does.
type exitKind int

const (
	exitUnknown    exitKind = iota
	exitClean               // status 0
	exitStatus              // another status
	exitBootFailed          // workerpkg.ExitBootError
	exitSignal              // a signal other than SIGKILL
	exitSIGKILL             // SIGKILL not sent by the master: perhaps the OOM killer
	exitKilled              // SIGKILL the master sent (see killReason)
)

// exitCause is one classified exit.
type exitCause struct {
	kind   exitKind
	status int
	sig    syscall.Signal
	killed killReason
}

func classify(ev exitEvent, killed killReason) exitCause {
	if killed != notKilled {
		return exitCause{kind: exitKilled, killed: killed}
	}
	if !ev.known {
		return exitCause{kind: exitUnknown}
	}
	return causeOf(ev.status)
}

// causeOf classifies a wait status.
func causeOf(ws syscall.WaitStatus) exitCause {
	switch {
	case ws.Signaled() && ws.Signal() == syscall.SIGKILL:
		return exitCause{kind: exitSIGKILL, sig: syscall.SIGKILL}
	case ws.Signaled():
		return exitCause{kind: exitSignal, sig: ws.Signal()}
	case ws.ExitStatus() == workerpkg.ExitBootError:
		return exitCause{kind: exitBootFailed, status: workerpkg.ExitBootError}
	case ws.ExitStatus() != 0:
		return exitCause{kind: exitStatus, status: ws.ExitStatus()}
	default:
		return exitCause{kind: exitClean}
	}
}

func (c exitCause) String() string {
	switch c.kind {
	case exitClean:
		return "exited"
	case exitStatus:
		return fmt.Sprintf("exited with status %d", c.status)
	case exitBootFailed:
		return "failed to boot"
	case exitSignal:
		return fmt.Sprintf("killed by signal %s", c.sig)
	case exitSIGKILL:
		return "killed by SIGKILL (perhaps out of memory?)"
	case exitKilled:
		return c.killed.String()
	default:
		return "unknown"
	}
}

// exitEvent is a reaped child.
type exitEvent struct {
	pid    int
	status syscall.WaitStatus
	known  bool // false when wait(2) gave no status
}

// msgEvent is one ipc message (or the end of the stream) from a worker.
type msgEvent struct {
	pid int
	msg *ipc.Message
	err error
}
