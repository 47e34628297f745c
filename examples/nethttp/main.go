// Command nethttp runs an existing net/http application (an http.ServeMux)
// unchanged under forkd's master: supervision, HUP reloads, graceful drain.
//
//	go run ./examples/nethttp
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"

	"github.com/forkd/forkd"
)

type ctxKey struct{}

func main() {
	// Connection hooks, as with net/http.Server's BaseContext, ConnContext
	// and ConnState: a value for every request context, and a gauge of the
	// worker's open connections.
	var open atomic.Int64
	hooks := []forkd.Option{
		forkd.WithBaseContext(func(net.Listener) context.Context {
			return context.WithValue(context.Background(), ctxKey{}, "app")
		}),
		forkd.WithConnState(func(c forkd.ConnInfo, st http.ConnState) {
			switch st {
			case http.StateNew:
				open.Add(1)
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		}),
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s: %d open connections in worker %d\n", r.Context().Value(ctxKey{}), open.Load(), os.Getpid())
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("Hello from net/http under forkd\n"))
	})
	mux.HandleFunc("GET /hello/{name}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"hello": r.PathValue("name"), "pid": os.Getpid(), "proto": r.Proto})
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		// Reading the body while the response streams out needs full
		// duplex, under net/http.Server as under forkd: by default the
		// unread body is discarded once the response begins.
		if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		var buf [32 << 10]byte
		for {
			n, err := r.Body.Read(buf[:])
			w.Write(buf[:n])
			if err != nil {
				return
			}
		}
	})
	forkd.Main(forkd.HTTP(mux), hooks...)
}
