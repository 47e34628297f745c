// Package epoll is the epoll plumbing that the protocol package's event
// loops and client-gone watcher and the upstream pool's watch on idle
// connections share: an epoll instance that a goroutine waits on in the
// runtime's poller (rc.Read), not in the kernel, so that a watcher with
// nothing to do holds no thread; registrations that carry a 64-bit token;
// and a non-blocking peek that tells a byte from the end of a connection
// without consuming anything.
//
// # Who owns what
//
// A Set's epoll descriptor belongs to its file. Ctl uses the number only
// under the Set's read lock while the Set is open, and Close closes the
// file under the write lock, so no Ctl reaches a number that names another
// descriptor by then; Wait uses it inside the file's RawConn.Read, which
// keeps it open. The descriptors registered belong to the callers: each
// holds what keeps its descriptor open (a RawConn.Control, or a duplicate
// it owns) while it calls Ctl or Peek with the number.
package epoll

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrClosed is Ctl or Wait on a Set that Close has closed.
var ErrClosed = errors.New("epoll: set closed")

// New makes an epoll instance that a goroutine waits on in the runtime's
// poller (rc.Read), not in the kernel: its descriptor, the file that owns
// it (closing the file ends a wait), and the file's RawConn. It is
// close-on-exec.
func New(name string) (int, *os.File, syscall.RawConn, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return -1, nil, nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, nil, nil, fmt.Errorf("epoll nonblocking: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return -1, nil, nil, fmt.Errorf("epoll: %w", err)
	}
	return fd, f, rc, nil
}

// Event is the registration of events with token as its data.
func Event(events uint32, token uint64) unix.EpollEvent {
	return unix.EpollEvent{Events: events, Fd: int32(uint32(token)), Pad: int32(uint32(token >> 32))}
}

// Token returns the data of an event that Event registered.
func Token(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// Set is an epoll instance whose events one goroutine waits for (Wait)
// while others change what it watches (Ctl).
type Set struct {
	fd   int
	file *os.File
	rc   syscall.RawConn

	mu     sync.RWMutex // read for Ctl, write for Close
	closed bool

	// Wait's: one goroutine waits.
	events [32]unix.EpollEvent
	n      int
	waitFn func(uintptr) bool
}

// NewSet returns an empty Set.
func NewSet(name string) (*Set, error) {
	fd, f, rc, err := New(name)
	if err != nil {
		return nil, err
	}
	s := &Set{fd: fd, file: f, rc: rc}
	s.waitFn = s.poll
	return s, nil
}

// Ctl is epoll_ctl on the Set: op (unix.EPOLL_CTL_ADD, _MOD or _DEL) on
// fd, for events, with token as the events' data. The caller keeps fd
// open meanwhile.
func (s *Set) Ctl(op, fd int, events uint32, token uint64) error {
	ev := Event(events, token)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	for {
		err := unix.EpollCtl(s.fd, op, fd, &ev)
		if err == unix.EINTR {
			continue
		}
		return err
	}
}

// Wait waits for events and returns them; they are valid until the next
// Wait. Only one goroutine waits. After Close it returns an error (ends a
// wait too).
func (s *Set) Wait() ([]unix.EpollEvent, error) {
	if err := s.rc.Read(s.waitFn); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return s.events[:s.n], nil
}

// poll is epoll_wait without a timeout; as a RawConn.Read callback it
// reports whether events came (else the runtime's poller waits).
func (s *Set) poll(fd uintptr) bool {
	for {
		n, err := unix.EpollWait(int(fd), s.events[:], 0)
		if err == unix.EINTR {
			continue
		}
		s.n = max(n, 0)
		return s.n > 0
	}
}

// Close closes the Set: a Wait returns, Ctl fails from now on. The
// descriptors it watched are not touched.
func (s *Set) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.file.Close()
}

// Peeked is what Peek found on a connection.
type Peeked uint8

const (
	// Nothing is no byte to read and the connection open.
	Nothing Peeked = iota
	// Data is at least one byte waiting.
	Data
	// Gone is the connection's end: EOF (the peer's FIN), a reset or
	// another error.
	Gone
)

// Peek looks at the stream socket fd without waiting and without
// consuming a byte (recv with MSG_PEEK|MSG_DONTWAIT; recvfrom without an
// address, which unix.Recvfrom would ask for and decode).
func Peek(fd int) Peeked {
	var b [1]byte
	for {
		// Raw: it never blocks (MSG_DONTWAIT), and an event loop makes
		// it without the scheduler's system call bookkeeping, which lets
		// sysmon hand the loop's P away mid-call.
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN:
			return Nothing
		case errno == 0 && n > 0:
			return Data
		}
		return Gone // EOF, or the connection broke
	}
}
