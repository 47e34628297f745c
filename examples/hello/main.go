// Command hello serves a native forkd handler under forkd's master: the
// allocation-free API, per-worker start and stop hooks, and config.hcl sites
// alongside (run it with -c to add static files or proxies).
//
//	go run ./examples/hello            # 127.0.0.1:8080, one worker per CPU
//	go run ./examples/hello -c app.hcl
package main

import (
	"strconv"

	"github.com/forkd/forkd"
)

func main() {
	var slot []byte
	// The handler waits for nothing, so it may run inline on the workers'
	// event loops (forkd.Nonblocking below).
	hello := forkd.HandlerFunc(func(w *forkd.ResponseWriter, r *forkd.Request) {
		switch string(r.Path) {
		case "/":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteString("Hello, World!\n")
		case "/worker":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write(slot)
		default:
			w.WriteHeader(404)
			w.WriteString("not found\n")
		}
	})
	forkd.Main(forkd.Nonblocking(hello),
		forkd.OnWorkerStart(func(wk forkd.Worker) error {
			// Open per-worker resources (database pools, caches) here.
			slot = []byte("slot " + strconv.Itoa(wk.Slot) + " generation " + strconv.Itoa(wk.Generation) + "\n")
			// wk.Logger already names the slot and generation.
			wk.Logger.Info("hello worker starting")
			return nil
		}),
		forkd.OnWorkerStop(func(wk forkd.Worker) {
			wk.Logger.Info("hello worker stopping")
		}),
	)
}
