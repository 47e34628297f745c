// Command shared keeps state that every worker shares: a visit counter and
// a small key-value cache with expiry, in forkd.Store (the shared block),
// served by a net/http handler. Each response names the worker that
// answered: the values are the same whichever it is.
//
//	go run ./examples/shared                 # 127.0.0.1:8080, one worker per CPU
//	curl localhost:8080/visits               # visits: 1 (worker 4242)
//	curl -X PUT -d hi 'localhost:8080/kv/greeting?ttl=1m'
//	curl localhost:8080/kv/greeting          # hi
package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/forkd/forkd"
	"github.com/forkd/forkd/config"
)

func main() {
	// Set by the start hook, before the worker serves.
	var store *forkd.Store

	mux := http.NewServeMux()
	mux.HandleFunc("GET /visits", func(w http.ResponseWriter, r *http.Request) {
		n, err := store.Add([]byte("visits"), 1, 0)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "visits: %d (worker %d)\n", n, os.Getpid())
	})
	mux.HandleFunc("GET /kv/{key}", func(w http.ResponseWriter, r *http.Request) {
		v, ok := store.Get(nil, []byte(r.PathValue("key")))
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(v)
	})
	mux.HandleFunc("PUT /kv/{key}", func(w http.ResponseWriter, r *http.Request) {
		var ttl time.Duration
		if s := r.URL.Query().Get("ttl"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil {
				http.Error(w, "ttl: "+err.Error(), http.StatusBadRequest)
				return
			}
			ttl = d
		}
		v, err := io.ReadAll(io.LimitReader(r.Body, forkd.MaxStoreValue+1))
		if err == nil {
			err = store.Set([]byte(r.PathValue("key")), v, ttl)
		}
		switch {
		case errors.Is(err, forkd.ErrStoreTooLarge):
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		case err != nil:
			http.Error(w, err.Error(), http.StatusBadRequest)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	mux.HandleFunc("DELETE /kv/{key}", func(w http.ResponseWriter, r *http.Request) {
		if !store.Delete([]byte(r.PathValue("key"))) {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})

	forkd.Main(forkd.HTTP(mux),
		// Without -c, the defaults plus a 16MiB shared block.
		forkd.WithDefaultConfig(func() *config.Config {
			c := config.Default()
			c.Shared = &config.Shared{Size: 16 << 20}
			return c
		}),
		forkd.OnWorkerStart(func(wk forkd.Worker) error {
			if wk.Store == nil {
				return errors.New("the configuration has no shared block")
			}
			store = wk.Store
			return nil
		}),
	)
}
