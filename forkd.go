// Package forkd runs a Go program's HTTP handler under forkd's pre-fork
// process model: the same master (supervision, signals, reload, systemd) as
// the forkd daemon, re-executing the program's own binary as workers.
//
//	func main() {
//		forkd.Main(forkd.HTTP(mux),
//			forkd.OnWorkerStart(func(w forkd.Worker) error { return openPool(w) }))
//	}
//
// Main parses the usual command line (-c config.hcl, -t, the
// status|reload|stop|scale control commands with -s and -json, top, version
// and help). In the master it never
// returns; in a worker it serves until told to stop, then exits. Unlike the
// forkd daemon, a program reads a configuration file only when it is named
// with -c (or with WithConfigFile): a config.hcl that happens to be in the
// working directory does not change what the program serves.
//
// The handler answers every request no `site` route of the configuration
// matches, so an application can mix its own handler with static files and
// proxies configured in config.hcl.
package forkd

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/protocol"
	"github.com/forkd/forkd/worker"
)

// Version is forkd's version, printed by -version.
const Version = "0.1.0"

// Handler is forkd's native, allocation-free handler API.
type Handler = protocol.Handler

// HandlerFunc adapts a function to Handler.
type HandlerFunc = protocol.HandlerFunc

// ResponseWriter writes a native handler's response.
type ResponseWriter = protocol.ResponseWriter

// Request is a native handler's request; its byte slices are valid until the
// handler returns.
type Request = protocol.Request

// LoopSafe is implemented by handlers that may run inline on a worker's
// event loops (see the protocol package's "Event loops").
type LoopSafe = protocol.LoopSafe

// Nonblocking marks h LoopSafe: a worker serves its requests inline on its
// event loops, as it serves config.hcl's respond and static routes, instead
// of moving each connection to a goroutine of its own first. Use it only for
// handlers that wait for nothing but the client (no database, upstream,
// sleep or contended lock), or that call ResponseWriter.WillBlock before
// they wait; a LoopSafe handler that blocks holds up its loop's other
// connections.
func Nonblocking(h Handler) Handler { return protocol.Nonblocking(h) }

// Compressed lets the compress block of a site compress h's responses:
// those to the site's requests that none of its routes matches, which h
// serves. Without it they go out as h wrote them (h may compress for
// itself). Nonblocking(Compressed(h)) and Compressed(Nonblocking(h)) are
// both.
func Compressed(h Handler) Handler { return protocol.Compressed(h) }

// Worker describes the worker process a hook runs in.
type Worker = worker.Info

// HTTP adapts a net/http handler, which then behaves as under
// net/http.Server; the protocol package's "net/http handlers" and README's
// "The net/http adapter" say what differs.
func HTTP(h http.Handler) Handler { return protocol.FromHTTP(h) }

// Option configures Main.
type Option func(*options)

type options struct {
	name          string
	defaultConfig func() *config.Config
	configFile    string
	onStart       func(Worker) error
	onStop        func(Worker)
	args          []string
	baseContext   func(net.Listener) context.Context
	connContext   func(context.Context, ConnInfo) context.Context
	connState     func(ConnInfo, http.ConnState)
	// stdout and stderr receive the command line's output; nil means
	// os.Stdout and os.Stderr (tests set them).
	stdout, stderr io.Writer
}

// ConnInfo describes a client connection to the connection hooks: an ID
// unique within the worker process, and its addresses.
type ConnInfo = protocol.ConnInfo

// WithBaseContext sets, like net/http.Server.BaseContext, the context that
// the request contexts of a net/http handler (HTTP) derive from, for
// connections accepted on ln: values put there reach every request. It
// runs in each worker, once per listener, before it accepts.
func WithBaseContext(fn func(ln net.Listener) context.Context) Option {
	return func(o *options) { o.baseContext = fn }
}

// WithConnContext sets, like net/http.Server.ConnContext, a function that
// derives each connection's context from the base context when the
// connection is accepted; the requests of a net/http handler on that
// connection derive from it.
func WithConnContext(fn func(ctx context.Context, c ConnInfo) context.Context) Option {
	return func(o *options) { o.connContext = fn }
}

// WithConnState sets, like net/http.Server.ConnState, a function told of
// every connection's state changes in the worker: http.StateNew when it is
// accepted, StateActive when a request begins to arrive, StateIdle when it
// waits for the next, then StateHijacked or StateClosed. It runs on the
// goroutine serving the connection, so it must be quick (counters, a map
// under a mutex).
func WithConnState(fn func(c ConnInfo, state http.ConnState)) Option {
	return func(o *options) { o.connState = fn }
}

// OnWorkerStart registers fn to run in each worker after it receives its
// configuration and before it accepts connections (gunicorn's
// post_worker_init): open per-worker resources here. An error fails the
// worker's boot; at start-up that stops the master with exit code 3.
func OnWorkerStart(fn func(Worker) error) Option {
	return func(o *options) { o.onStart = fn }
}

// OnWorkerStop registers fn to run in each worker after it has drained and
// before it exits (gunicorn's worker_exit): close per-worker resources here.
func OnWorkerStop(fn func(Worker)) Option {
	return func(o *options) { o.onStop = fn }
}

// WithDefaultConfig sets the configuration used when no -c flag is given and
// no WithConfigFile file exists (default: config.Default()).
func WithDefaultConfig(fn func() *config.Config) Option {
	return func(o *options) { o.defaultConfig = fn }
}

// WithConfigFile makes Main read the file name, relative to the working
// directory, when no -c flag is given and the file exists, as the forkd
// daemon does with config.DefaultFile. Without it, only -c names a file.
func WithConfigFile(name string) Option {
	return func(o *options) { o.configFile = name }
}

// WithName sets the program name used in usage and error messages.
func WithName(name string) Option {
	return func(o *options) { o.name = name }
}

// WithArgs replaces os.Args[1:] as the command line Main parses (for tests).
func WithArgs(args []string) Option {
	return func(o *options) { o.args = args }
}

// Main runs h under forkd and exits the process with forkd's exit code.
// h may be nil: the configuration's sites (or the built-in pages) serve.
func Main(h Handler, opts ...Option) {
	os.Exit(Run(h, opts...))
}

// Run is Main without the os.Exit: it returns the exit code.
func Run(h Handler, opts ...Option) int {
	o := options{name: "forkd", defaultConfig: config.Default, args: os.Args[1:]}
	if len(os.Args) > 0 && os.Args[0] != "" {
		o.name = baseName(os.Args[0])
	}
	for _, opt := range opts {
		opt(&o)
	}
	if IsWorker() {
		return worker.Run(worker.Options{Handler: h, OnStart: o.onStart, OnStop: o.onStop,
			BaseContext: o.baseContext, ConnContext: o.connContext, ConnState: o.connState})
	}
	return runCommand(&o)
}

// IsWorker tells whether this process is a forkd worker (re-executed by a
// master), so a program can skip master-only set-up before calling Main.
func IsWorker() bool { return isWorker() }
