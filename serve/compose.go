package serve

import (
	"slices"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/protocol"
)

// compose wraps next, a route's handler (or a site's 404 when cr is nil),
// in the middleware that the site and route blocks ask for. This is the
// one place where a route's behaviour is put together: a request passes
// the wrappers in the order they are listed here, then reaches the
// handler. A route that asks for none of it is next itself, with nothing
// in front.
//
//  0. request_id, the route's or else the site's: the request's ID, kept
//     from a trusted peer or generated, in Request.ID for all below and
//     the access log.
//  1. headers: registers the header changes (the ID's field, then the
//     site's headers, then the route's), made just before the head goes
//     out, so that they reach every response below, the 403s and 401s
//     included; then compress, the route's or else the site's, which
//     decides on the fields so made whether the body is compressed
//     (static routes compress their files themselves; the embedding
//     program's handler only when marked protocol.Compressed).
//  2. error_pages of the site: once the rest has answered, an error
//     without a body of its own gets the page for its status.
//  3. rate_limit of the site, then of the route: the block's status
//     (429) with Retry-After; before the checks below, as nginx's
//     limit_req runs before its access phase, so that a flood never
//     reaches the cost of bcrypt.
//  4. allow/deny of the site, then of the route: 403.
//  5. basic_auth, the route's or else the site's: 401.
//  6. the handler.
func (h *handler) compose(cs *config.Site, cr *config.Route, next routeHandler) (routeHandler, error) {
	var route config.Route
	if cr != nil {
		route = *cr
	}

	// Built from the handler outwards: 5, 4, 3, 2, 1, 0.
	auth := route.BasicAuth
	if auth == nil {
		auth = cs.BasicAuth
	}
	if auth != nil {
		users := h.auths[auth]
		if users == nil {
			var err error
			if users, err = newAuthUsers(auth); err != nil {
				return nil, err
			}
			h.auths[auth] = users
		}
		next = &basicAuth{authUsers: users, next: next}
	}
	if l := newAccessList(route.Access, next); l != nil {
		next = l
	}
	if l := newAccessList(cs.Access, next); l != nil {
		next = l
	}
	next, err := h.newRateLimits(append(slices.Clone(cs.RateLimit), route.RateLimit...), next)
	if err != nil {
		return nil, err
	}
	if len(cs.ErrorPages) > 0 {
		pages, ok := h.pages[cs]
		if !ok {
			var err error
			if pages, err = readErrorPages(cs.ErrorPages); err != nil {
				return nil, err
			}
			h.pages[cs] = pages
		}
		next = &errorPages{pages: pages, next: next}
	}
	hdrs, err := newHeaderOps(cs.Headers, route.Headers)
	if err != nil {
		return nil, err
	}
	id := requestIDName(cs, cr)
	var hook protocol.HeadHook
	switch {
	case id != "":
		hook = &idHook{name: id, ops: hdrs}
	case hdrs != nil:
		hook = hdrs
	}
	// Static routes compress files themselves (cached, with lengths); the
	// embedding program's handler, which serves what no route matches,
	// only when it opted in.
	if z := h.compressor(compressOf(cs, cr)); z != nil && (cr != nil && cr.Static == nil || cr == nil && h.fallbackCompress) {
		hook = &compressHook{z: z, prev: hook}
	}
	if hook != nil {
		next = &withHeaders{hook: hook, next: next}
	}
	if id != "" {
		next = &requestID{name: id, next: next}
	}
	return next, nil
}

// requestIDName is the request_id field of a route: its own, else its
// site's; "" for none.
func requestIDName(cs *config.Site, cr *config.Route) string {
	if cr != nil && cr.RequestID != "" {
		return cr.RequestID
	}
	return cs.RequestID
}
