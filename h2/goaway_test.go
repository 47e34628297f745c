package h2

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/forkd/forkd/protocol"
)

// TestShutdownSteps follows a drain frame by frame: a PING, nothing more
// until the client acknowledges it, then GOAWAY(2^31-1) and a second PING;
// a stream the client opens before acknowledging that one is served, and
// x/net's GOAWAY names it.
func TestShutdownSteps(t *testing.T) {
	started := make(chan struct{}, 2)
	release := make(chan struct{})
	addr, b := serveH2C(t, protocol.HandlerFunc(func(w *protocol.ResponseWriter, r *protocol.Request) {
		started <- struct{}{}
		if string(r.Path) == "/slow" {
			<-release
		}
		w.Write([]byte("ok"))
	}), Options{})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := nc.Write([]byte(clientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(nc, nc)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	open := func(id uint32, path string) {
		hb.Reset()
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "a.test"}, {":path", path}} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	open(1, "/slow")
	<-started

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- b.Shutdown(ctx)
	}()
	// next returns the next frame other than SETTINGS and WINDOW_UPDATE.
	next := func() http2.Frame {
		t.Helper()
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					fr.WriteSettingsAck()
				}
			case *http2.WindowUpdateFrame:
			default:
				return f
			}
		}
	}
	p, ok := next().(*http2.PingFrame)
	if !ok || p.IsAck() || p.Data != pingHold {
		t.Fatalf("first frame of the drain: %#v", p)
	}
	// The answer to stream 1 is held back until the PING's ACK.
	close(release)
	if err := fr.WritePing(true, p.Data); err != nil {
		t.Fatal(err)
	}
	g, ok := next().(*http2.GoAwayFrame)
	if !ok || g.LastStreamID != 1<<31-1 || g.ErrCode != http2.ErrCodeNo {
		t.Fatalf("after the ACK: %#v, want GOAWAY(2^31-1)", g)
	}
	p, ok = next().(*http2.PingFrame)
	if !ok || p.IsAck() || p.Data != pingReady {
		t.Fatalf("after the first GOAWAY: %#v", p)
	}
	// A stream opened before the client acknowledges the second PING.
	open(3, "/")
	if err := fr.WritePing(true, p.Data); err != nil {
		t.Fatal(err)
	}
	ended := map[uint32]bool{}
	var last *http2.GoAwayFrame
	for !ended[1] || !ended[3] || last == nil {
		switch f := next().(type) {
		case *http2.GoAwayFrame:
			last = f
		case *http2.MetaHeadersFrame:
			if f.StreamEnded() {
				ended[f.StreamID] = true
			}
		case *http2.DataFrame:
			if f.StreamEnded() {
				ended[f.StreamID] = true
			}
		case *http2.RSTStreamFrame:
			t.Fatalf("stream %d reset: %v", f.StreamID, f.ErrCode)
		}
	}
	if last.LastStreamID != 3 || last.ErrCode != http2.ErrCodeNo {
		t.Errorf("x/net's GOAWAY: last stream %d, %v; want 3, NO_ERROR", last.LastStreamID, last.ErrCode)
	}
	nc.Close()
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestCoalescedWrites writes frames through a goAwayConn faster than the
// peer reads (its queue fills past maxQueued) and checks that every byte
// arrives in order.
func TestCoalescedWrites(t *testing.T) {
	a, b := net.Pipe()
	g, c := newGoAwayConn(a, a)
	const frames = 600
	go func() {
		for i := range frames {
			n := 1 + i*37%20000
			f := make([]byte, 9+n)
			f[0], f[1], f[2] = byte(n>>16), byte(n>>8), byte(n)
			for j := 9; j < len(f); j++ {
				f[j] = byte(i)
			}
			if _, err := c.Write(f); err != nil {
				t.Error(err)
				return
			}
		}
		g.Close()
	}()
	buf := make([]byte, 9)
	for i := range frames {
		if _, err := io.ReadFull(b, buf[:9]); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		n := int(buf[0])<<16 | int(buf[1])<<8 | int(buf[2])
		if want := 1 + i*37%20000; n != want {
			t.Fatalf("frame %d: length %d, want %d", i, n, want)
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(b, p); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(p, bytes.Repeat([]byte{byte(i)}, n)) {
			t.Fatalf("frame %d: payload corrupted", i)
		}
	}
	if _, err := b.Read(buf); err != io.EOF {
		t.Errorf("after the frames: %v, want EOF", err)
	}
}
