package protocol

import (
	"strconv"
	"unsafe"

	"github.com/forkd/forkd/internal/httplex"
	"github.com/forkd/forkd/protocol/internal/wire"
)

// respField is one response header field. A value set from a []byte, or one
// that had to be cleaned, lives in the header's arena at off:off+n.
type respField struct {
	name    string
	value   string
	off, n  int
	inArena bool
}

// ResponseHeader holds the response header fields a handler sets.
//
// Content-Length, Transfer-Encoding and Connection are not stored as
// fields: the writer frames the body itself. A valid Content-Length is taken
// as the declared body length (see ResponseWriter.SetContentLength), a
// Connection value with the "close" token asks for the connection to close,
// and Transfer-Encoding is ignored. Field names that are not tokens are
// dropped, and CR, LF and other control bytes in values are replaced by
// spaces, so a handler cannot split the response.
type ResponseHeader struct {
	fields        []respField
	arena         []byte
	contentLength int64 // declared body length; -1 when none
	hasDate       bool
	close         bool
}

func (h *ResponseHeader) reset() {
	clear(h.fields)
	h.fields = h.fields[:0]
	h.arena = h.arena[:0]
	h.contentLength = -1
	h.hasDate = false
	h.close = false
}

// Set replaces any field named name.
func (h *ResponseHeader) Set(name, value string) {
	h.Del(name)
	h.Add(name, value)
}

// Add appends a field.
func (h *ResponseHeader) Add(name, value string) {
	if !h.special(name, value) {
		return
	}
	f := respField{name: name}
	if cleanValue(value) {
		f.value = value
	} else {
		f.off, f.n, f.inArena = h.store(value), len(value), true
	}
	h.fields = append(h.fields, f)
}

// SetBytes is Set without a string conversion.
func (h *ResponseHeader) SetBytes(name string, value []byte) {
	h.Del(name)
	// The string only lives for this call; special copies what it keeps.
	v := unsafe.String(unsafe.SliceData(value), len(value))
	if !h.special(name, v) {
		return
	}
	h.fields = append(h.fields, respField{name: name, off: h.store(v), n: len(v), inArena: true})
}

// Del removes every field named name.
func (h *ResponseHeader) Del(name string) {
	switch {
	case httplex.EqualFold(name, "Content-Length"):
		h.contentLength = -1
		return
	case httplex.EqualFold(name, "Connection"):
		h.close = false
		return
	case httplex.EqualFold(name, "Date"):
		h.hasDate = false
	}
	j := 0
	for _, f := range h.fields {
		if !httplex.EqualFold(f.name, name) {
			h.fields[j] = f
			j++
		}
	}
	clear(h.fields[j:])
	h.fields = h.fields[:j]
}

// Get returns the first value of name, or "".
func (h *ResponseHeader) Get(name string) string {
	switch {
	case httplex.EqualFold(name, "Content-Length"):
		if h.contentLength < 0 {
			return ""
		}
		return strconv.FormatInt(h.contentLength, 10)
	case httplex.EqualFold(name, "Connection"):
		if h.close {
			return "close"
		}
		return ""
	}
	for _, f := range h.fields {
		if httplex.EqualFold(f.name, name) {
			if f.inArena {
				return string(h.arena[f.off : f.off+f.n])
			}
			return f.value
		}
	}
	return ""
}

// Peek is Get without a copy: the string is only valid until the header
// changes, and Content-Length and Connection are not fields to it ("").
func (h *ResponseHeader) Peek(name string) string {
	for _, f := range h.fields {
		if httplex.EqualFold(f.name, name) {
			if f.inArena {
				return unsafe.String(unsafe.SliceData(h.arena[f.off:]), f.n)
			}
			return f.value
		}
	}
	return ""
}

// ContentLength is the declared body length, -1 when none.
func (h *ResponseHeader) ContentLength() int64 { return h.contentLength }

// special handles the fields the writer owns and validates name. It reports
// whether the field should be stored.
func (h *ResponseHeader) special(name, value string) bool {
	for i := 0; i < len(name); i++ {
		if !wire.IsToken(name[i]) {
			return false
		}
	}
	if len(name) == 0 {
		return false
	}
	switch len(name) {
	case 4:
		if httplex.EqualFold(name, "Date") {
			h.hasDate = true
		}
	case 10:
		if httplex.EqualFold(name, "Connection") {
			b := unsafe.Slice(unsafe.StringData(value), len(value))
			httplex.ForEachElement(b, func(el []byte) {
				if httplex.EqualFold(el, "close") {
					h.close = true
				}
			})
			return false
		}
	case 14:
		if httplex.EqualFold(name, "Content-Length") {
			if n, ok := parseDecimal(value); ok {
				h.contentLength = n
			}
			return false
		}
	case 17:
		if httplex.EqualFold(name, "Transfer-Encoding") {
			return false
		}
	}
	return true
}

// store copies v into the arena with control bytes replaced by spaces and
// returns its offset.
func (h *ResponseHeader) store(v string) int {
	off := len(h.arena)
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !wire.IsValue(c) {
			c = ' '
		}
		h.arena = append(h.arena, c)
	}
	return off
}

// appendTo writes the stored fields as field lines.
func (h *ResponseHeader) appendTo(b []byte) []byte {
	for i := range h.fields {
		f := &h.fields[i]
		b = append(b, f.name...)
		b = append(b, ": "...)
		if f.inArena {
			b = append(b, h.arena[f.off:f.off+f.n]...)
		} else {
			b = append(b, f.value...)
		}
		b = append(b, "\r\n"...)
	}
	return b
}

// cleanValue reports whether v can be sent as is: no control bytes but HTAB.
func cleanValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if !wire.IsValue(v[i]) {
			return false
		}
	}
	return true
}

// parseDecimal parses a non-negative decimal number without allocating.
func parseDecimal(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
