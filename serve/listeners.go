package serve

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/forkd/forkd/config"
)

// listenerView is the router of the sites that serve one listener
// (site.listen), and the local addresses of that listener's connections.
// Handlers have them only when some site names its listeners: otherwise
// every listener has the same sites, and requests skip the address match.
type listenerView struct {
	unix string     // the socket's name for a unix listener, else ""
	ip   netip.Addr // the bound address; invalid for every interface
	port int
	rt   *router
}

// buildViews makes one router per listener when a site names the
// listeners it serves; h.router then holds the sites that serve every
// listener, for connections no listener matches (an embedding program's
// own listeners). bound maps a listen block's address to the address it
// was bound to (port 0 becomes a port); nil: the addresses as written.
func (h *handler) buildViews(cfg *config.Config, built []*site, bound map[string]net.Addr) error {
	sites := cfg.Sites
	named := slices.ContainsFunc(sites, func(s config.Site) bool { return s.Listen != nil })
	if !named {
		return h.router.index(sites, built, func(int) bool { return true })
	}
	if err := h.router.index(sites, built, func(i int) bool { return sites[i].Listen == nil }); err != nil {
		return err
	}
	for _, l := range cfg.Listen {
		v := listenerView{rt: &router{}}
		addr := bound[l.Address]
		if addr == nil {
			addr = configAddr(l.Address)
		}
		switch a := localAddr(addr).(type) {
		case *net.TCPAddr:
			v.port = a.Port
			if ip, ok := netip.AddrFromSlice(a.IP); ok && !ip.IsUnspecified() {
				v.ip = ip.Unmap()
			}
		case *net.UnixAddr:
			v.unix = a.Name
		default:
			continue
		}
		err := v.rt.index(sites, built, func(i int) bool {
			return sites[i].Listen == nil || l.Name != "" && slices.Contains(sites[i].Listen, l.Name)
		})
		if err != nil {
			return err
		}
		h.views = append(h.views, v)
	}
	return nil
}

// configAddr reads a listen block's address as a net.Addr: a host name
// (not resolved) reads as every interface.
func configAddr(s string) net.Addr {
	if p, ok := strings.CutPrefix(s, "unix:"); ok {
		return &net.UnixAddr{Name: p, Net: "unix"}
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return nil
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return nil
	}
	a := &net.TCPAddr{Port: n}
	if ip, err := netip.ParseAddr(host); err == nil {
		a.IP = ip.AsSlice()
	}
	return a
}

// routerFor returns the router of the listener a connection with the
// local address local arrived on: one bound to that address, else one
// bound to every interface on its port, else the sites that serve every
// listener. It does not allocate.
func (h *handler) routerFor(local net.Addr) *router {
	if h.views == nil {
		return &h.router
	}
	switch a := localAddr(local).(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		ip = ip.Unmap()
		var wild *router
		for i := range h.views {
			v := &h.views[i]
			switch {
			case v.unix != "" || v.port != a.Port:
			case !v.ip.IsValid():
				if wild == nil {
					wild = v.rt
				}
			case v.ip == ip:
				return v.rt
			}
		}
		if wild != nil {
			return wild
		}
	case *net.UnixAddr:
		for i := range h.views {
			if v := &h.views[i]; v.unix != "" && v.unix == a.Name {
				return v.rt
			}
		}
	}
	return &h.router
}
