package testserver

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestAckedReset: bytes the peer never acknowledged because it closed its
// socket with them unread (a reset, sent before its delayed ACK) are as
// good as acknowledged: they can reach nothing the peer does later.
func TestAckedReset(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	p.SetDeadline(time.Now().Add(10 * time.Second))
	rc, _ := p.(*net.TCPConn).SyscallConn()
	// Each exchange turns the peer's quick acknowledgements off again
	// (they come back on their own).
	quiet := func() {
		rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 0) })
	}
	buf := make([]byte, 64)
	for range 20 { // leave quick-ack mode: ping-pong
		quiet()
		c.Write([]byte("ping"))
		p.Read(buf)
		p.Write([]byte("pong"))
		c.Read(buf)
	}
	quiet()
	if _, err := c.Write([]byte("stray")); err != nil {
		t.Fatal(err)
	}
	// The peer closes once the bytes are there, unread.
	rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, _ := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return n > 0
	})
	p.Close()
	start := time.Now()
	if !Acked(c.(*net.TCPConn), nil, 5*time.Second) {
		t.Fatalf("Acked false after %v", time.Since(start))
	}
}
