package protocol

import (
	"io"
	"net"

	"github.com/forkd/forkd/internal/httplex"
)

// Field is one header field as received; Name and Value alias the read buffer.
type Field struct {
	Name  []byte
	Value []byte
}

// Header is the ordered list of request header fields.
type Header struct{ fields []Field }

// Get returns the value of the first field named name (ASCII case-insensitive), or nil.
func (h *Header) Get(name string) []byte {
	for i := range h.fields {
		f := &h.fields[i]
		if len(f.Name) == len(name) && httplex.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return nil
}

// Len returns the number of fields.
func (h *Header) Len() int { return len(h.fields) }

// At returns field i.
func (h *Header) At(i int) Field { return h.fields[i] }

func (h *Header) reset() {
	clear(h.fields)
	h.fields = h.fields[:0]
}

// Request is one parsed request. Byte slices alias connection buffers and are
// valid only until the handler returns.
type Request struct {
	Method []byte
	Target []byte // the request-target exactly as received
	Path   []byte // path part of the target, still percent-encoded ("*" for OPTIONS *)
	Query  []byte // after '?', without it; nil when absent
	Host   []byte // Host header (or authority of an absolute-form target)
	// ProtoMajor and ProtoMinor are the version of the HTTP/1.x message
	// the engine parsed, which decides its framing: 1.1 for an HTTP/2
	// stream's request (see Proto).
	ProtoMajor    int
	ProtoMinor    int
	Header        Header
	ContentLength int64 // -1 when the body is chunked; 0 when there is none
	Close         bool  // the connection closes after this response
	Body          io.Reader
	RemoteAddr    net.Addr
	LocalAddr     net.Addr
	// TrustedPeer reports whether the connection's peer is in its
	// listener's ListenOptions.Trusted: a proxy whose forwarding headers
	// (X-Forwarded-For, Forwarded...) may be believed. On a PROXY protocol
	// listener the peer judged is the client the header names (the
	// balancer only for a LOCAL header): the balancer vouches for the
	// address, not for the headers its clients typed. Peers of a unix
	// socket are trusted.
	TrustedPeer bool
	// ID is the request's ID when route middleware gave it one (serve's
	// request_id): kept from a trusted peer or generated. Access logs
	// write it; it is empty otherwise. IDField names the header field
	// that carries it: a net/http handler (FromHTTP) sees the ID there,
	// in place of what the client sent.
	ID      []byte
	IDField string

	// Trailer holds the trailer fields of a chunked body once Body has
	// returned io.EOF (RFC 9112 §7.1.2). It is empty before that.
	Trailer Header

	chunked        bool // Transfer-Encoding: chunked
	expectContinue bool // Expect: 100-continue on an HTTP/1.1 request
	h2             bool // the request came on an HTTP/2 stream (HTTP2Stream); kept by reset
	slash          [1]byte
}

// Proto returns the protocol the client spoke: "HTTP/2.0" for a request
// that came on an HTTP/2 stream (served through an HTTP2Stream), else the
// HTTP/1.x version of the message, "HTTP/1.1" or "HTTP/1.0".
func (r *Request) Proto() string {
	switch {
	case r.h2:
		return "HTTP/2.0"
	case r.ProtoMinor == 0:
		return "HTTP/1.0"
	default:
		return "HTTP/1.1"
	}
}

// reset clears r for the next request, keeping its slices' capacity.
func (r *Request) reset() {
	r.Method, r.Target, r.Path, r.Query, r.Host = nil, nil, nil, nil, nil
	r.ProtoMajor, r.ProtoMinor = 0, 0
	r.Header.reset()
	r.Trailer.reset()
	r.ContentLength = 0
	r.ID, r.IDField = r.ID[:0], ""
	r.Close = false
	r.chunked = false
	r.expectContinue = false
}
