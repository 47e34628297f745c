package test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// usage is a process's CPU time and resident set.
type usage struct {
	cpu time.Duration
	rss int64
}

func procUsage(t *testing.T, pid int) usage {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	m, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		t.Fatal(err)
	}
	pages, _ := strconv.ParseInt(strings.Fields(string(m))[1], 10, 64)
	return usage{cpu: time.Duration(ut+st) * 10 * time.Millisecond, rss: pages * int64(os.Getpagesize())}
}

// attackConn is a raw HTTP/2 connection for crafting frames.
type attackConn struct {
	net.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer
	// Set by drain: the connection ended (EOF, reset) or sent GOAWAY.
	closed, goaway atomic.Bool
	resets         atomic.Int64
}

func dialAttack(t *testing.T, addr string, settings ...http2.Setting) *attackConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &attackConn{Conn: nc}
	c.fr = http2.NewFramer(nc, nc)
	c.fr.SetMaxReadFrameSize(1 << 24)
	c.enc = hpack.NewEncoder(&c.buf)
	if _, err := io.WriteString(nc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	return c
}

// drain reads the server's frames in the background until the
// connection ends. (It writes nothing: the Framer is the attack's. An
// attacker that never acknowledges the server's SETTINGS is cut after
// x/net's 10 s; the attacks here are shorter.)
func (c *attackConn) drain() {
	go func() {
		defer c.closed.Store(true)
		for {
			f, err := c.fr.ReadFrame()
			if err != nil {
				return
			}
			switch f.(type) {
			case *http2.GoAwayFrame:
				c.goaway.Store(true)
			case *http2.RSTStreamFrame:
				c.resets.Add(1)
			}
		}
	}()
}

// block encodes header fields with the connection's encoder.
func (c *attackConn) block(fields ...string) []byte {
	c.buf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		c.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(c.buf.Bytes())
}

func (c *attackConn) get(path string) []byte {
	return c.block(":method", "GET", ":scheme", "http", ":authority", "a.test", ":path", path)
}

// underAttack runs attack against a worker while a bystander keeps
// requesting over HTTP/2 and HTTP/1.1, and checks that every bystander
// request is answered promptly and that the worker's memory and CPU stay
// bounded; the attack's connection must be dealt with (closed, or its
// streams reset) as check says.
func underAttack(t *testing.T, env *h2Env, attack func(t *testing.T) (check func() error)) {
	t.Helper()
	pids := env.s.workers()
	if len(pids) != 1 {
		t.Fatalf("workers: %v", pids)
	}
	pid := pids[0]
	before := procUsage(t, pid)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var served atomic.Int64
	var failures sync.Map
	client := h2cClient()
	client.Timeout = 5 * time.Second
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := client.Get("http://" + env.s.addr + "/")
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if err == nil {
				var code int
				code, _, err = get(env.s.addr, "/")
				if err == nil && code != 200 {
					err = fmt.Errorf("HTTP/1.1 status %d", code)
				}
			}
			if err != nil {
				failures.Store(err.Error(), true)
				return
			}
			served.Add(1)
		}
	})
	start := time.Now()
	check := attack(t)
	wall := time.Since(start)
	after := procUsage(t, pid)
	close(stop)
	wg.Wait()
	failures.Range(func(k, _ any) bool {
		t.Errorf("a bystander's request failed during the attack: %v", k)
		return true
	})
	if served.Load() == 0 {
		t.Error("no bystander request was served during the attack")
	}
	if err := check(); err != nil {
		t.Error(err)
	}
	grew := after.rss - before.rss
	t.Logf("attack: %v wall, worker CPU %v, RSS %d -> %d MiB; %d bystander requests served",
		wall.Round(time.Millisecond), after.cpu-before.cpu, before.rss>>20, after.rss>>20, served.Load())
	if grew > 256<<20 {
		t.Errorf("the worker's RSS grew by %d MiB", grew>>20)
	}
	// Once the attack is over the worker goes back to rest: a second in
	// which it uses under half a second of CPU comes, within a deadline
	// (under -race on a busy machine it may still be working off the
	// attack's queued frames for a moment).
	deadline := time.Now().Add(30 * time.Second)
	for {
		idle := procUsage(t, pid)
		<-time.After(time.Second)
		used := procUsage(t, pid).cpu - idle.cpu
		if used <= 500*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the worker kept busy after the attack: %v CPU in the last second, 30s on", used)
			break
		}
	}
}

// TestH2Attacks sends each known HTTP/2 attack to a real worker.
func TestH2Attacks(t *testing.T) {
	env := startH2(t, `limits {
  write_timeout = "2s"
}
`)
	addr := env.s.addr

	t.Run("rapid reset", func(t *testing.T) { // CVE-2023-44487
		underAttack(t, env, func(t *testing.T) func() error {
			c := dialAttack(t, addr)
			defer c.Close()
			c.drain()
			sent := 0
			defer func() { t.Logf("rapid reset: %d streams opened and reset", sent) }()
			for i := range 20000 {
				id := uint32(2*i + 1)
				if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.get("/up/sse"), EndStream: true, EndHeaders: true}); err != nil {
					break // closed by the server: fine
				}
				if err := c.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
					break
				}
				sent++
			}
			return func() error { return nil }
		})
	})

	t.Run("CONTINUATION flood", func(t *testing.T) { // CVE-2024-27316
		underAttack(t, env, func(t *testing.T) func() error {
			c := dialAttack(t, addr)
			defer c.Close()
			c.drain()
			if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.get("/")}); err != nil {
				t.Fatal(err)
			}
			junk := c.block("x-junk", strings.Repeat("a", 8000))
			sent := 0
			for ; sent < 64<<20; sent += len(junk) {
				if err := c.fr.WriteContinuation(1, false, junk); err != nil {
					break
				}
			}
			return func() error {
				if sent >= 64<<20 {
					return fmt.Errorf("the server took 64 MiB of CONTINUATION frames without closing")
				}
				return nil
			}
		})
	})

	t.Run("HPACK bomb", func(t *testing.T) {
		underAttack(t, env, func(t *testing.T) func() error {
			c := dialAttack(t, addr)
			defer c.Close()
			c.drain()
			// One 4 KiB entry in the dynamic table, then a block that
			// names it thousands of times: 1 byte each on the wire.
			c.enc.SetMaxDynamicTableSize(4096)
			first := c.block(":method", "GET", ":scheme", "http", ":authority", "a.test", ":path", "/", "x-bomb", strings.Repeat("b", 4000))
			bomb := append(first, bytes.Repeat([]byte{0x80 | 62}, 16000)...) // indexed: the newest dynamic entry
			for i := 0; i < 50; i++ {
				id := uint32(2*i + 1)
				if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: bomb[:min(len(bomb), 16000)], EndStream: true, EndHeaders: len(bomb) <= 16000}); err != nil {
					break
				}
				for rest := bomb[min(len(bomb), 16000):]; len(rest) > 0; {
					n := min(len(rest), 16000)
					if err := c.fr.WriteContinuation(id, n == len(rest), rest[:n]); err != nil {
						break
					}
					rest = rest[n:]
				}
				if c.closed.Load() {
					break
				}
			}
			return func() error {
				t.Logf("HPACK bomb: closed %v, GOAWAY %v, %d streams reset", c.closed.Load(), c.goaway.Load(), c.resets.Load())
				return nil
			}
		})
	})

	for _, flood := range []string{"SETTINGS", "PING"} {
		t.Run(flood+" flood", func(t *testing.T) {
			underAttack(t, env, func(t *testing.T) func() error {
				// Never read: the answers (ACKs) pile up unless the
				// server bounds them.
				c := dialAttack(t, addr)
				defer c.Close()
				deadline := time.Now().Add(10 * time.Second)
				c.SetWriteDeadline(deadline)
				n := 0
				for ; n < 200000 && time.Now().Before(deadline); n++ {
					var err error
					if flood == "PING" {
						err = c.fr.WritePing(false, [8]byte{1})
					} else {
						err = c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535})
					}
					if err != nil {
						break
					}
				}
				// x/net closes a connection whose answers to control
				// frames pile up unread (10000); until then each frame
				// costs what a request costs, and the bounds checked are
				// memory, bystanders and rest afterwards.
				t.Logf("%s flood: %d frames sent", flood, n)
				return func() error { return nil }
			})
		})
	}

	t.Run("zero-window stall", func(t *testing.T) {
		underAttack(t, env, func(t *testing.T) func() error {
			// Streams whose responses (1 MiB each) can never be sent:
			// the client opens no window. write_timeout (2s) resets them.
			c := dialAttack(t, addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
			defer c.Close()
			c.drain()
			const streams = 100
			for i := range streams {
				if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: c.get("/files/big.bin"), EndStream: true, EndHeaders: true}); err != nil {
					t.Fatal(err)
				}
			}
			eventually(t, 30*time.Second, "the stalled streams to be reset", func() bool {
				return c.resets.Load() >= streams/2 || c.closed.Load() || c.goaway.Load()
			})
			return func() error { return nil }
		})
	})
}
