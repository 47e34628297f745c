package serve

import (
	"net"
	"strings"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/protocol"
)

// redirect answers every request with a redirection built from a location
// template: {host} becomes the request's host name without its port, {uri}
// the request target's path and query as received.
type redirect struct {
	status int
	parts  []redirectPart
}

// redirectPart is a literal, or a placeholder when lit is empty.
type redirectPart struct {
	lit string
	ph  byte // 'h' {host}, 'u' {uri}
}

func newRedirect(c *config.Redirect) *redirect {
	rd := &redirect{status: c.Status}
	if rd.status == 0 {
		rd.status = config.DefaultRedirectStatus
	}
	s := c.Location
	for s != "" {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			rd.parts = append(rd.parts, redirectPart{lit: s})
			break
		}
		if i > 0 {
			rd.parts = append(rd.parts, redirectPart{lit: s[:i]})
		}
		switch rest := s[i:]; {
		case strings.HasPrefix(rest, "{host}"):
			rd.parts = append(rd.parts, redirectPart{ph: 'h'})
			s = rest[len("{host}"):]
		case strings.HasPrefix(rest, "{uri}"):
			rd.parts = append(rd.parts, redirectPart{ph: 'u'})
			s = rest[len("{uri}"):]
		default: // validation refuses other placeholders; keep it literal
			rd.parts = append(rd.parts, redirectPart{lit: "{"})
			s = rest[1:]
		}
	}
	return rd
}

func (rd *redirect) serveRoute(w *protocol.ResponseWriter, r *protocol.Request, _ *reqPath) {
	var buf [256]byte
	loc := buf[:0]
	for _, p := range rd.parts {
		switch p.ph {
		case 'h':
			loc = append(loc, requestHost(r)...)
		case 'u':
			loc = append(loc, r.Path...)
			if r.Query != nil {
				loc = append(loc, '?')
				loc = append(loc, r.Query...)
			}
		default:
			loc = append(loc, p.lit...)
		}
	}
	w.Header().SetBytes("Location", loc)
	w.SetContentLength(0)
	w.WriteHeader(rd.status)
}

// requestHost is the Host header without its port or, without one, the
// address the request arrived on.
func requestHost(r *protocol.Request) []byte {
	if h := stripPort(r.Host); len(h) > 0 {
		return h
	}
	if r.LocalAddr != nil {
		if host, _, err := net.SplitHostPort(r.LocalAddr.String()); err == nil {
			if strings.Contains(host, ":") {
				return []byte("[" + host + "]")
			}
			return []byte(host)
		}
	}
	return nil
}
