// Command upstream is the shared upstream of the proxy benchmarks: forkd and
// nginx both proxy to one instance of it, so that the upstream's cost is the
// same for both. It is fasthttp on one core (run it with GOMAXPROCS=1),
// answering every request with a fixed plaintext "Hello, World!" and keeping
// connections alive, so that the proxy in front of it is what is measured.
package main

import (
	"flag"
	"log"

	"github.com/valyala/fasthttp"
)

var hello = []byte("Hello, World!")

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address (host:port)")
	flag.Parse()
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("text/plain")
			ctx.SetBody(hello)
		},
		Name:                          "upstream",
		NoDefaultDate:                 true,
		DisableHeaderNamesNormalizing: true,
	}
	log.Fatal(srv.ListenAndServe(*addr))
}
