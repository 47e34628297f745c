// Package ipc carries messages between the master and its workers over a
// SOCK_SEQPACKET socketpair, and hands listeners and the ipc socket to a
// re-executed worker through ExtraFiles and FORKD_* environment variables.
//
// A seqpacket socket keeps message boundaries, so every message is one JSON
// document in one packet; no framing is needed. EOF on the worker's end means
// the master is gone, and the worker exits.
package ipc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/forkd/forkd/config"
)

// Message types.
const (
	// TypeConfig (master -> worker) carries the validated configuration at boot.
	TypeConfig = "config"
	// TypeReady (worker -> master) says the worker serves every listener.
	TypeReady = "ready"
	// TypeBootError (worker -> master) says the worker cannot boot, and why.
	TypeBootError = "boot_error"
	// TypeHeartbeat (worker -> master) is sent every second with counters.
	TypeHeartbeat = "heartbeat"
	// TypeRetire (worker -> master) asks for a replacement: max_requests reached.
	TypeRetire = "retire"
)

// maxPacket bounds one message. The socket's send buffer (net.core.wmem_max,
// about 208 KiB by default) is the practical bound: a larger configuration
// fails to send with EMSGSIZE, which the master reports, rather than arriving
// truncated.
const maxPacket = 4 << 20

// Heartbeat is a worker's periodic report.
type Heartbeat struct {
	Requests  uint64 `json:"requests"`
	OpenConns int64  `json:"open_conns"`
	RSS       uint64 `json:"rss"`
	Status2xx uint64 `json:"s2xx"`
	Status3xx uint64 `json:"s3xx"`
	Status4xx uint64 `json:"s4xx"`
	Status5xx uint64 `json:"s5xx"`
}

// Message is one packet.
type Message struct {
	Type       string         `json:"type"`
	Config     *config.Config `json:"config,omitempty"`
	Slot       int            `json:"slot,omitempty"`
	Generation int            `json:"generation,omitempty"`
	Heartbeat  *Heartbeat     `json:"heartbeat,omitempty"`
	Error      string         `json:"error,omitempty"`
}

// Conn is one end of the socketpair.
type Conn struct {
	c   *net.UnixConn
	buf []byte
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
	return &Conn{c: uc}, nil
}

// Send writes one message.
func (c *Conn) Send(m *Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("ipc encode %s: %w", m.Type, err)
	}
	if len(b) > maxPacket {
		return fmt.Errorf("ipc %s message is %d bytes, over the %d limit", m.Type, len(b), maxPacket)
	}
	if _, err := c.c.Write(b); err != nil {
		return fmt.Errorf("ipc send %s: %w", m.Type, err)
	}
	return nil
}

// Recv reads one message; io.EOF when the peer closed its end.
func (c *Conn) Recv() (*Message, error) {
	if c.buf == nil {
		c.buf = make([]byte, maxPacket)
	}
	n, err := c.c.Read(c.buf)
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

// Close closes this end.
func (c *Conn) Close() error { return c.c.Close() }
