package protocol

// STUB: signatures only. The protocol implementer replaces this file with the
// real implementation (request.go, header.go, response.go, server.go, ...),
// keeping every exported name and signature below.

import (
	"context"
	"io"
	"net"
	"net/http"

	"github.com/hashicorp/go-hclog"
)

// Field is one header field as received; Name and Value alias the read buffer.
type Field struct {
	Name  []byte
	Value []byte
}

// Header is the ordered list of request header fields.
type Header struct{ fields []Field }

// Get returns the value of the first field named name (ASCII case-insensitive), or nil.
func (h *Header) Get(name string) []byte { return nil }

// Len returns the number of fields.
func (h *Header) Len() int { return len(h.fields) }

// At returns field i.
func (h *Header) At(i int) Field { return h.fields[i] }

// Request is one parsed request. Byte slices alias connection buffers and are
// valid only until the handler returns.
type Request struct {
	Method        []byte
	Target        []byte // the request-target exactly as received
	Path          []byte // path part of the target, still percent-encoded ("*" for OPTIONS *)
	Query         []byte // after '?', without it; nil when absent
	Host          []byte // Host header (or authority of an absolute-form target)
	ProtoMajor    int
	ProtoMinor    int
	Header        Header
	ContentLength int64 // -1 when the body is chunked; 0 when there is none
	Close         bool  // the connection closes after this response
	Body          io.Reader
	RemoteAddr    net.Addr
	LocalAddr     net.Addr
	TLS           bool // always false today; reserved
}

// ResponseHeader holds the response header fields a handler sets.
type ResponseHeader struct{}

// Set replaces any field named name.
func (h *ResponseHeader) Set(name, value string) {}

// Add appends a field.
func (h *ResponseHeader) Add(name, value string) {}

// Del removes every field named name.
func (h *ResponseHeader) Del(name string) {}

// Get returns the first value of name, or "".
func (h *ResponseHeader) Get(name string) string { return "" }

// SetBytes is Set without a string conversion.
func (h *ResponseHeader) SetBytes(name string, value []byte) {}

// ResponseWriter writes one response. Without an explicit Content-Length the
// body is buffered; if the handler returns with the whole body in the buffer,
// Content-Length is set, otherwise HTTP/1.1 gets chunked encoding and 1.0 is
// close-delimited. HEAD responses carry headers only.
type ResponseWriter struct{}

// Header returns the header fields to send; changes after the first body byte
// is flushed have no effect.
func (w *ResponseWriter) Header() *ResponseHeader { return nil }

// WriteHeader sets the status code (default 200).
func (w *ResponseWriter) WriteHeader(status int) {}

// SetContentLength declares the body length up front (for streaming).
func (w *ResponseWriter) SetContentLength(n int64) {}

// Write appends to the body.
func (w *ResponseWriter) Write(p []byte) (int, error) { return 0, nil }

// WriteString appends to the body.
func (w *ResponseWriter) WriteString(s string) (int, error) { return 0, nil }

// ReadFrom copies r to the body; an *os.File with a declared Content-Length
// goes out with sendfile(2).
func (w *ResponseWriter) ReadFrom(r io.Reader) (int64, error) { return 0, nil }

// SendFile sends n bytes of f from offset with sendfile(2) (zero-copy).
// SetContentLength must have been called for the full body length.
func (w *ResponseWriter) SendFile(f interface{ Fd() uintptr }, offset, n int64) error { return nil }

// Flush sends the status line, headers and buffered body now.
func (w *ResponseWriter) Flush() error { return nil }

// Status returns the status code sent or to be sent.
func (w *ResponseWriter) Status() int { return 0 }

// BytesWritten returns the body bytes written so far.
func (w *ResponseWriter) BytesWritten() int64 { return 0 }

// SetClose marks the connection to close after this response (Connection: close).
func (w *ResponseWriter) SetClose() {}

// Stats are a Server's counters, read atomically.
type Stats struct {
	Requests  uint64 // responses completed since start
	OpenConns int64
	Status2xx uint64
	Status3xx uint64
	Status4xx uint64
	Status5xx uint64
	Accepted  uint64
}

// Server serves a Handler on listeners.
type Server struct {
	Handler Handler
	Limits  Limits
	Logger  hclog.Logger
	Log     LogFunc // optional, called after each request
	// OnRequestDone is called after each completed response; the worker uses it
	// for max_requests. Optional.
	OnRequestDone func()
}

// Serve accepts connections on ln until Shutdown or Close; it returns
// ErrServerClosed after a Shutdown/Close.
func (s *Server) Serve(ln net.Listener) error { return nil }

// Shutdown stops accepting, lets in-flight requests finish (their responses
// get Connection: close), closes connections that stay idle past a short grace,
// and returns when all are gone or ctx ends (then it closes the rest).
func (s *Server) Shutdown(ctx context.Context) error { return nil }

// Close closes listeners and every connection now.
func (s *Server) Close() error { return nil }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats { return Stats{} }

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = http.ErrServerClosed

// FromHTTP adapts a net/http Handler to the native API.
func FromHTTP(h http.Handler) Handler { return nil }
