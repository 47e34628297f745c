package test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/forkd/forkd/internal/testserver"
	"github.com/forkd/forkd/protocol"
)

// proxySeen is what the fake backend read from one connection.
type proxySeen struct {
	h       protocol.ProxyHeader
	err     error
	request string // the request line after the header
}

// proxyBackend accepts connections that start with a PROXY header, reads
// it the way forkd's connection code will (incrementally, from what has
// arrived so far), answers the request after it with 200 and reports both.
func proxyBackend(t *testing.T, seen chan<- proxySeen) string {
	t.Helper()
	return testserver.Start(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		var s proxySeen
		buf := make([]byte, 0, 64)
		for {
			var n int
			s.h, n, s.err = protocol.ParseProxyHeader(buf)
			if !errors.Is(s.err, protocol.ErrProxyIncomplete) {
				buf = buf[n:]
				break
			}
			if n > cap(buf) {
				buf = append(make([]byte, 0, n), buf...)
			}
			k, err := c.Read(buf[len(buf):cap(buf)])
			if err != nil {
				s.err = err
				break
			}
			buf = buf[:len(buf)+k]
		}
		if s.err == nil {
			rest := bytes.NewBuffer(buf)
			for !bytes.Contains(rest.Bytes(), []byte("\r\n\r\n")) {
				var b [512]byte
				k, err := c.Read(b[:])
				if err != nil {
					break
				}
				rest.Write(b[:k])
			}
			s.request, _, _ = strings.Cut(rest.String(), "\r\n")
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
		}
		select {
		case seen <- s:
		default: // the test is over, or not listening for more
		}
	}).Addr
}

// TestHAProxyProxyHeaders checks the PROXY header parser against what
// haproxy really sends: send-proxy (v1) and send-proxy-v2, for relayed
// requests (the client's address and the frontend's) and for health
// checks (v2 LOCAL), with TLVs (a CRC32C and a unique ID) and without.
func TestHAProxyProxyHeaders(t *testing.T) {
	seen := make(chan proxySeen, 256)
	v1, v2, v2tlv := proxyBackend(t, seen), proxyBackend(t, seen), proxyBackend(t, seen)
	// v2tlv's headers carry TLVs, a CRC32C among them, which the parser
	// checks.
	h := startHAProxyBackend(t, fmt.Sprintf(`  option httpchk GET /ready
  default-server inter 200ms fall 1 rise 1
  use-server v1 if { path_beg /v1 }
  use-server v2tlv if { path_beg /v2tlv }
  use-server v2 if { path_beg /v2 }
  server v1 %s send-proxy check check-send-proxy
  server v2 %s send-proxy-v2 check check-send-proxy
  server v2tlv %s send-proxy-v2 proxy-v2-options crc32c,unique-id check check-send-proxy
`, v1, v2, v2tlv))
	h.waitServer("v1", "UP", 20*time.Second)
	h.waitServer("v2", "UP", 20*time.Second)
	h.waitServer("v2tlv", "UP", 20*time.Second)
	front := netip.MustParseAddrPort(h.addr)

	for _, path := range []string{"/v1/x", "/v2/x", "/v2tlv/x"} {
		version := 1
		if strings.HasPrefix(path, "/v2") {
			version = 2
		}
		c, err := net.DialTimeout("tcp", h.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		client := netip.MustParseAddrPort(c.LocalAddr().String())
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", path)
		resp, err := io.ReadAll(c)
		c.Close()
		if err != nil || !bytes.HasPrefix(resp, []byte("HTTP/1.1 200")) {
			t.Fatalf("%s through haproxy: %v %q", path, err, resp)
		}
		// Health checks arrive too; find the relayed request.
		deadline := time.After(10 * time.Second)
		for found := false; !found; {
			select {
			case s := <-seen:
				if s.err != nil {
					t.Fatalf("haproxy sent a header the parser refuses: %v", s.err)
				}
				if !strings.HasPrefix(s.request, "GET "+path) {
					continue
				}
				found = true
				if s.h.Version != version || s.h.Local || s.h.Source != client || s.h.Destination != front {
					t.Fatalf("%s: header %+v, want version %d from %v to %v", path, s.h, version, client, front)
				}
			case <-deadline:
				t.Fatalf("the backend did not see %s", path)
			}
		}
	}

	// haproxy's v2 health checks are LOCAL: no client to relay.
	deadline := time.After(10 * time.Second)
	for {
		select {
		case s := <-seen:
			if s.err != nil {
				t.Fatalf("haproxy sent a header the parser refuses: %v", s.err)
			}
			if s.h.Version == 2 && s.h.Local && strings.HasPrefix(s.request, "GET /ready") {
				return
			}
		case <-deadline:
			t.Fatal("no v2 LOCAL health check seen")
		}
	}
}
