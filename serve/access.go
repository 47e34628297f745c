package serve

import (
	"net/netip"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/protocol"
)

// accessList answers 403 to clients its allow and deny lists refuse, and
// passes the others on. The client's address is the request's
// RemoteAddr: after the PROXY protocol, the client the balancer names.
// A unix-socket peer has no address: it passes a deny list, and fails an
// allow list.
type accessList struct {
	allow, deny []netip.Prefix
	next        routeHandler
}

// newAccessList returns nil when a has no allow or deny entries.
func newAccessList(a config.Access, next routeHandler) *accessList {
	if len(a.Allow) == 0 && len(a.Deny) == 0 {
		return nil
	}
	allow, deny := a.Prefixes()
	return &accessList{allow: allow, deny: deny, next: next}
}

// admits reports whether a client at addr may pass: deny wins over allow.
func (l *accessList) admits(addr netip.Addr, ok bool) bool {
	if !ok {
		return len(l.allow) == 0
	}
	addr = addr.Unmap()
	if contains(l.deny, addr) {
		return false
	}
	return len(l.allow) == 0 || contains(l.allow, addr)
}

// contains reports whether one of nets contains addr.
func contains(nets []netip.Prefix, addr netip.Addr) bool {
	for _, n := range nets {
		if n.Contains(addr) {
			return true
		}
	}
	return false
}

func (l *accessList) serveRoute(w *protocol.ResponseWriter, r *protocol.Request, p *reqPath) {
	ap, ok := addrPort(r.RemoteAddr)
	if !l.admits(ap.Addr(), ok) {
		writeError(w, 403)
		return
	}
	l.next.serveRoute(w, r, p)
}
