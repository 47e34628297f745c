package master

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/forkd/forkd/ipc"
)

// worker is the master's record of one worker process. Only the master loop
// touches it.
type worker struct {
	slot, gen, pid int
	cmd            *exec.Cmd
	conn           *ipc.Conn
	started        time.Time
	lastBeat       time.Time
	ready          bool
	retiring       bool      // asked for a replacement (max_requests)
	stopping       bool      // TERM (or QUIT) sent
	stopDeadline   time.Time // SIGKILL after this while stopping
	killedFor      string    // why the master sent SIGKILL, if it did
	stopCause      string    // why the master stopped it (reload, scale, ...)
	bootErr        string
	beat           ipc.Heartbeat
}

// exitEvent is a reaped child.
type exitEvent struct {
	pid   int
	state *os.ProcessState
	err   error
}

// msgEvent is one ipc message (or the end of the stream) from a worker.
type msgEvent struct {
	pid int
	msg *ipc.Message
	err error
}

// cause classifies a worker's exit the way gunicorn's reaper does.
func (w *worker) cause(st *os.ProcessState) string {
	if w.killedFor != "" {
		return w.killedFor
	}
	if st == nil {
		return "unknown"
	}
	ws, ok := st.Sys().(syscall.WaitStatus)
	if !ok {
		return st.String()
	}
	switch {
	case ws.Signaled() && ws.Signal() == syscall.SIGKILL:
		return "killed by SIGKILL (perhaps out of memory?)"
	case ws.Signaled():
		return fmt.Sprintf("killed by signal %s", ws.Signal())
	case ws.ExitStatus() == 3:
		return "failed to boot"
	case ws.ExitStatus() != 0:
		return fmt.Sprintf("exited with status %d", ws.ExitStatus())
	default:
		return "exited"
	}
}

func (w *worker) signal(sig syscall.Signal) {
	_ = syscall.Kill(w.pid, sig)
}
