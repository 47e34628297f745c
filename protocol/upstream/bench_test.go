package upstream

import (
	"bufio"
	"io"
	"net"
	"testing"
)

// BenchmarkPoolGetPut is the pool's own cost per exchange: Get an idle
// connection and put it back, with no request in between, as a busy pool
// does (the connection's idle time is ~0).
func BenchmarkPoolGetPut(b *testing.B) {
	addr := benchUpstream(b)
	p := newPool(addr)
	defer p.Close()
	c, err := p.Get()
	if err != nil {
		b.Fatal(err)
	}
	p.put(c)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		c, err := p.Get()
		if err != nil || !c.Reused() {
			b.Fatalf("reused %v, %v", c != nil && c.Reused(), err)
		}
		p.put(c)
	}
}

// BenchmarkPoolExchange is one whole exchange on a pooled connection (Get,
// Do, the body read, Release) with a loopback upstream, for scale.
func BenchmarkPoolExchange(b *testing.B) {
	addr := benchUpstream(b)
	p := newPool(addr)
	defer p.Close()
	buf := make([]byte, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		c, err := p.Get()
		if err != nil {
			b.Fatal(err)
		}
		head := append(c.HeadBuffer(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...)
		if _, err := c.Do(head, nil, nil, 0, false); err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := c.Read(buf); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
		c.Release()
	}
}

// benchUpstream answers each request head with a 2-byte body.
func benchUpstream(b *testing.B) string {
	return newServer(b, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, _, err := readRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	}).addr
}
