// Command fasthttp is the fasthttp peer for the forkd benchmarks: a hello
// handler served by fasthttp's prefork package, which starts one child
// process per CPU, each with GOMAXPROCS=1 and its own SO_REUSEPORT listener.
//
// The number of children is the number of CPUs in the process's affinity
// mask (runtime.NumCPU), so pinning the parent with taskset sizes it.
package main

import (
	"flag"
	"log"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/prefork"
)

var hello = []byte("Hello, World!")

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address (host:port)")
	flag.Parse()

	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("text/plain")
			ctx.SetBody(hello)
		},
		Name: "fasthttp",
	}
	p := prefork.New(srv)
	log.Fatal(p.ListenAndServe(*addr))
}
