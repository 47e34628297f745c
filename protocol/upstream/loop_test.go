package upstream

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// smallBuffer is the socket buffer size (SO_SNDBUF, SO_RCVBUF) of both ends
// of TestExchangeNow's "not all sent", which the kernel doubles: without
// it, the receiver's would grow to tcp_rmem's maximum (32 MiB here).
const smallBuffer = 64 << 10

// chunkedAnswer is the head of a chunked response.
const chunkedAnswer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

// answerWith is a TestExchangeNow serve that answers with a.
func answerWith(a string) func(net.Conn, *bufio.Reader, chan struct{}) bool {
	return func(c net.Conn, _ *bufio.Reader, _ chan struct{}) bool {
		_, err := io.WriteString(c, a)
		return err == nil
	}
}

// TestExchangeNow drives the nonblocking exchange an event loop makes
// (SendNow, ReadHeadNow, BodyNow, and Finish where it hands over) on a
// connection a loop watches, with the loop's events routed to the
// exchange (OnReady): a response read whole without waiting, one that
// comes in parts, chunked ones (whole, in parts, with a trailer section),
// ones left to a goroutine (chunked framing or a trailer Read refuses, a
// body that runs to the close), a request the socket does not take at
// once, a reused connection closed before any answer (ErrNoResponse, as Do
// says, for the proxy to retry).
func TestExchangeNow(t *testing.T) {
	const answer = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
	cases := []struct {
		name string
		// serve answers the second request (the first warms the
		// connection up); go on tells it to go on where it pauses.
		serve func(c net.Conn, br *bufio.Reader, goOn chan struct{}) bool
		head  string
		// parts: the exchange must see ErrWouldBlock after the head.
		parts bool
		// blocked: SendNow must report the request not all sent.
		blocked bool
		// goroutine: BodyNow leaves the body to Read.
		goroutine bool
		wantErr   error
		// bodyErr: Read refuses the body; closed: the connection is not
		// pooled again; trailer: the trailer field X-T's value.
		bodyErr, closed bool
		trailer         string
		body            string // if not "hello"
		// pad: the head's X-Pad field has this many bytes, which must
		// stay intact however the body is read.
		pad int
	}{
		{name: "whole", serve: func(c net.Conn, br *bufio.Reader, _ chan struct{}) bool {
			_, err := io.WriteString(c, answer)
			return err == nil
		}},
		{name: "in parts", parts: true, serve: func(c net.Conn, br *bufio.Reader, goOn chan struct{}) bool {
			io.WriteString(c, answer[:len(answer)-3])
			<-goOn
			_, err := io.WriteString(c, answer[len(answer)-3:])
			return err == nil
		}},
		{name: "chunked", serve: answerWith(chunkedAnswer + "5\r\nhello\r\n0\r\n\r\n")},
		{name: "chunked, two chunks and a trailer", trailer: "t", serve: answerWith(chunkedAnswer + "3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\nX-T: t\r\n\r\n")},
		{name: "chunked in parts", parts: true, serve: func(c net.Conn, br *bufio.Reader, goOn chan struct{}) bool {
			io.WriteString(c, chunkedAnswer+"5\r\nhel")
			<-goOn
			_, err := io.WriteString(c, "lo\r\n0\r\n\r\n")
			return err == nil
		}},
		{name: "chunked, trailer in parts", parts: true, serve: func(c net.Conn, br *bufio.Reader, goOn chan struct{}) bool {
			io.WriteString(c, chunkedAnswer+"5\r\nhello\r\n0\r\nX-T: t\r\n")
			<-goOn
			_, err := io.WriteString(c, "\r\n")
			return err == nil
		}, trailer: "t"},
		{name: "chunked, bad framing", goroutine: true, bodyErr: true, closed: true,
			serve: answerWith(chunkedAnswer + "5\r\nhelloXX0\r\n\r\n")},
		{name: "chunked, bare LF in the trailer", goroutine: true, bodyErr: true, closed: true,
			serve: answerWith(chunkedAnswer + "5\r\nhello\r\n0\r\nX-T: t\n\r\n")},
		{name: "chunked, bad trailer field", goroutine: true, bodyErr: true, closed: true,
			serve: answerWith(chunkedAnswer + "5\r\nhello\r\n0\r\nX T: t\r\n\r\n")},
		{name: "chunked, larger than the buffer", goroutine: true, body: strings.Repeat("z", 100<<10),
			serve: answerWith(chunkedAnswer + fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", 100<<10, strings.Repeat("z", 100<<10)))},
		{name: "head and body past the buffer", goroutine: true, pad: 10 << 10, body: strings.Repeat("b", 8<<10),
			serve: answerWith("HTTP/1.1 200 OK\r\nX-Pad: " + strings.Repeat("p", 10<<10) + "\r\nContent-Length: 8192\r\n\r\n" + strings.Repeat("b", 8<<10))},
		{name: "chunked, head and body past the buffer", goroutine: true, pad: 10 << 10, body: strings.Repeat("b", 8<<10),
			serve: answerWith("HTTP/1.1 200 OK\r\nX-Pad: " + strings.Repeat("p", 10<<10) + "\r\nTransfer-Encoding: chunked\r\n\r\n2000\r\n" + strings.Repeat("b", 8<<10) + "\r\n0\r\n\r\n")},
		{name: "to the close", goroutine: true, closed: true, serve: func(c net.Conn, br *bufio.Reader, _ chan struct{}) bool {
			io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\nhello")
			return false
		}},
		// Both ends' socket buffers are made small (smallBuffers), so that
		// 1 MiB is far more than they hold.
		{name: "not all sent", blocked: true,
			head: "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 1<<20) + "\r\n\r\n"},
		{name: "closed before an answer", wantErr: ErrNoResponse, serve: func(c net.Conn, br *bufio.Reader, _ chan struct{}) bool {
			return false
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			goOn := make(chan struct{})
			n := 0
			srv := newServer(t, func(c net.Conn, br *bufio.Reader) {
				if tc.blocked {
					c.(*net.TCPConn).SetReadBuffer(smallBuffer)
				}
				for {
					if n == 1 && tc.blocked {
						<-goOn // the request fills the socket buffers meanwhile
					}
					if _, _, err := readRequest(br); err != nil {
						return
					}
					if n++; n == 1 || tc.blocked {
						io.WriteString(c, answer)
						continue
					}
					if !tc.serve(c, br, goOn) {
						return
					}
				}
			})
			// goOn closes at the latest when the test ends, before the
			// server's cleanup waits for its goroutine.
			var once sync.Once
			goOnNow := func() { once.Do(func() { close(goOn) }) }
			t.Cleanup(goOnNow)
			p := newPool(srv.addr)
			defer p.Close()
			w := newTestWatcher(t)
			if _, body, err := loopExchange(t, p, w); err != nil || body != "hello" {
				t.Fatalf("warming up: %q %v", body, err)
			}
			c := p.GetIdle(w)
			if c == nil || c.Watcher() != Watcher(w) {
				t.Fatal("no idle connection watched by the loop")
			}
			events := make(chan bool, 64)
			c.OnReady(func(gone bool) {
				select {
				case events <- gone:
				default:
				}
			})
			if tc.blocked {
				c.withFD(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, smallBuffer) })
			}
			head := tc.head
			if head == "" {
				head = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
			}
			if sent := c.SendNow(append(c.HeadBuffer(), head...), false); sent == tc.blocked {
				t.Fatalf("SendNow sent all: %v", sent)
			}
			if tc.blocked {
				// A goroutine goes on with it (as the proxy's does).
				c.OnReady(nil)
				goOnNow()
				resp, err := c.Finish(false)
				if err != nil || resp.Status != 200 {
					t.Fatalf("Finish: %v", err)
				}
				if b, err := io.ReadAll(c); err != nil || string(b) != "hello" {
					t.Fatalf("body %q %v", b, err)
				}
				c.Release()
				return
			}
			wait := func() {
				t.Helper()
				select {
				case gone := <-events:
					if gone {
						t.Fatal("the loop ended")
					}
				case <-time.After(10 * time.Second):
					t.Fatal("no event")
				}
			}
			var resp *Response
			for resp == nil {
				wait()
				r, err := c.ReadHeadNow()
				switch {
				case err == ErrWouldBlock:
				case tc.wantErr != nil:
					if !errors.Is(err, tc.wantErr) {
						t.Fatalf("ReadHeadNow: %v, want %v", err, tc.wantErr)
					}
					c.OnReady(nil)
					c.Close()
					return
				case err != nil:
					t.Fatalf("ReadHeadNow: %v", err)
				default:
					resp = r
				}
			}
			if resp.Status != 200 {
				t.Fatalf("status %d", resp.Status)
			}
			complete, err := c.BodyNow()
			if tc.parts {
				if err != ErrWouldBlock {
					t.Fatalf("BodyNow on a part: %v %v", complete, err)
				}
				goOnNow()
				for !complete {
					wait()
					if complete, err = c.BodyNow(); err != nil && err != ErrWouldBlock {
						t.Fatalf("BodyNow: %v", err)
					}
				}
			}
			c.OnReady(nil)
			if tc.pad > 0 {
				// The head's fields are bytes of the connection's buffer:
				// reading the body must not have moved it over them.
				var pad []byte
				for _, f := range resp.Fields {
					if string(f.Name) == "X-Pad" {
						pad = f.Value
					}
				}
				if string(pad) != strings.Repeat("p", tc.pad) {
					t.Fatalf("X-Pad after BodyNow: %d bytes, intact %v", len(pad), string(pad) == strings.Repeat("p", tc.pad))
				}
			}
			switch {
			case tc.goroutine:
				if complete || err == nil || err == ErrWouldBlock {
					t.Fatalf("BodyNow on a body for a goroutine: %v %v", complete, err)
				}
				if _, err := c.Finish(true); err != nil {
					t.Fatal(err)
				}
			case !complete:
				t.Fatalf("BodyNow: %v %v", complete, err)
			}
			// Read decodes a body BodyNow found complete without a read
			// of the socket, which would fail (ErrWouldBlock) on a
			// connection the loop still reads.
			b, err := io.ReadAll(c)
			switch {
			case tc.bodyErr:
				if err == nil {
					t.Fatalf("body %q read, want an error", b)
				}
				c.Close()
			case err != nil || string(b) != cmp.Or(tc.body, "hello"):
				t.Fatalf("body %.40q (%d bytes) %v", b, len(b), err)
			default:
				var got string
				for _, f := range c.Trailer() {
					if string(f.Name) == "X-T" {
						got = string(f.Value)
					}
				}
				if got != tc.trailer {
					t.Fatalf("trailer X-T %q, want %q", got, tc.trailer)
				}
				c.Release()
			}
			if want := map[bool]int{false: 1, true: 0}[tc.closed]; p.Idle() != want {
				t.Errorf("%d idle connections after the exchange, want %d", p.Idle(), want)
			}
		})
	}
}
