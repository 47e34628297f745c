package protocol

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

type ctxKey string

// TestConnHooks checks BaseContext, ConnContext and ConnState: values of
// both contexts reach a FromHTTP handler's request context, and each
// connection reports its states in net/http's order.
func TestConnHooks(t *testing.T) { inModes(t, testConnHooks) }

func testConnHooks(t *testing.T) {
	type event struct {
		id uint64
		st http.ConnState
	}
	events := make(chan event, 100)
	var bases atomic.Int32
	_, addr := startServer(t, FromHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hijack" {
			nc, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				io.WriteString(nc, "hijacked")
				nc.Close()
			}
			return
		}
		ctx := r.Context()
		fmt.Fprintf(w, "%v %v", ctx.Value(ctxKey("base")), ctx.Value(ctxKey("conn")))
	})), func(s *Server) {
		s.BaseContext = func(ln net.Listener) context.Context {
			bases.Add(1)
			return context.WithValue(context.Background(), ctxKey("base"), "base")
		}
		s.ConnContext = func(ctx context.Context, c ConnInfo) context.Context {
			if c.RemoteAddr == nil || c.LocalAddr == nil {
				t.Errorf("ConnContext without addresses: %+v", c)
			}
			return context.WithValue(ctx, ctxKey("conn"), c.ID)
		}
		s.ConnState = func(c ConnInfo, st http.ConnState) { events <- event{c.ID, st} }
	})
	states := func(n int) (uint64, []http.ConnState) {
		t.Helper()
		var id uint64
		var got []http.ConnState
		timeout := time.After(30 * time.Second)
		for len(got) < n {
			select {
			case e := <-events:
				if id == 0 {
					id = e.id
				} else if e.id != id {
					t.Fatalf("events of connection %d among those of %d", e.id, id)
				}
				got = append(got, e.st)
			case <-timeout:
				t.Fatalf("states so far: %v", got)
			}
		}
		return id, got
	}

	c := dial(t, addr)
	br := bufio.NewReader(c)
	for range 2 {
		io.WriteString(c, rawGet("/"))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if b := bodyOf(resp); b != "base 1" {
			t.Fatalf("body %q", b)
		}
	}
	c.Close()
	id, got := states(6)
	want := []http.ConnState{http.StateNew, http.StateActive, http.StateIdle, http.StateActive, http.StateIdle, http.StateClosed}
	if id != 1 || !slices.Equal(got, want) {
		t.Errorf("connection %d: states %v, want %v", id, got, want)
	}

	if out := exchange(t, addr, rawGet("/hijack")); out != "hijacked" {
		t.Fatalf("hijack: %q", out)
	}
	id, got = states(3)
	want = []http.ConnState{http.StateNew, http.StateActive, http.StateHijacked}
	if id != 2 || !slices.Equal(got, want) {
		t.Errorf("connection %d: states %v, want %v", id, got, want)
	}
	if n := bases.Load(); n != 1 {
		t.Errorf("BaseContext called %d times for one listener", n)
	}
}
