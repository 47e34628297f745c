package testserver

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// Acked waits until the peer has acknowledged everything written on c, so
// that those bytes are in its socket (a stray response an upstream sends
// before the proxy's next request, say). The kernel has no event for it:
// the send queue (SIOCOUTQ) is looked at every millisecond until it is
// empty (true), or the connection fails, quit closes or timeout passes
// (false).
func Acked(c *net.TCPConn, quit <-chan struct{}, timeout time.Duration) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		q := -1
		if err := rc.Control(func(fd uintptr) { q, _ = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil || q < 0 {
			return false
		}
		if q == 0 {
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
