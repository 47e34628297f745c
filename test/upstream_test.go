package test

import (
	"net"
	"net/http"
	"testing"
	"time"
)

// slowUpstream is a real HTTP server on loopback that answers after a delay.
type slowUpstream struct {
	addr    string
	started chan struct{}
}

func newSlowUpstream(t testing.TB, delay time.Duration) *slowUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &slowUpstream{addr: ln.Addr().String(), started: make(chan struct{}, 16)}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.started <- struct{}{}
		time.Sleep(delay) // the upstream is slow by design: it is what the test is about
		w.Write([]byte("slow done\n"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return u
}
