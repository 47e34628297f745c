// Command nethttp is the Go net/http peer for the forkd benchmarks: one
// process answering every request with a fixed plaintext "Hello, World!".
//
// With -h2c-addr it also serves HTTP/2 with prior knowledge on a second
// port, and with -tls-addr (and -cert, -key) HTTP/2 by ALPN over TLS on a
// third; there /4k.bin answers the file -file names. These are the HTTP/2
// tests' floor for forkd: net/http's own HTTP/2 server is the same code as
// golang.org/x/net/http2's, which forkd bridges its routes to, with no
// bridge at all.
//
// It runs with GOMAXPROCS equal to the number of CPUs it may use, which the
// Go runtime derives from the process's affinity mask, so pinning it with
// taskset is enough to size it.
package main

import (
	"crypto/tls"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
)

var hello = []byte("Hello, World!")

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address (host:port)")
	h2cAddr := flag.String("h2c-addr", "", "also serve HTTP/2 with prior knowledge here")
	tlsAddr := flag.String("tls-addr", "", "also serve HTTP/2 (and HTTP/1.1) over TLS here")
	cert := flag.String("cert", "", "certificate for -tls-addr (PEM)")
	key := flag.String("key", "", "key for -tls-addr (PEM)")
	file := flag.String("file", "", "the body of /4k.bin")
	flag.Parse()

	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		// Setting both headers explicitly keeps net/http from sniffing
		// the content type and from switching to chunked encoding.
		hdr["Content-Type"] = []string{"text/plain"}
		hdr["Content-Length"] = []string{strconv.Itoa(len(hello))}
		w.Write(hello)
	})
	var body []byte
	if *file != "" {
		var err error
		if body, err = os.ReadFile(*file); err != nil {
			log.Fatal(err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("/4k.bin", func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr["Content-Type"] = []string{"application/octet-stream"}
		hdr["Content-Length"] = []string{strconv.Itoa(len(body))}
		w.Write(body)
	})

	// Every listener is open before any serves, so that the plain one
	// answering (run.sh's readiness probe) means all of them do.
	listen := func(a string) net.Listener {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			log.Fatal(err)
		}
		return ln
	}
	plain := listen(*addr)
	errs := make(chan error, 3)
	if *h2cAddr != "" {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		ln := listen(*h2cAddr)
		go func() { errs <- (&http.Server{Handler: mux, Protocols: &p}).Serve(ln) }()
	}
	if *tlsAddr != "" {
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetHTTP2(true)
		ln := listen(*tlsAddr)
		srv := &http.Server{Handler: mux, Protocols: &p, TLSConfig: &tls.Config{}}
		go func() { errs <- srv.ServeTLS(ln, *cert, *key) }()
	}
	go func() { errs <- (&http.Server{Handler: h}).Serve(plain) }()
	log.Fatal(<-errs)
}
