// The master process itself: its clock, terminal, name in ps, and file limit.

package master

import (
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/procname"
)

func clockGettime(ts *syscall.Timespec) error {
	var t unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &t); err != nil {
		return err
	}
	ts.Sec, ts.Nsec = t.Sec, t.Nsec
	return nil
}

// hasTerminal tells whether this process has a controlling terminal:
// opening /dev/tty succeeds only then (tty(4)); under systemd, or after
// setsid, it fails with ENXIO.
func hasTerminal() bool {
	for {
		fd, err := unix.Open("/dev/tty", unix.O_RDONLY|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false
		}
		unix.Close(fd)
		return true
	}
}

// setProcName names the master for ps, top and pgrep ("forkd: master").
func (m *Master) setProcName(name string) {
	if err := procname.Set(name); err != nil {
		m.log.Debug("cannot set the process name", "error", err)
	}
}

// checkFileLimit warns, as nginx does, when limits.max_connections exceeds
// what RLIMIT_NOFILE lets a worker open: each connection is a descriptor,
// and a worker would fail to accept (EMFILE) long before the limit. Go
// raises a process's soft limit to the hard one at start, so the hard limit
// is what a worker gets.
func (m *Master) checkFileLimit(cfg *config.Config) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return
	}
	need := uint64(cfg.Limits.MaxConnections) + config.DescriptorReserve
	if rl.Max != unix.RLIM_INFINITY && need > rl.Max {
		m.log.Warn("limits.max_connections exceeds the open file limit (RLIMIT_NOFILE); workers cap it",
			"max_connections", cfg.Limits.MaxConnections, "nofile_limit", rl.Max)
	}
}
