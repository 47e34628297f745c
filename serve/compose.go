package serve

import (
	"github.com/forkd/forkd/config"
)

// compose wraps next, a route's handler (or a site's 404 when cr is nil),
// in the middleware that the site and route blocks ask for. This is the
// one place where a route's behaviour is put together: a request passes
// the wrappers in the order they are listed here, then reaches the
// handler. A route that asks for none of it is next itself, with nothing
// in front.
//
//  1. headers: registers the header changes (site's, then route's), made
//     just before the head goes out, so that they reach every response
//     below, the 403s and 401s included.
//  2. error_pages of the site: once the rest has answered, an error
//     without a body of its own gets the page for its status.
//  3. allow/deny of the site, then of the route: 403.
//  4. basic_auth, the route's or else the site's: 401.
//  5. the handler.
func (h *handler) compose(cs *config.Site, cr *config.Route, next routeHandler) (routeHandler, error) {
	var route config.Route
	if cr != nil {
		route = *cr
	}

	// Built from the handler outwards: 4, 3, 2, 1.
	auth := route.BasicAuth
	if auth == nil {
		auth = cs.BasicAuth
	}
	if auth != nil {
		a, err := newBasicAuth(auth, next)
		if err != nil {
			return nil, err
		}
		next = a
	}
	if l := newAccessList(route.Access, next); l != nil {
		next = l
	}
	if l := newAccessList(cs.Access, next); l != nil {
		next = l
	}
	pages, err := newErrorPages(cs.ErrorPages, next)
	if err != nil {
		return nil, err
	}
	if pages != nil {
		next = pages
	}
	hdrs, err := newHeaderOps(cs.Headers, route.Headers)
	if err != nil {
		return nil, err
	}
	if hdrs != nil {
		next = &withHeaders{ops: hdrs, next: next}
	}
	return next, nil
}
