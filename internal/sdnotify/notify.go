package sdnotify

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Environment variables set by systemd; see sd_notify(3), sd_watchdog_enabled(3)
// and sd_listen_fds(3).
const (
	EnvNotifySocket = "NOTIFY_SOCKET"
	EnvWatchdogUsec = "WATCHDOG_USEC"
	EnvWatchdogPID  = "WATCHDOG_PID"
	EnvListenPID    = "LISTEN_PID"
	EnvListenFDs    = "LISTEN_FDS"
	EnvListenNames  = "LISTEN_FDNAMES"
)

// sendTimeout bounds how long one notification may block when systemd's
// receive queue is full, so a stalled service manager cannot wedge the
// caller's supervisor loop.
const sendTimeout = 2 * time.Second

// ErrUnsupportedSocket is returned by Send when NOTIFY_SOCKET names an address
// family other than a unix socket path or an abstract unix socket.
var ErrUnsupportedSocket = errors.New("sdnotify: unsupported NOTIFY_SOCKET address")

// A Notifier sends state notifications to the service manager over the
// datagram socket named by NOTIFY_SOCKET. It keeps one close-on-exec socket
// open for its lifetime and addresses every datagram to the notification
// socket, so it keeps working when systemd re-executes itself and recreates
// that socket.
//
// A nil *Notifier, or one made when NOTIFY_SOCKET was unset, is valid: its
// methods do nothing and return nil. A Notifier is safe for concurrent use.
type Notifier struct {
	addr     string // NOTIFY_SOCKET as given; "" when disabled
	sa       *unix.SockaddrUnix
	watchdog time.Duration // WATCHDOG_USEC for this process; 0 when off
	initErr  error

	mu sync.Mutex
	fd int // -1 when closed or never opened
}

// New returns a Notifier for the NOTIFY_SOCKET and WATCHDOG_USEC of the
// current environment. It records them, so a later UnsetEnvironment does not
// disable the Notifier. An unusable NOTIFY_SOCKET is not reported here but by
// every Send, so that start-up does not fail on a notification problem the
// caller may choose to log and ignore.
func New() *Notifier {
	n := &Notifier{fd: -1}
	n.watchdog = watchdogFromEnv(os.Getenv(EnvWatchdogUsec), os.Getenv(EnvWatchdogPID), os.Getpid())

	addr := os.Getenv(EnvNotifySocket)
	if addr == "" {
		return n
	}
	n.addr = addr
	// A path or, with a leading '@', a Linux abstract socket name. x/sys/unix
	// turns the '@' into the leading NUL byte of the abstract namespace.
	if !strings.HasPrefix(addr, "/") && !strings.HasPrefix(addr, "@") {
		n.initErr = fmt.Errorf("%w: %q", ErrUnsupportedSocket, addr)
		return n
	}
	if len(addr) < 2 {
		n.initErr = fmt.Errorf("%w: %q", ErrUnsupportedSocket, addr)
		return n
	}
	n.sa = &unix.SockaddrUnix{Name: addr}

	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		n.initErr = fmt.Errorf("sdnotify: socket: %w", err)
		return n
	}
	tv := unix.NsecToTimeval(sendTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		unix.Close(fd)
		n.initErr = fmt.Errorf("sdnotify: setsockopt SO_SNDTIMEO: %w", err)
		return n
	}
	n.fd = fd
	return n
}

// Enabled reports whether the process was started with NOTIFY_SOCKET set.
func (n *Notifier) Enabled() bool {
	return n != nil && n.addr != ""
}

// Socket returns the NOTIFY_SOCKET value recorded by New, or "" when
// notifications are disabled. A master that starts its own successor (binary
// upgrade) passes it on, so the successor can announce its MAINPID.
func (n *Notifier) Socket() string {
	if n == nil {
		return ""
	}
	return n.addr
}

// Send sends the given "KEY=VALUE" assignments to the service manager as one
// datagram, joined by newlines, as sd_notify(3) describes. It returns nil
// without doing anything when notifications are disabled.
func (n *Notifier) Send(lines ...string) error {
	if !n.Enabled() || len(lines) == 0 {
		return nil
	}
	if n.initErr != nil {
		return n.initErr
	}
	msg := []byte(strings.Join(lines, "\n"))

	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fd < 0 {
		return fmt.Errorf("sdnotify: send: %w", os.ErrClosed)
	}
	for {
		// A datagram is delivered whole or not at all. SO_SNDTIMEO makes the
		// call interruptible, so EINTR is possible and means "try again".
		err := unix.Sendto(n.fd, msg, unix.MSG_NOSIGNAL, n.sa)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("sdnotify: send to %s: %w", n.addr, err)
		}
		return nil
	}
}

// Ready tells the service manager that start-up, or a reload, is complete.
func (n *Notifier) Ready() error { return n.Send("READY=1") }

// Reloading tells the service manager that the service is reloading its
// configuration. It sends RELOADING=1 together with MONOTONIC_USEC, the
// current CLOCK_MONOTONIC time in microseconds, which systemd 253 and newer
// require to tell this reload from an earlier one. Send Ready once the reload
// has finished, whether it succeeded or not.
func (n *Notifier) Reloading() error {
	if !n.Enabled() {
		return nil
	}
	usec, err := monotonicUsec()
	if err != nil {
		return err
	}
	return n.Send("RELOADING=1", "MONOTONIC_USEC="+strconv.FormatUint(usec, 10))
}

// Stopping tells the service manager that the service is shutting down.
func (n *Notifier) Stopping() error { return n.Send("STOPPING=1") }

// Status sends a one-line, human readable status shown by systemctl status.
// Newlines in s would start new assignments, so they are replaced by spaces.
func (n *Notifier) Status(s string) error {
	s = strings.ReplaceAll(s, "\n", " ")
	return n.Send("STATUS=" + s)
}

// MainPID tells the service manager that pid is now the service's main
// process. A master that hands over to a new master sends it from the new
// one; the unit then needs NotifyAccess=all.
func (n *Notifier) MainPID(pid int) error {
	return n.Send("MAINPID=" + strconv.Itoa(pid))
}

// Watchdog sends a keep-alive ping to the service manager's watchdog.
func (n *Notifier) Watchdog() error { return n.Send("WATCHDOG=1") }

// WatchdogInterval returns how often to call Watchdog and true when the
// service manager expects watchdog pings from this process, that is when
// WATCHDOG_USEC was set at New and WATCHDOG_PID was unset or named this
// process. The period is half of WATCHDOG_USEC, as sd_watchdog_enabled(3)
// advises, so one late ping does not cost the service its life.
func (n *Notifier) WatchdogInterval() (time.Duration, bool) {
	if n == nil || n.watchdog <= 0 {
		return 0, false
	}
	return n.watchdog / 2, true
}

// Close closes the notification socket. Later sends return an error wrapping
// os.ErrClosed.
func (n *Notifier) Close() error {
	if n == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fd < 0 {
		return nil
	}
	err := unix.Close(n.fd)
	n.fd = -1
	if err != nil {
		return fmt.Errorf("sdnotify: close: %w", err)
	}
	return nil
}

// watchdogFromEnv parses WATCHDOG_USEC and WATCHDOG_PID and returns the full
// watchdog timeout, or 0 when the watchdog is off or meant for another
// process.
func watchdogFromEnv(usec, wpid string, pid int) time.Duration {
	if usec == "" {
		return 0
	}
	u, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || u == 0 {
		return 0
	}
	if wpid != "" {
		p, err := strconv.Atoi(wpid)
		if err != nil || p != pid {
			return 0
		}
	}
	if u > uint64(1<<63-1)/uint64(time.Microsecond) {
		return 0
	}
	return time.Duration(u) * time.Microsecond
}

// monotonicUsec returns CLOCK_MONOTONIC in microseconds, the clock systemd
// uses for MONOTONIC_USEC.
func monotonicUsec() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("sdnotify: clock_gettime: %w", err)
	}
	return uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3, nil
}
