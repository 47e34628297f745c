// Command benchapp is the "embedded net/http app" of bench/run.sh: one
// ordinary net/http handler (an http.ServeMux answering "Hello, World!"),
// served either under forkd (forkd.Main(forkd.HTTP(mux)), the default, with
// forkd's command line) or, when BENCHAPP_PLAIN names a listen address, by
// a plain net/http.Server, so that the two are compared on the same code.
package main

import (
	"log"
	"net/http"
	"os"

	"github.com/forkd/forkd"
)

func main() {
	hello := []byte("Hello, World!")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(hello)
	})
	if addr := os.Getenv("BENCHAPP_PLAIN"); addr != "" {
		log.Fatal((&http.Server{Addr: addr, Handler: mux}).ListenAndServe())
	}
	forkd.Main(forkd.HTTP(mux), forkd.WithName("benchapp"))
}
