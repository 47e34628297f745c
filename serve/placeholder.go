package serve

import (
	"net"
	"strconv"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/tlsconn"
	"github.com/forkd/forkd/protocol"
)

// template is a string with placeholders (config.Placeholder), parsed once
// and expanded for each request: a redirect's location now, header values
// and rate-limit keys as they come. Expanding appends to a buffer the
// caller provides and allocates nothing.
type template struct {
	parts []config.TemplatePart
}

// newTemplate parses s; validation has refused unknown placeholders
// already, with the line they are on.
func newTemplate(s string) (*template, error) {
	parts, err := config.ParseTemplate(s)
	if err != nil {
		return nil, err
	}
	return &template{parts: parts}, nil
}

// appendTo appends t expanded for r, whose path cleaned by the router is
// p, to dst.
func (t *template) appendTo(dst []byte, r *protocol.Request, p *reqPath) []byte {
	for i := range t.parts {
		part := &t.parts[i]
		switch part.Kind {
		case config.Literal:
			dst = append(dst, part.Text...)
		case config.PlaceholderHost:
			dst = appendRequestHost(dst, r)
		case config.PlaceholderPort:
			dst = appendLocalPort(dst, r.LocalAddr)
		case config.PlaceholderScheme:
			if tlsconn.IsTLS(r.LocalAddr) {
				dst = append(dst, "https"...)
			} else {
				dst = append(dst, "http"...)
			}
		case config.PlaceholderURI:
			dst = appendCleanURI(dst, r.Path, r.Query, p)
		case config.PlaceholderPath:
			dst = appendCleanPath(dst, r.Path, p)
		case config.PlaceholderQuery:
			dst = append(dst, r.Query...)
		case config.PlaceholderRemoteAddr:
			if ap, ok := addrPort(r.RemoteAddr); ok {
				dst = ap.Addr().Unmap().AppendTo(dst)
			}
		case config.PlaceholderHeader:
			dst = append(dst, r.Header.Get(part.Text)...)
		}
	}
	return dst
}

// appendCleanURI appends the normalised path (appendCleanPath) and, when
// the target had one, "?" and the query as received.
func appendCleanURI(dst, path, query []byte, p *reqPath) []byte {
	dst = appendCleanPath(dst, path, p)
	if query != nil {
		dst = append(dst, '?')
		dst = append(dst, query...)
	}
	return dst
}

// appendCleanPath appends the request path raw, normalised: as received
// when it was already canonical, else p's path (decoded and cleaned by the
// router: dot segments resolved, repeated slashes collapsed, see
// reqPath.clean) percent-encoded again. Either way it starts with a single
// '/' that neither a second '/' nor a '\' follows, so that a Location
// built from it cannot name another host ("//evil.example" and
// "/\evil.example" are network-path references to browsers). A canonical
// raw path is one that cleaning did not change and that holds no
// backslash, decoded or not, and no byte a path must encode.
func appendCleanPath(dst, raw []byte, p *reqPath) []byte {
	if p.flags&(pathNormalized|pathBackslash) == 0 && canonicalBytes(raw) {
		return append(dst, raw...)
	}
	return appendEscapedPath(dst, p.path)
}

// canonicalBytes reports whether raw holds only bytes a path may carry
// unencoded, and percent signs.
func canonicalBytes(raw []byte) bool {
	for _, c := range raw {
		if c != '%' && shouldEscape(c) {
			return false
		}
	}
	return true
}

// appendRequestHost appends the Host header without its port or, without
// one, the address the request arrived on.
func appendRequestHost(dst []byte, r *protocol.Request) []byte {
	if h := stripPort(r.Host); len(h) > 0 {
		return append(dst, h...)
	}
	ap, ok := addrPort(localAddr(r.LocalAddr))
	if !ok {
		return dst
	}
	a := ap.Addr().Unmap()
	if !a.Is6() {
		return a.AppendTo(dst)
	}
	dst = append(dst, '[')
	dst = a.WithZone("").AppendTo(dst)
	return append(dst, ']')
}

// appendLocalPort appends the port the connection arrived on; nothing on a
// unix socket.
func appendLocalPort(dst []byte, a net.Addr) []byte {
	if ap, ok := addrPort(localAddr(a)); ok {
		return strconv.AppendUint(dst, uint64(ap.Port()), 10)
	}
	return dst
}

// localAddr unwraps the TLS marker of a local address.
func localAddr(a net.Addr) net.Addr {
	if t, ok := a.(tlsconn.Addr); ok {
		return t.Addr
	}
	return a
}
