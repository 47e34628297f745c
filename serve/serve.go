package serve

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/zone"
	"github.com/forkd/forkd/protocol"
	"github.com/hashicorp/go-hclog"
)

// Options are what New needs besides the configuration.
type Options struct {
	Logger hclog.Logger
	// Fallback serves requests no site route matches (the embedding
	// application's handler). Nil: the built-in welcome page and /healthz when
	// the configuration has no sites, else 404.
	Fallback protocol.Handler
	// Draining, once set, makes health routes answer 503; nil: they always
	// answer 200. The worker sets it when its master starts draining.
	Draining *atomic.Bool
	// Bound maps a listen block's address to the address its socket is
	// bound to (port 0 becomes the port chosen), for matching the sites
	// of a listener (site.listen); nil: the addresses as written.
	Bound map[string]net.Addr
	// Zones are the rate_limit blocks' shared zones, by block name, that
	// the master handed to the worker; a block without one is an error.
	// Nil: each block gets a zone of this process alone (a handler built
	// without a master, in tests).
	Zones map[string]*zone.Limiter
}

// routeHandler serves the requests of one route. p is the cleaned request
// path and its flags; it aliases a per-request buffer valid until the call
// returns.
type routeHandler interface {
	serveRoute(w *protocol.ResponseWriter, r *protocol.Request, p *reqPath)
}

// handler is what New returns: the router in front of the routes.
type handler struct {
	// router serves every listener, or with views (some site names its
	// listeners) the connections no listener view matches.
	router   router
	views    []listenerView
	noSites  bool
	fallback protocol.Handler
	// fallbackSafe: the fallback may run on an event loop; otherwise the
	// connection leaves the loop first (WillBlock).
	fallbackSafe bool
	// fallbackCompress: the fallback opted in (protocol.Compressed) to its
	// sites' compress blocks.
	fallbackCompress bool
	logger           hclog.Logger
	draining         *atomic.Bool
	closers          []io.Closer
	proxies          []*proxy  // every proxy route's, for DownUpstreams
	paths            sync.Pool // *reqPath

	// auths holds each basic_auth block's users while the routes are
	// built, so that a site's routes share one (and its verified
	// credentials).
	auths map[*config.BasicAuth]*authUsers
	// pages holds each site's error pages while the routes are built:
	// read once per site.
	pages map[*config.Site]map[int]*errorPage
	// compressors holds each compress block's compressor while the routes
	// are built, so that a site's routes share one (and its cache).
	compressors map[*config.Compress]*compressor
	// zones holds each rate_limit block's zone, once a route uses it;
	// rateLimits are the blocks and sharedZones the master's zones.
	zones       map[string]*rateZone
	rateLimits  []config.RateLimit
	sharedZones map[string]*zone.Limiter

	// limits bound what upstream responses may make a worker hold, as
	// they bound requests.
	limits config.Limits
}

// New builds the handler for cfg.Sites. It validates what config could not
// (static roots exist, upstream addresses parse) and returns wrapped errors.
// The handler also implements io.Closer; Close releases what New opened
// (open directories, upstream connection pools).
func New(cfg *config.Config, opts Options) (protocol.Handler, error) {
	logger := opts.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	h := &handler{
		fallback:    opts.Fallback,
		logger:      logger,
		draining:    opts.Draining,
		auths:       make(map[*config.BasicAuth]*authUsers),
		compressors: make(map[*config.Compress]*compressor),
		pages:       make(map[*config.Site]map[int]*errorPage),
		zones:       make(map[string]*rateZone),
		sharedZones: opts.Zones,
	}
	h.paths.New = func() any { return &reqPath{buf: make([]byte, 0, 256)} }
	var sites []config.Site
	h.limits = protocol.DefaultLimits()
	if cfg != nil {
		sites = cfg.Sites
		h.rateLimits = cfg.RateLimits
		if cfg.Limits.HeaderBytes > 0 {
			h.limits.HeaderBytes = cfg.Limits.HeaderBytes
		}
		if cfg.Limits.HeaderCount > 0 {
			h.limits.HeaderCount = cfg.Limits.HeaderCount
		}
	}
	if len(sites) == 0 && h.fallback == nil {
		h.fallback = welcomeHandler(opts.Draining)
	}
	if c, ok := h.fallback.(protocol.Compressible); ok && c.Compressible() {
		h.fallbackCompress = true
	}
	if ls, ok := h.fallback.(protocol.LoopSafe); ok && ls.LoopSafe() {
		h.fallbackSafe = true
	}
	h.noSites = len(sites) == 0
	built, err := buildSites(sites, h.newRoute, h.siteNotFound)
	if err == nil && cfg != nil {
		err = h.buildViews(cfg, built, opts.Bound)
	}
	if err != nil {
		_ = h.Close()
		return nil, err
	}
	return h, nil
}

// newRoute builds the handler of one route and its middleware.
func (h *handler) newRoute(cs *config.Site, rt config.Route) (routeHandler, error) {
	next, err := h.routeKind(cs, rt)
	if err != nil {
		return nil, err
	}
	m, err := h.compose(cs, &rt, next)
	if err != nil {
		return nil, fmt.Errorf("site %q route %q: %w", cs.Name, rt.Prefix, err)
	}
	return m, nil
}

// ProxyOnLoop reports whether route rt of site cs, a proxy route, serves
// its exchanges on the event loops (proxy_loop.go). An exchange there may
// end on a loop event, after the handler has returned: only behind
// middleware that has nothing left to do by then (error_pages looks at the
// status afterwards, compress at the body). The worker reads it for its
// scheduling policy (protocol's procs.go).
func ProxyOnLoop(cs *config.Site, rt *config.Route) bool {
	return len(cs.ErrorPages) == 0 && compressOf(cs, rt) == nil
}

// siteNotFound builds what answers a site's requests that no route
// matches, the 404 or the embedding program's handler (Options.Fallback),
// when the site's middleware must see them (its headers, checks, error
// pages, request IDs); it returns nil when the site has none.
func (h *handler) siteNotFound(cs *config.Site) (routeHandler, error) {
	var last routeHandler = notFound{}
	if h.fallback != nil {
		last = fallbackRoute{h}
	}
	m, err := h.compose(cs, nil, last)
	if err != nil {
		return nil, fmt.Errorf("site %q: %w", cs.Name, err)
	}
	if m == last {
		return nil, nil
	}
	return m, nil
}

// notFound answers 404.
type notFound struct{}

func (notFound) serveRoute(w *protocol.ResponseWriter, _ *protocol.Request, _ *reqPath) {
	writeError(w, 404)
}

// fallbackRoute runs the embedding program's handler as a site's route.
type fallbackRoute struct{ h *handler }

func (f fallbackRoute) serveRoute(w *protocol.ResponseWriter, r *protocol.Request, _ *reqPath) {
	f.h.serveFallback(w, r)
}

// routeKind builds the handler of one route's kind.
func (h *handler) routeKind(cs *config.Site, rt config.Route) (routeHandler, error) {
	site := cs.Name
	n := 0
	for _, set := range []bool{rt.Static != nil, rt.Proxy != nil, rt.Respond != nil, rt.Health != nil, rt.Redirect != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("site %q route %q: exactly one of static, proxy, respond, health, redirect is required", site, rt.Prefix)
	}
	lg := h.logger.With("site", site, "route", rt.Prefix)
	switch {
	case rt.Static != nil:
		s, err := newStatic(rt.Static, lg.Named("static"))
		if err != nil {
			return nil, fmt.Errorf("site %q route %q: %w", site, rt.Prefix, err)
		}
		s.comp = h.compressor(compressOf(cs, &rt))
		h.closers = append(h.closers, s)
		return s, nil
	case rt.Proxy != nil:
		p, err := newProxy(rt.Proxy, h.limits, lg.Named("proxy"), ProxyOnLoop(cs, &rt))
		if err != nil {
			return nil, fmt.Errorf("site %q route %q: %w", site, rt.Prefix, err)
		}
		if rt.Proxy.StripPrefix {
			p.strip = rt.Prefix
		}
		p.requestID = requestIDName(cs, &rt)
		h.closers = append(h.closers, p)
		h.proxies = append(h.proxies, p)
		return p, nil
	case rt.Health != nil:
		return newHealth(h.draining), nil
	case rt.Redirect != nil:
		rd, err := newRedirect(rt.Redirect)
		if err != nil {
			return nil, fmt.Errorf("site %q route %q: %w", site, rt.Prefix, err)
		}
		return rd, nil
	default:
		return newRespond(rt.Respond), nil
	}
}

// LoopSafe reports whether the handler may run on the server's event loops:
// the routes that wait for anything but the client (proxy, and a fallback
// that is not LoopSafe itself) move their connection off the loop first.
// Static files are read inline, as nginx reads them without its thread pool.
// With no sites and such a fallback (an application embedding forkd with a
// net/http handler), every request would leave the loop: no loops then.
func (h *handler) LoopSafe() bool { return h.fallbackSafe || !h.noSites }

// serveFallback runs the embedding application's handler (or the welcome
// page).
func (h *handler) serveFallback(w *protocol.ResponseWriter, r *protocol.Request) {
	if !h.fallbackSafe {
		w.WillBlock()
	}
	h.fallback.Serve(w, r)
}

// Serve routes r to its site and route.
func (h *handler) Serve(w *protocol.ResponseWriter, r *protocol.Request) {
	if h.noSites {
		h.serveFallback(w, r)
		return
	}
	p := h.paths.Get().(*reqPath)
	defer h.paths.Put(p)
	if !p.clean(r.Path) {
		if len(r.Path) == 1 && r.Path[0] == '*' && h.fallback != nil {
			h.serveFallback(w, r)
			return
		}
		writeError(w, 400)
		return
	}
	rh := h.routerFor(r.LocalAddr).lookup(r.Host, p.path)
	if rh == nil {
		if h.fallback != nil {
			h.serveFallback(w, r)
			return
		}
		writeError(w, 404)
		return
	}
	rh.serveRoute(w, r, p)
}

// Close releases what New opened: open directories and idle upstream
// connections.
func (h *handler) Close() error {
	var errs []error
	for _, c := range h.closers {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	h.closers = nil
	for _, z := range h.zones {
		if z.own {
			if err := z.lim.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	h.zones = nil
	return errors.Join(errs...)
}
