package serve

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/forkd/forkd/protocol"
)

// maxRequestID bounds an ID kept from a trusted peer.
const maxRequestID = 128

// requestID gives each request of a route an ID (request_id): the one a
// trusted peer (a balancer in the listener's trusted list) sent in the
// field, when well formed, else 128 random bits in hex. The ID lives in
// Request.ID (and the field's name in Request.IDField), so that everything
// after sees it: the response's field (idHook), the request sent upstream
// (proxy), the embedding program's handler (a net/http one in the field),
// and both access-log formats.
type requestID struct {
	name string
	next routeHandler
}

func (m *requestID) serveRoute(w *protocol.ResponseWriter, r *protocol.Request, p *reqPath) {
	if v := r.Header.Get(m.name); r.TrustedPeer && wellFormedID(v) {
		r.ID = append(r.ID[:0], v...)
	} else {
		r.ID = appendNewID(r.ID[:0])
	}
	r.IDField = m.name
	m.next.serveRoute(w, r, p)
}

// wellFormedID reports whether v may be kept as an ID: 1 to 128 letters,
// digits, '-', '_', '.' or ':' (UUIDs, hex, and the IDs balancers send).
func wellFormedID(v []byte) bool {
	if len(v) == 0 || len(v) > maxRequestID {
		return false
	}
	for _, c := range v {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// appendNewID appends 128 random bits as 32 hex digits.
func appendNewID(dst []byte) []byte {
	var raw [16]byte
	_, _ = rand.Read(raw[:]) // never fails (crypto/rand's documentation)
	return hex.AppendEncode(dst, raw[:])
}

// idHook sends a request's ID back in the response, then makes the
// route's header changes, if any.
type idHook struct {
	name string
	ops  *headerOps // nil without headers blocks
}

func (h *idHook) BeforeHead(w *protocol.ResponseWriter, r *protocol.Request) {
	if len(r.ID) > 0 {
		w.Header().SetBytes(h.name, r.ID)
	}
	if h.ops != nil {
		h.ops.BeforeHead(w, r)
	}
}
