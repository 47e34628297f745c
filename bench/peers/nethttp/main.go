// Command nethttp is the Go net/http peer for the forkd benchmarks: one
// process answering every request with a fixed plaintext "Hello, World!".
//
// It runs with GOMAXPROCS equal to the number of CPUs it may use, which the
// Go runtime derives from the process's affinity mask, so pinning it with
// taskset is enough to size it.
package main

import (
	"flag"
	"log"
	"net/http"
	"strconv"
)

var hello = []byte("Hello, World!")

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address (host:port)")
	flag.Parse()

	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		// Setting both headers explicitly keeps net/http from sniffing
		// the content type and from switching to chunked encoding.
		hdr["Content-Type"] = []string{"text/plain"}
		hdr["Content-Length"] = []string{strconv.Itoa(len(hello))}
		w.Write(hello)
	})
	srv := &http.Server{Addr: *addr, Handler: h}
	log.Fatal(srv.ListenAndServe())
}
