package serve

import (
	"github.com/forkd/forkd/config"
)

// compose wraps next, a route's handler (or a site's 404 when cr is nil),
// in the middleware that the site and route blocks ask for. This is the
// one place where a route's behaviour is put together; read it from the
// bottom up to follow a request in, outermost wrapper last. A route that
// asks for none of it is next itself, with nothing in front.
func (h *handler) compose(cs *config.Site, cr *config.Route, next routeHandler) (routeHandler, error) {
	var routeHeaders *config.Headers
	if cr != nil {
		routeHeaders = cr.Headers
	}

	// Response headers: set just before the head goes out, on whatever
	// answers, the checks above's 401 and 403 and the handler's errors
	// included; the wrapper only registers them.
	hdrs, err := newHeaderOps(cs.Headers, routeHeaders)
	if err != nil {
		return nil, err
	}
	if hdrs != nil {
		next = &withHeaders{ops: hdrs, next: next}
	}
	return next, nil
}
