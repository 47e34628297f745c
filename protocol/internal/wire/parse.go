package wire

import "net/http"

// NeedMore is the status of a parse that reached the end of its input
// before the syntax it parses ended.
const NeedMore = -1

// ParseFieldLine parses one field line at b[pos:] (RFC 9112 §5):
// field-name ":" OWS field-value OWS CRLF. It returns a nil name and the
// position after the CRLF at the empty line that ends a field section.
// Whitespace before the colon, obs-fold, bare CR or LF and bytes outside
// field-vchar are errors (400).
func ParseFieldLine(b []byte, pos int) (name, value []byte, next, status int) {
	i := pos
	if i >= len(b) {
		return nil, nil, 0, NeedMore
	}
	switch b[i] {
	case '\r':
		if i+1 >= len(b) {
			return nil, nil, 0, NeedMore
		}
		if b[i+1] != '\n' {
			return nil, nil, 0, http.StatusBadRequest
		}
		return nil, nil, i + 2, 0
	case ' ', '\t':
		// obs-fold (RFC 9112 §5.2) or whitespace before the first field.
		return nil, nil, 0, http.StatusBadRequest
	}
	for i < len(b) && IsToken(b[i]) {
		i++
	}
	if i == len(b) {
		return nil, nil, 0, NeedMore
	}
	// RFC 9112 §5.1: no whitespace between the name and the colon.
	if b[i] != ':' || i == pos {
		return nil, nil, 0, http.StatusBadRequest
	}
	name = b[pos:i]
	i++
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	vs := i
	for i < len(b) && IsValue(b[i]) {
		i++
	}
	if i+1 >= len(b) {
		return nil, nil, 0, NeedMore
	}
	if b[i] != '\r' || b[i+1] != '\n' {
		return nil, nil, 0, http.StatusBadRequest
	}
	ve := i
	for ve > vs && (b[ve-1] == ' ' || b[ve-1] == '\t') {
		ve--
	}
	return name, b[vs:ve:ve], i + 2, 0
}

// VersionByte reports whether c may be byte k of "HTTP/d.d\r\n".
func VersionByte(k int, c byte) bool {
	switch k {
	case 5, 7:
		return c >= '0' && c <= '9'
	}
	return c == "HTTP/1.1\r\n"[k]
}
