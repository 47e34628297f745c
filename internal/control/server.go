package control

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// maxRequestBytes bounds one request line; real requests are tiny.
	maxRequestBytes = 4096
	// readTimeout bounds how long a client may take to send its request.
	readTimeout = 10 * time.Second
	// writeTimeout bounds how long a client may take to read the response.
	writeTimeout = 10 * time.Second
	// probeTimeout bounds the check for a live master on an existing socket.
	probeTimeout = time.Second
	// backlog is the listen(2) queue length: control traffic is rare, but
	// a burst of clients (monitoring, scripts) must not be refused.
	backlog = 128
)

// ErrInUse is returned by Listen when another process, presumably a running
// master, accepts connections on the control socket.
var ErrInUse = errors.New("control socket is in use by a running master")

// A Server accepts control requests on a unix socket. Create one with Listen
// or FromFile, run Serve in its own goroutine, and Close it on shutdown.
type Server struct {
	path string
	ln   *net.UnixListener
	dev  uint64 // identity of the socket file we created, so Close
	ino  uint64 // never removes a successor's socket

	mu       sync.Mutex
	closed   bool
	keepFile bool // set once the socket is handed to a successor
}

// Listen creates the control socket at path with mode 0600 and starts
// listening on it. A socket file left behind by a master that is gone is
// replaced; if a process still accepts connections on it, Listen fails with
// an error wrapping ErrInUse. Listen refuses to remove a path that is not a
// socket. The listening descriptor is close-on-exec.
//
// Two masters started at the same instant could both find a stale file and
// race to replace it; the loser then fails with ErrInUse or, rarely, replaces
// the winner's file. Masters that share a control socket should also share a
// pidfile lock, taken before Listen.
func Listen(path string) (*Server, error) {
	if err := clearStale(path); err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("control: socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), path) // owns fd from here on
	defer f.Close()

	// Linux creates the socket file with the socket inode's mode, masked by
	// the umask, so setting the mode before bind(2) leaves no window in which
	// another user could connect. The Chmod below covers other kernels'
	// behaviour and costs nothing.
	if err := unix.Fchmod(fd, 0o600); err != nil {
		return nil, fmt.Errorf("control: fchmod: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		if errors.Is(err, unix.EADDRINUSE) {
			// Another master created it since clearStale looked.
			return nil, fmt.Errorf("control: %s: %w", path, ErrInUse)
		}
		return nil, fmt.Errorf("control: bind %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("control: %w", err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("control: listen %s: %w", path, err)
	}
	s, err := FromFile(f, path)
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	return s, nil
}

// FromFile returns a Server for a listening unix socket inherited from a
// previous master, for example across a binary upgrade; path is where the
// socket file lives. FromFile duplicates f, so the caller should close f.
func FromFile(f *os.File, path string) (*Server, error) {
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("control: %s: %w", path, err)
	}
	ul, ok := l.(*net.UnixListener)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("control: %s: not a unix socket listener", path)
	}
	// Close decides about the file itself; see Server.Close.
	ul.SetUnlinkOnClose(false)
	s := &Server{path: path, ln: ul}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err == nil {
		s.dev, s.ino = st.Dev, st.Ino
	}
	return s, nil
}

// clearStale removes a socket file at path that nobody listens on.
func clearStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("control: %s exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, probeTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("control: %s: %w", path, ErrInUse)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		// A full backlog (EAGAIN) or a timeout means someone is there.
		return fmt.Errorf("control: probing %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("control: removing stale socket: %w", err)
	}
	return nil
}

// Path returns the socket file's path.
func (s *Server) Path() string { return s.path }

// Serve accepts connections until Close is called, answering each with the
// handler's Response to its Request, and then returns nil. Each connection
// is served in its own goroutine, so handler must be safe for concurrent
// use; a master typically forwards the request to its supervisor loop and
// waits for the answer. Invalid requests are answered without calling the
// handler. Clients whose user is neither root nor the server's effective
// user are refused, in case the socket's mode was loosened.
func (s *Server) Serve(handler func(Request) Response) error {
	var delay time.Duration
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			// Out of descriptors and the like: back off and retry rather
			// than give up on the control socket for good.
			if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) ||
				errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM) ||
				errors.Is(err, unix.ECONNABORTED) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("control: accept: %w", err)
		}
		delay = 0
		go serveConn(c, handler)
	}
}

// serveConn reads one request from c, answers it, and closes c.
func serveConn(c *net.UnixConn, handler func(Request) Response) {
	defer c.Close()
	resp := func() Response {
		if err := checkPeer(c); err != nil {
			return Response{Error: err.Error()}
		}
		c.SetReadDeadline(time.Now().Add(readTimeout))
		line, err := bufio.NewReaderSize(c, maxRequestBytes).ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			return Response{Error: "request too long"}
		case err != nil && !(errors.Is(err, io.EOF) && len(line) > 0):
			// The client may be gone; if not, it gets an answer it can print.
			return Response{Error: "incomplete request"}
		}
		var req Request
		if err := json.Unmarshal(line, &req); err != nil {
			return Response{Error: "malformed request"}
		}
		if err := req.Validate(); err != nil {
			return Response{Error: err.Error()}
		}
		return handler(req)
	}()
	c.SetWriteDeadline(time.Now().Add(writeTimeout))
	b, err := json.Marshal(resp)
	if err != nil {
		b, _ = json.Marshal(Response{Error: "encoding response: " + err.Error()})
	}
	c.Write(append(b, '\n'))
}

// checkPeer refuses clients that are neither root nor our own user, using
// the credentials the kernel recorded at connect(2) (SO_PEERCRED, unix(7)).
func checkPeer(c *net.UnixConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("peer credentials: %w", err)
	}
	var (
		cred    *unix.Ucred
		credErr error
	)
	if err := rc.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return fmt.Errorf("peer credentials: %w", err)
	}
	if credErr != nil {
		return fmt.Errorf("peer credentials: %w", credErr)
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Geteuid() {
		return errors.New("permission denied")
	}
	return nil
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// File returns a duplicate of the listening socket for a successor master
// to inherit (see FromFile). From then on the socket file belongs to the
// successor: Close no longer removes it.
func (s *Server) File() (*os.File, error) {
	f, err := s.ln.File()
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	s.mu.Lock()
	s.keepFile = true
	s.mu.Unlock()
	return f, nil
}

// Present tells whether the socket file is still the one this server
// listens on (it may have been removed, or replaced by another socket).
func (s *Server) Present() bool {
	var st unix.Stat_t
	return unix.Stat(s.path, &st) == nil && st.Dev == s.dev && st.Ino == s.ino
}

// KeepFile decides whether Close leaves the socket file in place. A master
// started by a binary upgrade keeps it until it serves, so a successor that
// fails never removes the file its predecessor still answers on; an old
// master whose successor failed takes the file back with KeepFile(false).
func (s *Server) KeepFile(keep bool) {
	s.mu.Lock()
	s.keepFile = keep
	s.mu.Unlock()
}

// Close stops Serve and removes the socket file, unless it was handed to a
// successor with File or has since been replaced by another socket.
// Connections already accepted are still answered.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	keep := s.keepFile
	s.mu.Unlock()

	err := s.ln.Close()
	if !keep {
		var st unix.Stat_t
		if unix.Stat(s.path, &st) == nil && st.Dev == s.dev && st.Ino == s.ino {
			if rerr := os.Remove(s.path); rerr != nil && err == nil {
				err = rerr
			}
		}
	}
	if err != nil {
		return fmt.Errorf("control: close: %w", err)
	}
	return nil
}
