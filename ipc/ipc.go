// Package ipc carries messages between the master and its workers over a
// SOCK_SEQPACKET socketpair, and hands listeners, the configuration and the
// ipc socket to a re-executed worker through ExtraFiles and FORKD_*
// environment variables.
//
// A seqpacket socket keeps message boundaries, so every message is one JSON
// document in one packet; no framing is needed. EOF on the worker's end means
// the master is gone, and the worker exits. Messages are small (a heartbeat
// is about 150 bytes): the configuration, which may be megabytes, does not
// travel over the socket but in a sealed memfd the worker inherits (see
// ConfigFile), so no send can fail or block for its size.
package ipc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/forkd/forkd/internal/metrics"
)

// Message types.
const (
	// TypeReady (worker -> master) says the worker serves every listener.
	TypeReady = "ready"
	// TypeBootError (worker -> master) says the worker cannot boot, and why.
	TypeBootError = "boot_error"
	// TypeHeartbeat (worker -> master) is sent every second with counters.
	TypeHeartbeat = "heartbeat"
	// TypeRetire (worker -> master) asks for a replacement: max_requests
	// reached. It carries a Heartbeat with the count at that moment.
	TypeRetire = "retire"
	// TypeDrain (master -> worker) says the instance is draining
	// (drain_delay after TERM): health routes answer 503 from now on,
	// everything else is served as before. Workers started while the
	// instance drains learn it from EnvDraining instead.
	TypeDrain = "drain"
)

// Receive buffer sizes. A Conn starts with a buffer that fits every message
// forkd sends and grows it, to the size of the next packet, only when a
// bigger one arrives; maxPacket bounds that growth.
const (
	initialBuffer = 1 << 10
	maxPacket     = 1 << 20
)

// ErrTooBig is returned by Recv for a packet over maxPacket (it is dropped).
var ErrTooBig = errors.New("ipc message too big")

// Heartbeat is a worker's periodic report.
type Heartbeat struct {
	Requests  uint64          `json:"requests"`
	OpenConns int64           `json:"open_conns"`
	RSS       uint64          `json:"rss"`
	Status    metrics.Classes `json:"status"` // responses by status class
	// H2Status and H2OpenConns are the part of Status and OpenConns
	// that is HTTP/2 (streams, connections).
	H2Status    metrics.Classes `json:"h2_status"`
	H2OpenConns int64           `json:"h2_open_conns"`
	// UpstreamsDown are the proxy upstreams this worker holds down
	// (max_fails within fail_timeout), at most MaxUpstreamsDown of them.
	UpstreamsDown []string `json:"upstreams_down,omitempty"`
}

// MaxUpstreamsDown bounds Heartbeat.UpstreamsDown, so that a heartbeat
// stays far below the message size limit whatever the configuration.
const MaxUpstreamsDown = 64

// Message is one packet.
type Message struct {
	Type      string     `json:"type"`
	Heartbeat *Heartbeat `json:"heartbeat,omitempty"`
	Error     string     `json:"error,omitempty"`
	TLS       *TLS       `json:"tls,omitempty"` // TypeTLS
}

// Conn is one end of the socketpair.
type Conn struct {
	c   *net.UnixConn
	rc  syscall.RawConn
	buf []byte
	max int // bound on one packet: maxPacket, smaller in tests

	sndbuf int // the send buffer fitSendBuffer last set; 0 = the default
}

// Pair returns a connected SOCK_SEQPACKET pair: the master's end as a Conn and
// the worker's end as a file for ExtraFiles. Both are close-on-exec; exec.Cmd
// clears the flag on the ExtraFiles copy it passes.
func Pair() (*Conn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("ipc socketpair: %w", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "ipc-master")
	theirs := os.NewFile(uintptr(fds[1]), "ipc-worker")
	c, err := FromFile(mine)
	mine.Close()
	if err != nil {
		theirs.Close()
		return nil, nil, err
	}
	return c, theirs, nil
}

// FromFile wraps an inherited seqpacket socket. The file may be closed after.
func FromFile(f *os.File) (*Conn, error) {
	fc, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("ipc socket: %w", err)
	}
	uc, ok := fc.(*net.UnixConn)
	if !ok {
		fc.Close()
		return nil, errors.New("ipc socket: not a unix socket")
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("ipc socket: %w", err)
	}
	return &Conn{c: uc, rc: rc, max: maxPacket}, nil
}

// Send writes one message.
func (c *Conn) Send(m *Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("ipc encode %s: %w", m.Type, err)
	}
	if len(b) > maxPacket {
		return fmt.Errorf("ipc %s message is %d bytes, over the %d limit: %w", m.Type, len(b), maxPacket, ErrTooBig)
	}
	c.fitSendBuffer(len(b))
	if _, err := c.c.Write(b); err != nil {
		return fmt.Errorf("ipc send %s: %w", m.Type, err)
	}
	return nil
}

// Recv reads one message; io.EOF when the peer closed its end. It peeks at
// the next packet's length first (MSG_PEEK|MSG_TRUNC returns a seqpacket's
// real length), so the buffer only grows when a message needs it.
func (c *Conn) Recv() (*Message, error) {
	if c.buf == nil {
		c.buf = make([]byte, initialBuffer)
	}
	var n int
	var rerr error
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			n, _, rerr = unix.Recvfrom(int(fd), c.buf[:1], unix.MSG_PEEK|unix.MSG_TRUNC)
			if rerr == unix.EINTR {
				continue
			}
			if rerr == unix.EAGAIN {
				return false
			}
			if rerr != nil || n == 0 {
				return true
			}
			if n > c.max {
				// Drop it; the next Recv reads the following packet.
				_, _, rerr = unix.Recvfrom(int(fd), c.buf[:1], 0)
				rerr = fmt.Errorf("ipc: %d-byte packet: %w", n, ErrTooBig)
				return true
			}
			if n > len(c.buf) {
				c.buf = make([]byte, n)
			}
			n, _, rerr = unix.Recvfrom(int(fd), c.buf, 0)
			if rerr == unix.EINTR {
				continue
			}
			return true
		}
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return nil, err
	}
	if n == 0 {
		// A zero-length read on seqpacket is the peer's orderly shutdown.
		return nil, io.EOF
	}
	m := new(Message)
	if err := json.Unmarshal(c.buf[:n], m); err != nil {
		return nil, fmt.Errorf("ipc decode: %w", err)
	}
	return m, nil
}

// Pending tells whether a message waits unread in the socket's receive
// queue (FIONREAD). The master asks before it judges a silent worker.
func (c *Conn) Pending() bool {
	var n int
	var ierr error
	err := c.rc.Control(func(fd uintptr) {
		n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	})
	return err == nil && ierr == nil && n > 0
}

// BufferSize is the receive buffer's current size, for tests of the
// master's memory.
func (c *Conn) BufferSize() int { return len(c.buf) }

// Close closes this end.
func (c *Conn) Close() error { return c.c.Close() }
