package test

import (
	"net"
	"net/http"
	"sync"
	"testing"
)

// heldUpstream is a real HTTP server on loopback whose answers wait until
// the test releases them: a request that is "slow" for exactly as long as
// the test needs, whatever the machine's speed.
type heldUpstream struct {
	addr        string
	started     chan struct{}
	release     chan struct{}
	releaseOnce sync.Once
}

func newHeldUpstream(t testing.TB) *heldUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &heldUpstream{addr: ln.Addr().String(), started: make(chan struct{}, 16), release: make(chan struct{})}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.started <- struct{}{}
		select {
		case <-u.release:
			w.Write([]byte("slow done\n"))
		case <-r.Context().Done():
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() {
		u.answer()
		srv.Close()
	})
	return u
}

// answer lets every held request, and every later one, finish.
func (u *heldUpstream) answer() { u.releaseOnce.Do(func() { close(u.release) }) }
