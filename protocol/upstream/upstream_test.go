package upstream

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/forkd/forkd/internal/testserver"
	"github.com/forkd/forkd/protocol/internal/epoll"
)

// server runs a loopback TCP server that hands each connection to fn, and
// counts the connections.
type server struct {
	addr string
	ts   *testserver.Server
}

func newServer(t testing.TB, fn func(c net.Conn, br *bufio.Reader)) *server {
	t.Helper()
	ts := testserver.Start(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		fn(c, bufio.NewReader(c))
	})
	return &server{addr: ts.Addr, ts: ts}
}

func (s *server) count() int { return int(s.ts.Conns()) }

// readRequest reads one request head and its Content-Length body.
func readRequest(br *bufio.Reader) (head string, body string, err error) {
	var b strings.Builder
	n := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", "", err
		}
		b.WriteString(line)
		if line == "\r\n" {
			break
		}
		if v, ok := strings.CutPrefix(strings.ToLower(line), "content-length: "); ok {
			for _, c := range strings.TrimSpace(v) {
				n = n*10 + int(c-'0')
			}
		}
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(br, buf); err != nil {
		return "", "", err
	}
	return b.String(), string(buf), nil
}

// newPool returns a pool of addr as the proxy makes one for a route whose
// exchanges run on the loops (Detach).
func newPool(addr string) *Pool {
	return NewPool(Config{Network: "tcp", Address: addr, ConnectTimeout: 5 * time.Second,
		Timeout: 30 * time.Second, Keepalive: 4, IdleTimeout: time.Minute, Detach: true})
}

// exchange sends GET / on a pooled connection and reads the whole body.
func exchange(t *testing.T, p *Pool) (*Response, string, error) {
	t.Helper()
	c, err := p.Get()
	if err != nil {
		return nil, "", err
	}
	head := append(c.HeadBuffer(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...)
	resp, err := c.Do(head, nil, nil, 0, false)
	if err != nil {
		c.Close()
		return nil, "", err
	}
	status := *resp
	b, err := io.ReadAll(c)
	if err != nil {
		c.Close()
		return &status, string(b), err
	}
	c.Release()
	return &status, string(b), nil
}

func TestBodies(t *testing.T) {
	for _, tc := range []struct {
		name, resp, body string
		reused           bool // the connection goes back to the pool
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "hello", true},
		{"empty", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "", true},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nT: v\r\n\r\n", "hello!", true},
		{"no content", "HTTP/1.1 204 No Content\r\n\r\n", "", true},
		{"interim", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Hints\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok", true},
		{"close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", "ok", false},
		{"until close", "HTTP/1.1 200 OK\r\n\r\nuntil the end", "until the end", false},
		{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, func(c net.Conn, br *bufio.Reader) {
				for {
					if _, _, err := readRequest(br); err != nil {
						return
					}
					io.WriteString(c, tc.resp)
					if !tc.reused {
						return
					}
				}
			})
			p := newPool(s.addr)
			defer p.Close()
			for range 3 {
				_, body, err := exchange(t, p)
				if err != nil || body != tc.body {
					t.Fatalf("body %q, %v; want %q", body, err, tc.body)
				}
			}
			want := 3
			if tc.reused {
				want = 1
			}
			if n := s.count(); n != want {
				t.Errorf("%d connections for 3 exchanges, want %d", n, want)
			}
		})
	}
}

// TestHostile: responses that cannot be framed safely fail, and their
// connection is never pooled.
func TestHostile(t *testing.T) {
	for _, tc := range []struct {
		name, resp string
		want       error
	}{
		{"cl and te", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ErrBadResponse},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", ErrBadResponse},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", ErrBadResponse},
		{"obfuscated te", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked \x0b\r\n\r\n", ErrBadResponse},
		{"te list", "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", ErrBadResponse},
		{"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n", ErrBadResponse},
		{"bare lf", "HTTP/1.1 200 OK\nContent-Length: 0\n\n", ErrBadResponse},
		{"not http", "SSH-2.0-OpenSSH\r\n\r\n", ErrBadResponse},
		{"head cut", "HTTP/1.1 200 OK\r\nContent-", ErrBadResponse},
		{"nothing", "", ErrNoResponse},
		{"huge head", "HTTP/1.1 200 OK\r\n" + strings.Repeat("X: "+strings.Repeat("y", 1000)+"\r\n", 80) + "\r\n", ErrBadResponse},
		{"interim flood", strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 20), ErrBadResponse},
		{"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", ErrBadResponse},
		{"chunk without crlf", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n", ErrBadResponse},
		{"short body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", ErrTruncated},
		{"short chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nabc", ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, func(c net.Conn, br *bufio.Reader) {
				if _, _, err := readRequest(br); err != nil {
					return
				}
				io.WriteString(c, tc.resp)
			})
			p := newPool(s.addr)
			defer p.Close()
			_, _, err := exchange(t, p)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if p.Idle() != 0 {
				t.Fatalf("the connection was pooled")
			}
		})
	}
}

// TestStale: a pooled connection the upstream closes between Get and the
// request (Get's check saw it open) fails with ErrNoResponse, the cue to
// send the request again on a new connection.
func TestStale(t *testing.T) {
	u := newLateUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	p := newPool(u.addr)
	defer p.Close()
	if _, body, err := exchange(t, p); err != nil || body != "ok" {
		t.Fatalf("%q %v", body, err)
	}
	c, err := p.Get()
	if err != nil || !c.Reused() {
		t.Fatalf("not the pooled connection: %v", err)
	}
	defer c.Close()
	u.act <- rstClose
	<-u.done
	waitReadable(t, c)
	head := append(c.HeadBuffer(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...)
	if _, err := c.Do(head, nil, nil, 0, false); !errors.Is(err, ErrNoResponse) {
		t.Fatalf("stale connection: %v, want ErrNoResponse", err)
	}
}

// TestRequestBodies: bodies go out with the framing the head announces.
func TestRequestBodies(t *testing.T) {
	got := make(chan string, 3)
	s := newServer(t, func(c net.Conn, br *bufio.Reader) {
		for {
			head, body, err := readRequest(br)
			if err != nil {
				return
			}
			if strings.Contains(head, "chunked") {
				var b strings.Builder
				for {
					line, _ := br.ReadString('\n')
					var n int
					for _, ch := range strings.TrimSpace(line) {
						n = n*16 + strings.IndexRune("0123456789abcdef", ch)
					}
					if n == 0 {
						br.ReadString('\n')
						break
					}
					buf := make([]byte, n+2)
					io.ReadFull(br, buf)
					b.Write(buf[:n])
				}
				body = b.String()
			}
			got <- body
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		}
	})
	p := newPool(s.addr)
	defer p.Close()
	big := strings.Repeat("0123456789", 5000)
	for _, tc := range []struct {
		head   string
		body   []byte
		stream io.Reader
		n      int64
		want   string
	}{
		{"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", []byte("hello"), nil, 0, "hello"},
		{"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 50000\r\n\r\n", nil, strings.NewReader(big), 50000, big},
		{"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", nil, strings.NewReader(big), -1, big},
	} {
		c, err := p.Get()
		if err != nil {
			t.Fatal(err)
		}
		head := append(c.HeadBuffer(), tc.head...)
		if _, err := c.Do(head, tc.body, tc.stream, tc.n, false); err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, c)
		c.Release()
		if b := <-got; b != tc.want {
			t.Errorf("upstream got %d bytes, want %d", len(b), len(tc.want))
		}
	}
	if n := s.count(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestAppendChunk(t *testing.T) {
	buf := make([]byte, 64)
	for _, m := range []int{1, 15, 16, 40} {
		out := appendChunk(buf, m)
		line := string(out[:len(out)-m-2])
		want := strconv.FormatInt(int64(m), 16) + "\r\n"
		if line != want {
			t.Errorf("%d: %q, want %q", m, line, want)
		}
	}
}

// TestIdleCheck: the idle check finds a connection open after an exchange,
// and its end once the upstream closes it.
func TestIdleCheck(t *testing.T) {
	closeIt := make(chan struct{})
	closed := make(chan struct{})
	s := newServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, _, err := readRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		<-closeIt
		c.Close()
		close(closed)
	})
	p := newPool(s.addr)
	defer p.Close()
	if _, _, err := exchange(t, p); err != nil {
		t.Fatal(err)
	}
	c, _ := p.Get()
	if got, err := c.idleCheck(opTake); !c.Reused() || got != epoll.Nothing || err != nil {
		t.Fatalf("reused %v, idle check %v %v: want reused, nothing", c.Reused(), got, err)
	}
	close(closeIt)
	<-closed
	waitReadable(t, c) // the FIN is there
	if got, _ := c.idleCheck(opTake); got != epoll.Gone {
		t.Fatalf("idle check of a closed connection: %v, want gone", got)
	}
	c.Close()
}

// TestIdleTimeout: a pooled connection idle for IdleTimeout is closed in
// the background, and the upstream sees it end.
func TestIdleTimeout(t *testing.T) {
	ended := make(chan error, 1)
	s := newServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, _, err := readRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		_, err := br.ReadByte() // the next request, or the pool's close
		ended <- err
	})
	p := NewPool(Config{Network: "tcp", Address: s.addr, ConnectTimeout: 5 * time.Second,
		Timeout: 30 * time.Second, Keepalive: 4, IdleTimeout: 20 * time.Millisecond})
	defer p.Close()
	if _, _, err := exchange(t, p); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		if err != io.EOF {
			t.Fatalf("upstream read %v, want EOF", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the idle connection was not closed")
	}
	if n := p.Idle(); n != 0 {
		t.Errorf("%d idle connections left, want 0", n)
	}
}

// TestTrailer: the trailer fields of a chunked body are kept, also when
// they arrive in pieces; the next exchange starts without them; a trailer
// section over the head's limits is ErrBadResponse.
func TestTrailer(t *testing.T) {
	s := newServer(t, func(c net.Conn, br *bufio.Reader) {
		for i := 0; ; i++ {
			if _, _, err := readRequest(br); err != nil {
				return
			}
			switch i {
			case 0:
				// In two writes: the second may arrive in a read of its own.
				io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 1")
				io.WriteString(c, "2\r\nX-Other:  two \r\n\r\n")
			case 1:
				io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
			default:
				io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n")
				for range 5 {
					io.WriteString(c, "X-Many: 1\r\n")
				}
				io.WriteString(c, "\r\n")
			}
		}
	})
	p := NewPool(Config{Network: "tcp", Address: s.addr, ConnectTimeout: 5 * time.Second,
		Timeout: 30 * time.Second, Keepalive: 4, MaxHeadFields: 4})
	defer p.Close()
	trailer := func() ([]string, error) {
		c, err := p.Get()
		if err != nil {
			return nil, err
		}
		if _, err := c.Do(append(c.HeadBuffer(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...), nil, nil, 0, false); err != nil {
			c.Close()
			return nil, err
		}
		if _, err := io.ReadAll(c); err != nil {
			c.Close()
			return nil, err
		}
		var got []string
		for _, f := range c.Trailer() {
			got = append(got, string(f.Name)+"="+string(f.Value))
		}
		c.Release()
		return got, nil
	}
	if got, err := trailer(); err != nil || strings.Join(got, ",") != "X-Sum=12,X-Other=two" {
		t.Fatalf("trailer %q, %v", got, err)
	}
	if got, err := trailer(); err != nil || len(got) != 0 {
		t.Fatalf("no trailer: %q, %v", got, err)
	}
	if _, err := trailer(); !errors.Is(err, ErrBadResponse) {
		t.Fatalf("five trailer fields over a limit of four: %v, want ErrBadResponse", err)
	}
}

// TestEarlyAnswer: a response that comes while a streamed body is still
// being sent stops the body (BodyLeft), and the connection is not pooled;
// a stream that fails is ErrRequestBody.
func TestEarlyAnswer(t *testing.T) {
	s := newServer(t, func(c net.Conn, br *bufio.Reader) {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" { // the head: answer without reading the body
				io.WriteString(c, "HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
				io.Copy(io.Discard, br)
				return
			}
		}
	})
	p := newPool(s.addr)
	defer p.Close()
	c, err := p.Get()
	if err != nil {
		t.Fatal(err)
	}
	head := append(c.HeadBuffer(), "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n"...)
	resp, err := c.Do(head, nil, io.LimitReader(zeros{}, 1<<30), 1<<30, false)
	if err != nil || resp.Status != 413 || !c.BodyLeft() {
		t.Fatalf("%v %v, body left %v; want 413 with the body left", resp, err, c.BodyLeft())
	}
	c.Release()
	if n := p.Idle(); n != 0 {
		t.Errorf("%d idle connections after an early answer, want 0", n)
	}

	c, err = p.Get()
	if err != nil {
		t.Fatal(err)
	}
	head = append(c.HeadBuffer(), "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"...)
	_, err = c.Do(head, nil, failing{}, -1, false)
	c.Close()
	if !errors.Is(err, ErrRequestBody) {
		t.Fatalf("a failing stream: %v, want ErrRequestBody", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

type failing struct{}

func (failing) Read(p []byte) (int, error) { return 0, errors.New("client gone") }

// TestSurplus: connections over Keepalive that come back from a burst stay
// pooled for SurplusTimeout, and are reused meanwhile; then they are closed
// (the upstream sees EOF) down to Keepalive. With SurplusTimeout 0 they
// are closed as they come back.
func TestSurplus(t *testing.T) {
	for _, surplus := range []time.Duration{0, 300 * time.Millisecond} {
		t.Run(fmt.Sprint(surplus), func(t *testing.T) {
			ended := make(chan error, 8)
			s := newServer(t, func(c net.Conn, br *bufio.Reader) {
				for {
					if _, _, err := readRequest(br); err != nil {
						ended <- err
						return
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			})
			p := NewPool(Config{Network: "tcp", Address: s.addr, ConnectTimeout: 5 * time.Second,
				Timeout: 30 * time.Second, Keepalive: 1, IdleTimeout: time.Minute, SurplusTimeout: surplus})
			defer p.Close()
			// A burst: three exchanges at once.
			var conns []*Conn
			for range 3 {
				c, err := p.Get()
				if err != nil {
					t.Fatal(err)
				}
				head := append(c.HeadBuffer(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...)
				if _, err := c.Do(head, nil, nil, 0, false); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadAll(c); err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
			}
			for _, c := range conns {
				c.Release()
			}
			if surplus == 0 {
				if n := p.Idle(); n != 1 {
					t.Fatalf("%d idle connections, want keepalive's 1", n)
				}
			} else {
				if n := p.Idle(); n != 3 {
					t.Fatalf("%d idle connections right after the burst, want 3", n)
				}
				// Reused meanwhile: no new connection.
				for range 3 {
					if _, _, err := exchange(t, p); err != nil {
						t.Fatal(err)
					}
				}
				if n := s.count(); n != 3 {
					t.Fatalf("%d connections dialled, want 3", n)
				}
			}
			for range 2 {
				select {
				case err := <-ended:
					if err != io.EOF {
						t.Fatalf("upstream read %v, want EOF", err)
					}
				case <-time.After(30 * time.Second):
					t.Fatal("the surplus connections were not closed")
				}
			}
			if n := p.Idle(); n != 1 {
				t.Errorf("%d idle connections left, want 1", n)
			}
			select {
			case err := <-ended:
				t.Fatalf("the connection within keepalive was closed too: %v", err)
			default:
			}
		})
	}
}
