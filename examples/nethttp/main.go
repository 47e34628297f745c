// Command nethttp runs an existing net/http application (an http.ServeMux)
// unchanged under forkd's master: supervision, HUP reloads, graceful drain.
//
//	go run ./examples/nethttp
package main

import (
	"encoding/json"
	"net/http"
	"os"

	"github.com/forkd/forkd"
)

func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("Hello from net/http under forkd\n"))
	})
	mux.HandleFunc("GET /hello/{name}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"hello": r.PathValue("name"), "pid": os.Getpid()})
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
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
	forkd.Main(forkd.HTTP(mux))
}
