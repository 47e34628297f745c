package testserver

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// tcpClose is TCP_CLOSE in the kernel's tcp_states.h: the state a reset
// leaves a socket in.
const tcpClose = 7

// Acked waits until the peer has acknowledged everything written on c, so
// that those bytes are in its socket (a stray response an upstream sends
// before the proxy's next request, say), or has reset the connection: a
// peer that closes its socket with the bytes unread answers with a reset,
// which can come before its delayed acknowledgement and then leaves them
// unacknowledged for good, though they reach nothing it does later. The
// kernel has no event for it: the send queue (SIOCOUTQ) and the state are
// looked at every millisecond until the queue is empty or the connection
// is closed (true), or it fails, quit closes or timeout passes (false).
func Acked(c *net.TCPConn, quit <-chan struct{}, timeout time.Duration) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		q, state := -1, uint8(0)
		if err := rc.Control(func(fd uintptr) {
			q, _ = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
			if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
				state = info.State
			}
		}); err != nil || q < 0 {
			return false
		}
		if q == 0 || state == tcpClose {
			return true
		}
		select {
		case <-quit:
			return false
		case <-time.After(time.Millisecond):
		}
	}
	return false
}
