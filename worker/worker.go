// Package worker is the runtime of one forkd worker process: it takes the
// listeners and ipc socket its master passed it, receives the configuration,
// serves HTTP with the protocol package, reports heartbeats, and drains
// gracefully when told to stop.
package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/h2"
	"github.com/forkd/forkd/internal/logging"
	"github.com/forkd/forkd/internal/metrics"
	"github.com/forkd/forkd/internal/procname"
	"github.com/forkd/forkd/internal/zone"
	"github.com/forkd/forkd/ipc"
	"github.com/forkd/forkd/protocol"
	"github.com/forkd/forkd/serve"
)

// Exit codes of a worker process.
const (
	ExitOK        = 0
	ExitFailure   = 1
	ExitBootError = 3 // the worker could not boot; the master treats it as a configuration problem
)

// Info describes the running worker to hooks.
type Info struct {
	Slot       int
	Generation int
	PID        int
	Config     *config.Config
	Logger     hclog.Logger
	// Draining reports whether the instance is draining (drain_delay
	// after TERM): a handler's own health check should then fail, as
	// health routes answer 503, while everything else is served.
	Draining func() bool
	// Store is the store every worker shares (the shared block); nil
	// without a shared block.
	Store *zone.Store
}

// Options are what a worker serves beyond its configuration.
type Options struct {
	// Handler serves requests no configured route matches; nil = built-in pages.
	Handler protocol.Handler
	// OnStart runs after the configuration arrives and before the worker
	// accepts; an error fails the boot (the master sees a boot error).
	OnStart func(Info) error
	// OnStop runs after the worker has drained, before it exits.
	OnStop func(Info)
	// BaseContext, ConnContext and ConnState are the protocol.Server
	// hooks of the same names (net/http.Server's).
	BaseContext func(net.Listener) context.Context
	ConnContext func(context.Context, protocol.ConnInfo) context.Context
	ConnState   func(protocol.ConnInfo, http.ConnState)
}

// Run is the whole life of a worker process; it returns the exit code.
func Run(opts Options) int {
	// Until the configuration (and with it the log settings) arrives,
	// problems go to stderr.
	early := hclog.New(&hclog.LoggerOptions{Name: "forkd", Output: os.Stderr}).With("role", "worker", "pid", os.Getpid())
	in, err := ipc.WorkerEnv()
	if err != nil {
		early.Error("not started by a forkd master", "error", err)
		return ExitFailure
	}
	// The master named us in argv[0] ("forkd: worker gen 3 slot 1"); the
	// short name top and pgrep show says the role.
	prog, _, _ := strings.Cut(filepath.Base(os.Args[0]), ":")
	if err := procname.Set(prog + ": worker"); err != nil {
		early.Debug("cannot set the process name", "error", err)
	}
	conn, err := ipc.FromFile(in.IPC)
	in.IPC.Close()
	if err != nil {
		early.Error("ipc socket unusable", "error", err)
		return ExitFailure
	}
	// Signals first: a TERM that arrives while booting must not kill us
	// before the master can see why.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGUSR1)
	signal.Ignore(syscall.SIGHUP, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGPIPE)

	cfg, err := ipc.ReadConfig(in.Config)
	in.Config.Close()
	if err != nil {
		early.Error("no configuration from the master", "error", err)
		_ = conn.Send(&ipc.Message{Type: ipc.TypeBootError, Error: err.Error()})
		return ExitBootError
	}
	if in.LoopP && onGoroutines(cfg, opts.Handler) {
		// The master's GOMAXPROCS includes the loop P: requests that run
		// on goroutines give it back (see protocol's procs.go).
		goruntime.GOMAXPROCS(protocol.ProcsOnGoroutines(goruntime.GOMAXPROCS(0)))
	}
	w := &runtime{opts: opts, conn: conn, cfg: cfg, slot: in.Slot, gen: in.Generation, pid: os.Getpid(),
		log: early.With("slot", in.Slot, "generation", in.Generation)}
	w.draining.Store(in.Draining)
	w.zoneFiles = in.Zones
	code := w.run(in.Listeners, sigs)
	conn.Close()
	return code
}

type runtime struct {
	opts Options
	conn *ipc.Conn
	cfg  *config.Config
	slot int
	gen  int
	pid  int

	log     hclog.Logger
	logFile *logging.File
	access  *serve.AccessLog
	srv     *protocol.Server
	h2      *h2.Server // nil without HTTP/2 listeners
	sendMu  sync.Mutex
	// draining is set when the master drains (ipc.TypeDrain, or
	// ipc.EnvDraining at start): health routes answer 503.
	draining atomic.Bool
	tls      *tlsState // nil without TLS listeners
	// zoneFiles are the shared-memory zones the master handed over;
	// zones, once run has mapped them.
	zoneFiles []ipc.Listener
	zones     *zones
}

func (w *runtime) send(m *ipc.Message) error {
	w.sendMu.Lock()
	defer w.sendMu.Unlock()
	return w.conn.Send(m)
}

// bootFail reports err to the master and returns the boot-error exit code.
func (w *runtime) bootFail(err error) int {
	w.log.Error("worker failed to boot", "error", err)
	_ = w.send(&ipc.Message{Type: ipc.TypeBootError, Error: err.Error()})
	return ExitBootError
}

func (w *runtime) info() Info {
	info := Info{Slot: w.slot, Generation: w.gen, PID: w.pid, Config: w.cfg, Logger: w.log, Draining: w.draining.Load}
	if w.zones != nil {
		info.Store = w.zones.store
	}
	return info
}

// capConnections returns max_connections, lowered to what the open-file
// limit allows (Go raised the soft limit to the hard one at start), so that
// a full worker stops accepting instead of failing accept4 with EMFILE.
func (w *runtime) capConnections(limit int) int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == unix.RLIM_INFINITY {
		return limit
	}
	room := int64(rl.Cur) - config.DescriptorReserve
	if room >= int64(limit) {
		return limit
	}
	capped := int(max(room, 1))
	w.log.Warn("max_connections capped by the open file limit (RLIMIT_NOFILE)",
		"max_connections", limit, "capped_to", capped, "nofile", rl.Cur)
	return capped
}

// listenOptions returns the protocol's options for the listener at
// address, from its listen block.
func (w *runtime) listenOptions(address string) protocol.ListenOptions {
	for _, l := range w.cfg.Listen {
		if l.Address == address {
			return protocol.ListenOptions{ProxyProtocol: l.ProxyProtocol, Trusted: l.TrustedPrefixes()}
		}
	}
	return protocol.ListenOptions{}
}

func (w *runtime) run(inherited []ipc.Listener, sigs chan os.Signal) int {
	lf, err := logging.OpenFile(w.cfg.Log.File)
	if err != nil {
		return w.bootFail(err)
	}
	w.logFile = lf
	defer lf.Close()
	w.log = logging.New(w.cfg.Log, "forkd", lf).With("role", "worker", "pid", w.pid, "slot", w.slot, "generation", w.gen)

	if w.cfg.Log.Access != "" {
		a, err := serve.OpenAccessLog(w.cfg.Log.Access, w.cfg.Log.AccessFormat, w.pid)
		if err != nil {
			// OpenAccessLog's errors already begin with "access log: ".
			return w.bootFail(err)
		}
		a.Logger = w.log
		w.access = a
		defer a.Close()
	}
	// The listeners first: the sites of each (site.listen) are matched
	// by the address it is bound to.
	raw := make([]net.Listener, 0, len(inherited))
	bound := make(map[string]net.Addr, len(inherited))
	for _, l := range inherited {
		ln, err := net.FileListener(l.File)
		l.File.Close()
		if err != nil {
			return w.bootFail(fmt.Errorf("listener %s: %w", l.Address, err))
		}
		raw = append(raw, ln)
		bound[l.Address] = ln.Addr()
	}
	zs, err := openZones(w.zoneFiles)
	if err != nil {
		return w.bootFail(err)
	}
	// Never unmapped: a handler still running on a goroutine when run
	// returns may be using a zone; the process's exit unmaps them.
	w.zones = zs
	h, err := serve.New(w.cfg, serve.Options{Logger: w.log, Fallback: w.opts.Handler, Draining: &w.draining, Bound: bound, Zones: zs.limiters})
	if err != nil {
		return w.bootFail(err)
	}
	if c, ok := h.(io.Closer); ok {
		defer c.Close()
	}
	if w.opts.OnStart != nil {
		if err := w.opts.OnStart(w.info()); err != nil {
			return w.bootFail(fmt.Errorf("worker start hook: %w", err))
		}
	}

	retire := make(chan struct{}, 1)
	w.srv = &protocol.Server{
		Handler: h,
		Limits:  w.cfg.Limits, // config.Limits is protocol.Limits
		Logger:  w.log,

		BaseContext: w.opts.BaseContext,
		ConnContext: w.opts.ConnContext,
		ConnState:   w.opts.ConnState,

		Processes: w.cfg.Workers,
	}
	w.srv.Limits.MaxConnections = w.capConnections(w.cfg.Limits.MaxConnections)
	if w.access != nil {
		w.srv.Log = w.access.Log
	}
	if n := w.cfg.MaxRequests; n > 0 {
		if j := w.cfg.MaxRequestsJitter; j > 0 {
			n += rand.IntN(j + 1)
		}
		var served atomic.Int64
		limit := int64(n)
		w.srv.OnRequestDone = func() {
			if served.Add(1) == limit {
				retire <- struct{}{}
			}
		}
	}

	if w.serveHTTP2() {
		// HTTP/2 connections leave srv for the bridge, which brings
		// each stream back to the same handler (package h2).
		w.h2 = h2.New(h2.Options{
			Handler:              h,
			Limits:               w.srv.Limits,
			MaxConcurrentStreams: w.cfg.HTTP2.MaxConcurrentStreams,
			MaxReadFrameSize:     uint32(w.cfg.HTTP2.MaxReadFrameSize),
			Logger:               w.log.Named("h2"),
			Log:                  w.srv.Log,
			OnRequestDone:        w.srv.OnRequestDone,
		})
		w.srv.HandOff = w.h2.ServeConn
	}
	if w.cfg.HasTLS() {
		st, err := w.awaitTLS()
		if err != nil {
			return w.bootFail(err)
		}
		w.tls = st
	}
	type served struct {
		ln   net.Listener
		opts protocol.ListenOptions
	}
	lns := make([]served, 0, len(inherited))
	for i, l := range inherited {
		ln := raw[i]
		opts := w.listenOptions(l.Address)
		if w.tls.serves(l.Address) && opts.ProxyProtocol {
			// The PROXY header comes before the TLS handshake: it is
			// stripped below the TLS layer.
			ln = protocol.NewProxyListener(ln, opts, w.log)
			// Its trusted peers still decide whose forwarding headers
			// are believed.
			opts = protocol.ListenOptions{Trusted: opts.Trusted}
		}
		opts.HTTP2 = w.h2 != nil && w.listensHTTP2(l.Address)
		lns = append(lns, served{w.tls.wrap(l.Address, ln), opts})
	}
	// The master's end closing (it died) reads as EOF here. Read before
	// serving: a drain message sent while this worker booted then takes
	// effect before the first request or right after.
	masterGone := make(chan error, 1)
	go func() {
		for {
			msg, err := w.conn.Recv()
			if err != nil {
				masterGone <- err
				return
			}
			w.handleMaster(msg)
		}
	}()
	serveErr := make(chan error, len(lns))
	for _, l := range lns {
		go func() { serveErr <- w.srv.ServeWith(l.ln, l.opts) }()
	}
	if err := w.send(&ipc.Message{Type: ipc.TypeReady}); err != nil {
		w.log.Error("cannot report ready; master gone", "error", err)
		w.closeAll()
		return ExitFailure
	}
	w.log.Debug("worker ready", "listeners", len(lns))

	beat := time.NewTicker(time.Second)
	defer beat.Stop()
	w.heartbeat()
	for {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGUSR1:
				w.reopen()
			case syscall.SIGTERM:
				return w.drain()
			default: // INT, QUIT: quick
				w.log.Info("quick stop", "signal", sig.String())
				w.closeAll()
				w.stopHook()
				return ExitOK
			}
		case <-beat.C:
			w.heartbeat()
		case <-retire:
			hb := w.stats()
			w.log.Info("max_requests reached; asking for a replacement", "requests", hb.Requests)
			_ = w.send(&ipc.Message{Type: ipc.TypeRetire, Heartbeat: hb})
		case err := <-masterGone:
			w.log.Warn("master gone; exiting", "error", err)
			w.closeAll()
			return ExitFailure
		case err := <-serveErr:
			if errors.Is(err, protocol.ErrServerClosed) {
				continue
			}
			w.log.Error("accept loop failed", "error", err)
			w.closeAll()
			return ExitFailure
		}
	}
}

// drain stops accepting and lets in-flight requests finish within
// graceful_timeout; heartbeats continue so the master sees progress.
func (w *runtime) drain() int {
	w.log.Info("graceful stop", "timeout", w.cfg.GracefulTimeout.String())
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.GracefulTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		// HTTP/2 connections get a GOAWAY and finish their streams
		// meanwhile.
		var h2err error
		var wg sync.WaitGroup
		if w.h2 != nil {
			wg.Go(func() { h2err = w.h2.Shutdown(ctx) })
		}
		err := w.srv.Shutdown(ctx)
		wg.Wait()
		if w.h2 != nil && h2err == nil {
			// A connection srv handed over while it drained: told
			// GOAWAY and finished too.
			h2err = w.h2.Shutdown(ctx)
		}
		done <- errors.Join(err, h2err)
	}()
	beat := time.NewTicker(time.Second)
	defer beat.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				w.log.Warn("graceful stop cut short", "error", err)
			}
			w.stopHook()
			return ExitOK
		case <-beat.C:
			w.heartbeat()
		}
	}
}

// closeAll closes every connection now.
func (w *runtime) closeAll() {
	w.srv.Close()
	if w.h2 != nil {
		w.h2.Close()
	}
}

// serveHTTP2 reports whether any listener speaks HTTP/2.
func (w *runtime) serveHTTP2() bool {
	for _, l := range w.cfg.Listen {
		if l.HTTP2() {
			return true
		}
	}
	return false
}

// listensHTTP2 reports whether the listener at address speaks HTTP/2.
func (w *runtime) listensHTTP2(address string) bool {
	for _, l := range w.cfg.Listen {
		if l.Address == address {
			return l.HTTP2()
		}
	}
	return false
}

func (w *runtime) stopHook() {
	if w.opts.OnStop != nil {
		w.opts.OnStop(w.info())
	}
}

func (w *runtime) reopen() {
	if err := w.logFile.Reopen(); err != nil {
		w.log.Error("reopen log file", "error", err)
	}
	if w.access != nil {
		if err := w.access.Reopen(); err != nil {
			w.log.Error("reopen access log", "error", err)
		}
	}
	w.log.Info("log files reopened")
}

func (w *runtime) heartbeat() {
	_ = w.send(&ipc.Message{Type: ipc.TypeHeartbeat, Heartbeat: w.stats()})
}

// stats is what a heartbeat (and a retire message) reports.
func (w *runtime) stats() *ipc.Heartbeat {
	st := w.srv.Stats()
	var hs protocol.Stats
	if w.h2 != nil {
		hs = w.h2.Stats()
		st.Requests += hs.Requests
		st.OpenConns += hs.OpenConns
		for i := range st.Status {
			st.Status[i] += hs.Status[i]
		}
	}
	return &ipc.Heartbeat{
		Requests:    st.Requests,
		OpenConns:   st.OpenConns,
		RSS:         rss(),
		Status:      metrics.Classes(st.Status),
		H2Status:    metrics.Classes(hs.Status),
		H2OpenConns: hs.OpenConns,
		// Read concurrently with the handlers: the down marks are atomics.
		UpstreamsDown: serve.DownUpstreams(w.srv.Handler, time.Now(), ipc.MaxUpstreamsDown),
	}
}

// rss reads this process's resident set size from /proc/self/statm.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

// onGoroutines reports whether the worker's requests mostly run on
// goroutines rather than on its event loops: an embedded application that
// is not LoopSafe, or a proxy route whose exchanges cannot run on the
// loops (serve.ProxyOnLoop: error_pages or compress).
func onGoroutines(cfg *config.Config, h protocol.Handler) bool {
	if h != nil {
		if ls, ok := h.(protocol.LoopSafe); !ok || !ls.LoopSafe() {
			return true
		}
	}
	for i := range cfg.Sites {
		site := &cfg.Sites[i]
		for j := range site.Routes {
			if r := &site.Routes[j]; r.Proxy != nil && !serve.ProxyOnLoop(site, r) {
				return true
			}
		}
	}
	return false
}
