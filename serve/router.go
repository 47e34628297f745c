package serve

import (
	"fmt"
	"sort"
	"strings"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/httplex"
)

// maxHostLen bounds the Host values the router lowercases on the stack; a
// longer Host (DNS names stop at 253 bytes) can only match the "*" site.
const maxHostLen = 255

// router maps (Host, path) to a route handler. It is built once by New and
// read concurrently afterwards.
type router struct {
	exact    map[string]*site // "www.example.com"
	wildcard map[string]*site // ".example.com" for "*.example.com"
	any      *site            // "*"
}

// site is one site block's routes, longest prefix first.
type site struct {
	name   string
	routes []route
	// notFound answers the site's requests that no route matches, when
	// the site's middleware must see them (headers on its 404s); nil:
	// the handler's own 404 or fallback.
	notFound routeHandler
}

// route is one prefix and what serves it.
type route struct {
	prefix string
	slash  bool // prefix ends in '/': plain prefix match
	h      routeHandler
}

// build fills the router from the site blocks, calling mk for each route.
func (rt *router) build(sites []config.Site, mk func(site string, r config.Route) (routeHandler, error)) error {
	built, err := buildSites(sites, func(cs *config.Site, r config.Route) (routeHandler, error) { return mk(cs.Name, r) }, nil)
	if err != nil {
		return err
	}
	return rt.index(sites, built, func(int) bool { return true })
}

// buildSites makes the routes of every site block, calling mk for each
// route, once: routers for several listeners share them. notFound, when
// not nil, makes the handler of a site's requests that no route matches.
func buildSites(sites []config.Site, mk func(cs *config.Site, r config.Route) (routeHandler, error),
	notFound func(cs *config.Site) (routeHandler, error)) ([]*site, error) {
	out := make([]*site, 0, len(sites))
	for i := range sites {
		cs := &sites[i]
		s := &site{name: cs.Name}
		if notFound != nil {
			h, err := notFound(cs)
			if err != nil {
				return nil, err
			}
			s.notFound = h
		}
		seen := make(map[string]bool)
		for _, cr := range cs.Routes {
			if !strings.HasPrefix(cr.Prefix, "/") {
				return nil, fmt.Errorf("site %q: route %q: prefix must start with /", cs.Name, cr.Prefix)
			}
			if seen[cr.Prefix] {
				return nil, fmt.Errorf("site %q: route %q: duplicate prefix", cs.Name, cr.Prefix)
			}
			seen[cr.Prefix] = true
			h, err := mk(cs, cr)
			if err != nil {
				return nil, err
			}
			s.routes = append(s.routes, route{prefix: cr.Prefix, slash: strings.HasSuffix(cr.Prefix, "/"), h: h})
		}
		// Longest first, so that the first match is the longest.
		sort.SliceStable(s.routes, func(i, j int) bool { return len(s.routes[i].prefix) > len(s.routes[j].prefix) })
		out = append(out, s)
	}
	return out, nil
}

// index makes the router match the hosts of the sites include accepts
// (by index into sites; built holds their routes).
func (rt *router) index(sites []config.Site, built []*site, include func(i int) bool) error {
	rt.exact = make(map[string]*site)
	rt.wildcard = make(map[string]*site)
	for i, cs := range sites {
		if !include(i) {
			continue
		}
		s := built[i]
		hosts := cs.Hosts
		if len(hosts) == 0 {
			hosts = []string{"*"}
		}
		for _, host := range hosts {
			host = strings.TrimSuffix(strings.ToLower(host), ".")
			switch {
			case host == "*":
				if rt.any != nil {
					return fmt.Errorf("site %q: host \"*\" already used by site %q", cs.Name, rt.any.name)
				}
				rt.any = s
			case strings.HasPrefix(host, "*."):
				key := host[1:]
				if strings.Contains(key[1:], "*") || len(key) < 2 {
					return fmt.Errorf("site %q: host %q: bad wildcard", cs.Name, host)
				}
				if prev := rt.wildcard[key]; prev != nil {
					return fmt.Errorf("site %q: host %q already used by site %q", cs.Name, host, prev.name)
				}
				rt.wildcard[key] = s
			case host == "" || strings.Contains(host, "*") || len(host) > maxHostLen:
				return fmt.Errorf("site %q: bad host %q", cs.Name, host)
			case host[0] != '[' && strings.Contains(host, ":"):
				return fmt.Errorf("site %q: host %q: ports are not matched", cs.Name, host)
			default:
				if prev := rt.exact[host]; prev != nil {
					return fmt.Errorf("site %q: host %q already used by site %q", cs.Name, host, prev.name)
				}
				rt.exact[host] = s
			}
		}
	}
	return nil
}

// lookup returns the handler for the route matching host and the cleaned
// path, or nil. It does not allocate.
func (rt *router) lookup(host, path []byte) routeHandler {
	s := rt.site(host)
	if s == nil {
		return nil
	}
	for i := range s.routes {
		r := &s.routes[i]
		if matchPrefix(r, path) {
			return r.h
		}
	}
	return s.notFound
}

// matchPrefix reports whether path is under r's prefix, on a segment
// boundary (see the package documentation).
func matchPrefix(r *route, path []byte) bool {
	n := len(r.prefix)
	if len(path) < n || string(path[:n]) != r.prefix {
		return false
	}
	return r.slash || len(path) == n || path[n] == '/'
}

// site selects the site for a Host header value: exact name, then the
// longest wildcard, then "*".
func (rt *router) site(host []byte) *site {
	host = stripPort(host)
	if n := len(host); n > 0 && host[n-1] == '.' {
		host = host[:n-1]
	}
	if len(host) == 0 || len(host) > maxHostLen {
		return rt.any
	}
	var buf [maxHostLen]byte
	lower := buf[:len(host)]
	for i, c := range host {
		lower[i] = httplex.Lower(c)
	}
	if s, ok := rt.exact[string(lower)]; ok {
		return s
	}
	if len(rt.wildcard) > 0 {
		// Try ".b.example.com", ".example.com", ".com" for "a.b.example.com";
		// the first hit is the longest wildcard. The leading label must be
		// non-empty, so start after the first byte.
		for i := 1; i < len(lower); i++ {
			if lower[i] == '.' {
				if s, ok := rt.wildcard[string(lower[i:])]; ok {
					return s
				}
			}
		}
	}
	return rt.any
}

// stripPort removes a ":port" suffix from a Host value, keeping the brackets
// of an IPv6 literal ("[::1]:8080" -> "[::1]").
func stripPort(host []byte) []byte {
	if len(host) > 0 && host[0] == '[' {
		for i := 1; i < len(host); i++ {
			if host[i] == ']' {
				return host[:i+1]
			}
		}
		return host
	}
	for i := len(host) - 1; i >= 0; i-- {
		switch c := host[i]; {
		case c == ':':
			return host[:i]
		case c < '0' || c > '9':
			return host
		}
	}
	return host
}
