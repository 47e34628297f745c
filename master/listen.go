package master

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/forkd/forkd/config"
)

// listener is one socket the master owns for its whole life (or until a
// reload drops its listen block). Workers get dups of file through exec.
type listener struct {
	address string
	file    *os.File // close-on-exec; exec.Cmd passes a copy to each worker
	unix    string   // path of a unix socket we created, removed at exit
	ino     uint64   // inode of that path when we created it

	activated bool // from systemd socket activation: kept across reloads
}

// bind opens the socket for one listen block.
func bind(l config.Listen) (*listener, error) {
	network, addr := l.Network()
	if network == "unix" {
		return bindUnix(l, addr)
	}
	lc := net.ListenConfig{
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				if l.ReusePort {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
				}
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
	ln, err := lc.Listen(context.Background(), network, addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", l.Address, err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err == nil {
		f, err = inheritable(f)
	}
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", l.Address, err)
	}
	return &listener{address: l.Address, file: f}, nil
}

// bindUnix replaces a stale socket file (nobody accepts on it) but refuses to
// steal a path a live server answers on.
func bindUnix(l config.Listen, path string) (*listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("listen %s: %s exists and is not a socket", l.Address, path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen %s: another process is accepting on %s", l.Address, path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("listen %s: remove stale socket: %w", l.Address, err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", l.Address, err)
	}
	ln.SetUnlinkOnClose(false)
	defer ln.Close()
	mode := os.FileMode(l.Mode)
	if mode == 0 {
		mode = 0o666
	}
	if err := os.Chmod(path, mode); err != nil {
		return nil, fmt.Errorf("listen %s: chmod: %w", l.Address, err)
	}
	f, err := ln.File()
	if err == nil {
		f, err = inheritable(f)
	}
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", l.Address, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("listen %s: %w", l.Address, err)
	}
	return &listener{address: l.Address, file: f, unix: path, ino: st.Ino}, nil
}

// gone tells whether this is a unix socket whose file was removed or
// replaced since we created it.
func (l *listener) gone() bool {
	if l.unix == "" {
		return false
	}
	var st unix.Stat_t
	return unix.Stat(l.unix, &st) != nil || st.Ino != l.ino
}

// close closes the master's copy and removes a unix socket file that is
// still the one we created (a successor master may have replaced it).
func (l *listener) close() {
	l.file.Close()
	if l.unix == "" {
		return
	}
	var st unix.Stat_t
	if err := unix.Stat(l.unix, &st); err == nil && st.Ino == l.ino {
		if err := os.Remove(l.unix); err != nil && !errors.Is(err, os.ErrNotExist) {
			_ = err // best effort at exit
		}
	}
}

// inheritable prepares a listening socket's file for ExtraFiles. os/exec
// calls File.Fd for every extra file, and Fd switches a file that os opened
// as nonblocking to blocking mode, each time. O_NONBLOCK belongs to the open
// file description, which every worker shares: a worker that enters
// accept(2) while the socket is blocking sleeps in the kernel, and closing
// its listener cannot wake it, so its graceful stop would hang. So the file
// is re-made while the socket is blocking (os then treats it as a plain
// blocking file whose Fd leaves the flag alone), and the flag is set back
// once for good.
func inheritable(f *os.File) (*os.File, error) {
	defer f.Close()
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0) // Fd: blocking now
	if err != nil {
		return nil, fmt.Errorf("dup listener: %w", err)
	}
	nf := os.NewFile(uintptr(fd), f.Name())
	if err := unix.SetNonblock(fd, true); err != nil {
		nf.Close()
		return nil, fmt.Errorf("set nonblocking: %w", err)
	}
	return nf, nil
}
