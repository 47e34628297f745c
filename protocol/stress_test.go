package protocol

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// errHijacked ends a client's connection whose request was hijacked.
var errHijacked = errors.New("hijacked: the connection ended")

// TestNoResponseToAnotherClient is a stress test for descriptor ownership:
// a response must never reach a socket other than its client's, even when
// a descriptor number is freed and reused at once. Many clients send
// requests tagged with ids that the handler echoes; handlers call WillBlock
// (leaving an event loop) and sleep, or hijack the connection and answer
// on it; meanwhile new connections arrive on a second server in the same
// process, and "upstream" sockets are dialled and closed without end, so
// freed numbers are taken again at once. Then the
// first server shuts down with a short deadline, cutting connections whose
// handlers still run. Every client checks that it only ever reads its own
// ids, and the upstream that no byte ever reaches it.
func TestNoResponseToAnotherClient(t *testing.T) { inModes(t, testNoResponseToAnotherClient) }

func testNoResponseToAnotherClient(t *testing.T) {
	const (
		clients  = 24 // keep-alive clients of the server that shuts down
		churners = 4  // clients opening a connection per request, on the other
		dialers  = 4  // goroutines dialling the upstream
		before   = 400
		after    = 200
	)
	h := HandlerFunc(func(w *ResponseWriter, r *Request) {
		id, _ := strconv.Atoi(strings.TrimPrefix(string(r.Path), "/"))
		if id%7 == 0 {
			// Hijacked: the answer goes out on the handler's net.Conn (a
			// duplicate descriptor when taken inside a read callback),
			// and the connection ends.
			nc, brw, err := w.Hijack()
			if err != nil {
				return
			}
			defer nc.Close()
			body := fmt.Sprintf("id=%d", id)
			fmt.Fprintf(brw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
			brw.Flush()
			return
		}
		if id%3 != 0 {
			w.WillBlock()
			time.Sleep(time.Duration(id%5) * 4 * time.Millisecond) // an upstream's answer
		}
		if id%2 == 0 {
			// Streamed: the head goes out before the handler is done.
			w.WriteString("id=")
			w.Flush()
			fmt.Fprintf(w, "%d", id)
			return
		}
		fmt.Fprintf(w, "id=%d", id)
	})
	a, addrA := startServer(t, h, nil)
	_, addrB := startServer(t, h, nil)

	// The upstream accepts and reads; nothing may ever arrive.
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var stray atomic.Int64
	var upConns sync.WaitGroup
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			upConns.Add(1)
			go func() {
				defer upConns.Done()
				defer c.Close()
				n, _ := io.Copy(io.Discard, c)
				stray.Add(n)
			}()
		}
	}()

	var nextID atomic.Int64
	var done atomic.Int64 // requests answered, all clients
	stop := make(chan struct{})
	shutdownAt, finishAt := make(chan struct{}), make(chan struct{})
	var onceA, onceB sync.Once
	var finishTarget atomic.Int64
	finishTarget.Store(1 << 62)
	count := func() {
		n := done.Add(1)
		if n >= before {
			onceA.Do(func() { close(shutdownAt) })
		}
		if n >= finishTarget.Load() {
			onceB.Do(func() { close(finishAt) })
		}
	}
	var wg sync.WaitGroup
	// check sends reqs pipelined ids on c and reads their answers in order.
	check := func(c net.Conn, br *bufio.Reader, ids []int64) error {
		var req strings.Builder
		for _, id := range ids {
			fmt.Fprintf(&req, "GET /%d HTTP/1.1\r\nHost: a\r\n\r\n", id)
		}
		if _, err := io.WriteString(c, req.String()); err != nil {
			return err
		}
		for _, id := range ids {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return err
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			if want := fmt.Sprintf("id=%d", id); string(b) != want {
				t.Errorf("a client waiting for %s read %q", want, b)
				return io.EOF
			}
			count()
			if resp.Close {
				return errHijacked // the rest goes unanswered
			}
		}
		return nil
	}
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := net.Dial("tcp", addrA)
				if err != nil {
					return // the server is gone
				}
				c.SetDeadline(time.Now().Add(20 * time.Second))
				br := bufio.NewReader(c)
				// A few requests a connection: a connection leaves its
				// event loop in the handler of its first request only.
				for range 1 + i%3 {
					select {
					case <-stop:
						c.Close()
						return
					default:
					}
					ids := []int64{nextID.Add(1)}
					if i%2 == 0 {
						ids = append(ids, nextID.Add(1)) // pipelined
					}
					if check(c, br, ids) != nil {
						break
					}
				}
				c.Close()
			}
		}()
	}
	for range churners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.Dial("tcp", addrB)
				if err != nil {
					t.Errorf("dial the server that stays: %v", err)
					return
				}
				c.SetDeadline(time.Now().Add(20 * time.Second))
				if err := check(c, bufio.NewReader(c), []int64{nextID.Add(1)}); err != nil && err != errHijacked {
					t.Errorf("the server that stays: %v", err)
				}
				c.Close()
			}
		}()
	}
	for range dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each keeps a few upstream connections open, so that the
			// numbers it takes stay taken for a while.
			var ring [8]net.Conn
			defer func() {
				for _, c := range ring {
					if c != nil {
						c.Close()
					}
				}
			}()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if c := ring[n%len(ring)]; c != nil {
					c.Close()
				}
				ring[n%len(ring)], _ = net.Dial("tcp", up.Addr().String())
			}
		}()
	}

	select {
	case <-shutdownAt:
	case <-time.After(60 * time.Second):
		t.Fatal("no progress")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	a.Shutdown(ctx) // cuts the connections whose handlers still sleep
	cancel()
	finishTarget.Store(done.Load() + after)
	select {
	case <-finishAt:
	case <-time.After(60 * time.Second):
		t.Fatal("the server that stays made no progress")
	}
	close(stop)
	wg.Wait() // the dialers have closed their upstream connections
	up.Close()
	<-upDone
	upConns.Wait()
	if n := stray.Load(); n != 0 {
		t.Errorf("the upstream received %d bytes meant for clients", n)
	}
}
