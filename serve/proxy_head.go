package serve

import (
	"bytes"
	"net"
	"net/netip"
	"strconv"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/httplex"
	"github.com/forkd/forkd/internal/tlsconn"
	"github.com/forkd/forkd/protocol"
	"github.com/forkd/forkd/protocol/upstream"
)

// isUpgrade reports whether r asks to switch to a protocol p tunnels
// (RFC 9110 §7.8): an HTTP/1.1 request with Upgrade, named in Connection,
// whose every protocol is in upgrades. A request asking for another one
// (h2c above all: an HTTP/2 connection to the upstream would reach any of
// its paths past the routes) goes on as a plain request, without its
// Upgrade and Connection, as nginx sends an Upgrade it was not told to
// pass on; the client carries on over HTTP/1.1.
func (p *proxy) isUpgrade(r *protocol.Request) bool {
	v := r.Header.Get("Upgrade")
	if r.ProtoMinor == 0 || v == nil {
		return false
	}
	asked := false
	for i := 0; i < r.Header.Len(); i++ {
		f := r.Header.At(i)
		if httplex.EqualFold(f.Name, "Connection") && httplex.HasToken(f.Value, "upgrade") {
			asked = true
			break
		}
	}
	if !asked {
		return false
	}
	if !p.upgradeAllowed(v) {
		// Which protocol it was is the client's bytes: not logged.
		p.logger.Debug("upgrade not tunnelled; sent as a plain request", "h2c", httplex.HasToken(v, config.UpgradeH2C))
		return false
	}
	return true
}

// upgradeAllowed reports whether v, an Upgrade field value, names at least
// one protocol and only protocols in upgrades (compared without case, a
// "/version" ignored).
func (p *proxy) upgradeAllowed(v []byte) bool {
	ok, n := true, 0
	httplex.ForEachElement(v, func(el []byte) {
		n++
		if i := bytes.IndexByte(el, '/'); i >= 0 {
			el = el[:i]
		}
		if len(el) == len(config.UpgradeH2C) && httplex.EqualFold(el, config.UpgradeH2C) {
			ok = false
			return
		}
		for _, u := range p.upgrades {
			if len(el) == len(u) && httplex.EqualFold(el, u) {
				return
			}
		}
		ok = false
	})
	return ok && n > 0
}

// responseUpgrade is the Upgrade field of a response, or nil.
func responseUpgrade(resp *upstream.Response) []byte {
	for _, f := range resp.Fields {
		if len(f.Name) == 7 && httplex.EqualFold(f.Name, "Upgrade") {
			return f.Value
		}
	}
	return nil
}

// dropField reports whether request_headers removes or replaces the
// client's field name.
func (p *proxy) dropField(name []byte) bool {
	if p.requestID != "" && httplex.EqualFold(name, p.requestID) {
		return true
	}
	for _, n := range p.reqRemove {
		if httplex.EqualFold(name, n) {
			return true
		}
	}
	for i := range p.reqSet {
		if httplex.EqualFold(name, p.reqSet[i].name) {
			return true
		}
	}
	return false
}

// appendHead writes the request head sent upstream.
func (p *proxy) appendHead(b []byte, r *protocol.Request, rp *reqPath, be *backend, upgrade bool,
	bodyLen int, streaming bool, streamLen int64) []byte {
	b = append(b, r.Method...)
	b = append(b, ' ')
	switch {
	case p.strip != "":
		// The route matched, so the cleaned path starts with the prefix;
		// what is left is sent from the root ("/api/" and "/api/users"
		// give "/users", "/api" and "/api" give "/").
		rest := rp.path[min(len(p.strip), len(rp.path)):]
		if len(rest) == 0 || rest[0] != '/' {
			b = append(b, '/')
		}
		b = appendEscapedPath(b, rest)
	case rp.flags&pathNormalized == 0:
		b = append(b, r.Path...)
	default:
		b = appendEscapedPath(b, rp.path)
	}
	if r.Query != nil {
		b = append(b, '?')
		b = append(b, r.Query...)
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	switch {
	case p.host != "":
		b = append(b, p.host...)
	case len(r.Host) > 0:
		b = append(b, r.Host...)
	default:
		b = append(b, "localhost"...) // an HTTP/1.0 request without Host
	}
	b = append(b, "\r\n"...)

	// The Connection fields name more hop-by-hop fields (RFC 9110 §7.6.1).
	var connBuf [4][]byte
	conn := connBuf[:0]
	for i := 0; i < r.Header.Len(); i++ {
		if f := r.Header.At(i); httplex.EqualFold(f.Name, "Connection") {
			conn = append(conn, f.Value)
		}
	}
	// The forwarding fields are believed from a trusted peer (a balancer
	// in the listener's trusted list) and kept, X-Forwarded-For with the
	// client's address appended; from anyone else they are dropped and
	// forkd's own sent instead (Caddy's trusted_proxies).
	trusted := r.TrustedPeer
	xff, xfp, xfh := false, false, false
	for i := 0; i < r.Header.Len(); i++ {
		f := r.Header.At(i)
		if skipRequestField(f.Name) || namedIn(conn, f.Name) || (p.reqSet != nil || p.requestID != "") && p.dropField(f.Name) {
			continue
		}
		switch forwardingField(f.Name) {
		case fwdNone:
		case fwdFor:
			xff = trusted // sent below, in one field with the client's address
			continue
		case fwdProto:
			if !trusted {
				continue
			}
			xfp = true
		case fwdHost:
			if !trusted {
				continue
			}
			xfh = true
		default:
			if !trusted {
				continue
			}
		}
		b = append(b, f.Name...)
		b = append(b, ": "...)
		b = append(b, f.Value...)
		b = append(b, "\r\n"...)
	}
	if p.requestID != "" && len(r.ID) > 0 {
		b = append(b, p.requestID...)
		b = append(b, ": "...)
		b = append(b, r.ID...)
		b = append(b, "\r\n"...)
	}
	for i := range p.reqSet {
		f := &p.reqSet[i]
		b = append(b, f.name...)
		b = append(b, ": "...)
		if f.tmpl != nil {
			b = f.tmpl.appendTo(b, r, rp)
		} else {
			b = append(b, f.value...)
		}
		b = append(b, "\r\n"...)
	}
	ap, tcp := addrPort(r.RemoteAddr)
	if xff || tcp {
		b = append(b, "X-Forwarded-For: "...)
		sep := false
		for i := 0; xff && i < r.Header.Len(); i++ {
			if f := r.Header.At(i); len(f.Name) == 15 && httplex.EqualFold(f.Name, "X-Forwarded-For") {
				if sep {
					b = append(b, ", "...)
				}
				b = append(b, f.Value...)
				sep = true
			}
		}
		// The address is the client's as the connection knows it (from a
		// PROXY header when the listener takes one).
		if tcp {
			if sep {
				b = append(b, ", "...)
			}
			b = ap.Addr().Unmap().AppendTo(b)
		}
		b = append(b, "\r\n"...)
	}
	switch {
	case xfp:
	case tlsconn.IsTLS(r.LocalAddr):
		b = append(b, "X-Forwarded-Proto: https\r\n"...)
	default:
		b = append(b, "X-Forwarded-Proto: http\r\n"...)
	}
	if len(r.Host) > 0 && !xfh {
		b = append(b, "X-Forwarded-Host: "...)
		b = append(b, r.Host...)
		b = append(b, "\r\n"...)
	}
	if p.via {
		// A field of its own: repeated fields are one list (RFC 9110 §5.3).
		b = append(b, "Via: 1.1 forkd\r\n"...)
	}
	switch {
	case streaming && streamLen < 0:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	case streaming:
		b = appendContentLength(b, streamLen)
	case bodyLen > 0 || r.ContentLength != 0 || r.Header.Get("Content-Length") != nil:
		b = appendContentLength(b, int64(bodyLen))
	}
	if upgrade {
		b = append(b, "Connection: upgrade\r\nUpgrade: "...)
		b = append(b, r.Header.Get("Upgrade")...)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...)
}

func appendContentLength(b []byte, n int64) []byte {
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, n, 10)
	return append(b, "\r\n"...)
}

// addrPort returns the IP and port of a TCP peer.
func addrPort(a net.Addr) (netip.AddrPort, bool) {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort(), true
	}
	return netip.AddrPort{}, false
}

// skipRequestField reports whether a client field is not sent upstream as
// it is: hop-by-hop fields, the framing (set for the upstream's own), Host
// (sent first), Expect (100-continue is the protocol's business with the
// client), and HTTP2-Settings (a connection-specific field of the h2c
// upgrade, RFC 7540 §3.2.1, which is never tunnelled).
func skipRequestField(name []byte) bool {
	switch len(name) {
	case 2:
		return httplex.EqualFold(name, "TE")
	case 4:
		return httplex.EqualFold(name, "Host")
	case 6:
		return httplex.EqualFold(name, "Expect")
	case 14:
		return httplex.EqualFold(name, "Content-Length") || httplex.EqualFold(name, "HTTP2-Settings")
	}
	return hopByHop(name)
}

// The forwarding fields: who the client is, as proxies before forkd tell.
const (
	fwdNone  = iota
	fwdFor   // X-Forwarded-For
	fwdProto // X-Forwarded-Proto
	fwdHost  // X-Forwarded-Host
	fwdOther // Forwarded (RFC 7239), X-Real-IP
)

// forwardingField reports which forwarding field name is, if any.
func forwardingField(name []byte) int {
	switch len(name) {
	case 9:
		switch {
		case httplex.EqualFold(name, "Forwarded"), httplex.EqualFold(name, "X-Real-IP"):
			return fwdOther
		}
	case 15:
		if httplex.EqualFold(name, "X-Forwarded-For") {
			return fwdFor
		}
	case 16:
		if httplex.EqualFold(name, "X-Forwarded-Host") {
			return fwdHost
		}
	case 17:
		if httplex.EqualFold(name, "X-Forwarded-Proto") {
			return fwdProto
		}
	}
	return fwdNone
}

// hopByHop reports whether a field is hop-by-hop (RFC 9110 §7.6.1, plus
// the Proxy-* family and the obsolete Keep-Alive).
func hopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return httplex.EqualFold(name, "TE")
	case 7:
		return httplex.EqualFold(name, "Trailer") || httplex.EqualFold(name, "Upgrade")
	case 10:
		return httplex.EqualFold(name, "Connection") || httplex.EqualFold(name, "Keep-Alive")
	case 17:
		return httplex.EqualFold(name, "Transfer-Encoding")
	}
	return len(name) > 6 && httplex.EqualFold(name[:6], "Proxy-")
}

// namedIn reports whether name is an option of the Connection values.
func namedIn(conn [][]byte, name []byte) bool {
	for _, v := range conn {
		found := false
		httplex.ForEachElement(v, func(el []byte) {
			if len(el) == len(name) && httplex.EqualFold(el, string(name)) {
				found = true
			}
		})
		if found {
			return true
		}
	}
	return false
}
