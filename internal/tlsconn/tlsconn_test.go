package tlsconn

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/forkd/forkd/internal/testcert"
)

// serve accepts on a Listener and echoes one line per connection.
func serve(t *testing.T) (addr string, ca *testcert.CA) {
	t.Helper()
	ca, err := testcert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue([]string{"a.test"}, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := NewListener(inner, &tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: []string{"http/1.1"}})
	t.Cleanup(func() { ln.Close() })
	if !IsTLS(ln.Addr()) {
		t.Error("the listener's address is not marked TLS")
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if !IsTLS(c.LocalAddr()) {
					io.WriteString(c, "not marked\n")
					return
				}
				line, err := bufio.NewReader(c).ReadString('\n')
				if err == nil {
					io.WriteString(c, line)
				}
			}()
		}
	}()
	return inner.Addr().String(), ca
}

func TestEcho(t *testing.T) {
	addr, ca := serve(t)
	pool := ca.Pool()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "a.test", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "hello\n")
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != "hello\n" || c.ConnectionState().NegotiatedProtocol != "http/1.1" {
		t.Errorf("echo: %q %v %q", got, err, c.ConnectionState().NegotiatedProtocol)
	}
}

func TestPlainHTTP(t *testing.T) {
	addr, _ := serve(t)
	for _, req := range []string{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, req)
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil || !strings.HasPrefix(string(b), "HTTP/1.1 400 Bad Request\r\n") || !strings.HasSuffix(string(b), "\r\n\r\n"+badRequest[strings.Index(badRequest, "\r\n\r\n")+4:]) {
			t.Errorf("%q: %q %v", req[:4], b, err)
		}
	}
	// Garbage that is not HTTP: closed without an answer.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "\x00\x01\x02\x03\x04\x05\x06\x07")
	if b, _ := io.ReadAll(c); strings.Contains(string(b), "HTTP/1.1") {
		t.Errorf("garbage answered with %q", b)
	}
}
