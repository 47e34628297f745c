package protocol

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"github.com/forkd/forkd/internal/httplex"
)

// FromHTTP adapts a net/http Handler to the native API. See the package
// documentation for what the adapter does not do.
func FromHTTP(h http.Handler) Handler { return httpAdapter{h: h} }

type httpAdapter struct{ h http.Handler }

// Serve builds an *http.Request from r and calls the net/http handler.
func (a httpAdapter) Serve(w *ResponseWriter, r *Request) {
	req, ok := newHTTPRequest(r)
	if !ok {
		w.SetClose()
		w.WriteHeader(http.StatusBadRequest)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteString("400 Bad Request\n")
		return
	}
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), http.LocalAddrContextKey, r.LocalAddr))
	defer cancel()
	req = req.WithContext(ctx)
	if r.ContentLength != 0 {
		req.Body = &httpBody{r: r, req: req}
	}
	hw := &httpWriter{w: w, header: make(http.Header)}
	a.h.ServeHTTP(hw, req)
	if !hw.w.hijacked {
		hw.commit(http.StatusOK)
	}
}

// newHTTPRequest converts r the way net/http's server would have parsed it.
func newHTTPRequest(r *Request) (*http.Request, bool) {
	target := string(r.Target)
	var u *url.URL
	if target == "*" {
		u = &url.URL{Path: "*"}
	} else {
		var err error
		if u, err = url.ParseRequestURI(target); err != nil {
			return nil, false
		}
	}
	hdr := make(http.Header, r.Header.Len())
	var trailer http.Header
	for i := 0; i < r.Header.Len(); i++ {
		f := r.Header.At(i)
		k := textproto.CanonicalMIMEHeaderKey(string(f.Name))
		switch k {
		case "Host":
			continue // in req.Host, as net/http does
		case "Transfer-Encoding":
			continue // in req.TransferEncoding
		case "Trailer":
			// Announced trailers are keys with no values until the body's
			// EOF, as in net/http.
			httplex.ForEachElement(f.Value, func(el []byte) {
				if trailer == nil {
					trailer = make(http.Header)
				}
				trailer[textproto.CanonicalMIMEHeaderKey(string(el))] = nil
			})
		}
		hdr[k] = append(hdr[k], string(f.Value))
	}
	req := &http.Request{
		Method:        method(r.Method),
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    r.ProtoMajor,
		ProtoMinor:    r.ProtoMinor,
		Header:        hdr,
		Body:          http.NoBody,
		ContentLength: r.ContentLength,
		Close:         r.Close,
		Host:          string(r.Host),
		RequestURI:    target,
		Trailer:       trailer,
	}
	if r.ProtoMinor == 0 {
		req.Proto = "HTTP/1.0"
	}
	if r.chunked {
		req.TransferEncoding = []string{"chunked"}
	}
	if r.RemoteAddr != nil {
		req.RemoteAddr = r.RemoteAddr.String()
	}
	return req, true
}

// method returns common methods without allocating.
func method(b []byte) string {
	switch string(b) {
	case "GET":
		return http.MethodGet
	case "HEAD":
		return http.MethodHead
	case "POST":
		return http.MethodPost
	case "PUT":
		return http.MethodPut
	case "DELETE":
		return http.MethodDelete
	case "OPTIONS":
		return http.MethodOptions
	case "PATCH":
		return http.MethodPatch
	}
	return string(b)
}

// httpBody is the request body; at EOF it fills req.Trailer.
type httpBody struct {
	r   *Request
	req *http.Request
	eof bool
}

func (b *httpBody) Read(p []byte) (int, error) {
	n, err := b.r.Body.Read(p)
	if err == io.EOF && !b.eof {
		b.eof = true
		for i := 0; i < b.r.Trailer.Len(); i++ {
			f := b.r.Trailer.At(i)
			if b.req.Trailer == nil {
				b.req.Trailer = make(http.Header)
			}
			k := textproto.CanonicalMIMEHeaderKey(string(f.Name))
			b.req.Trailer[k] = append(b.req.Trailer[k], string(f.Value))
		}
	}
	return n, err
}

// Close does nothing: the server drains or discards what is left.
func (b *httpBody) Close() error { return nil }

// httpWriter is the http.ResponseWriter (with Flusher, Hijacker and
// io.ReaderFrom) over a native ResponseWriter.
type httpWriter struct {
	w           *ResponseWriter
	header      http.Header
	wroteHeader bool
}

func (hw *httpWriter) Header() http.Header { return hw.header }

func (hw *httpWriter) WriteHeader(code int) {
	if hw.wroteHeader || hw.w.hijacked {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		hw.copyHeader()
		hw.w.WriteHeader(code)
		return
	}
	hw.commit(code)
}

// commit copies the header map into the native header and fixes the status.
func (hw *httpWriter) commit(code int) {
	if hw.wroteHeader {
		return
	}
	hw.wroteHeader = true
	hw.copyHeader()
	hw.w.WriteHeader(code)
}

func (hw *httpWriter) copyHeader() {
	h := hw.w.Header()
	h.reset()
	for k, vs := range hw.header {
		if strings.HasPrefix(k, http.TrailerPrefix) || k == "Trailer" {
			continue // response trailers are not supported
		}
		for _, v := range vs {
			h.Add(k, v)
		}
	}
}

func (hw *httpWriter) Write(p []byte) (int, error) {
	if !hw.wroteHeader {
		// net/http sniffs a missing Content-Type from the first bytes.
		if _, ok := hw.header["Content-Type"]; !ok && len(p) > 0 && hw.header.Get("Transfer-Encoding") == "" {
			hw.header.Set("Content-Type", http.DetectContentType(p))
		}
		hw.commit(http.StatusOK)
	}
	return hw.w.Write(p)
}

func (hw *httpWriter) WriteString(s string) (int, error) {
	if !hw.wroteHeader {
		return hw.Write([]byte(s))
	}
	return hw.w.WriteString(s)
}

// ReadFrom lets io.Copy from an *os.File use sendfile(2) when the handler
// set Content-Length.
func (hw *httpWriter) ReadFrom(r io.Reader) (int64, error) {
	hw.commit(http.StatusOK)
	return hw.w.ReadFrom(r)
}

// Flush implements http.Flusher.
func (hw *httpWriter) Flush() {
	hw.commit(http.StatusOK)
	hw.w.Flush()
}

// FlushError is Flush with its error, for http.ResponseController.
func (hw *httpWriter) FlushError() error {
	hw.commit(http.StatusOK)
	return hw.w.Flush()
}

// Hijack implements http.Hijacker.
func (hw *httpWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return hw.w.Hijack()
}
