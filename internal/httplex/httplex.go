// Package httplex holds the small lexical helpers of HTTP field values
// (RFC 9110 §5.5, §5.6) that the protocol engine and the handlers in serve
// both need: ASCII case folding, optional-whitespace trimming and
// comma-separated lists. They work on []byte in place and never allocate.
package httplex

// Lower returns c with ASCII upper case folded to lower case.
func Lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// EqualFold reports whether b and s are equal ignoring ASCII case. It is
// the one case-insensitive comparison of field names and tokens in forkd,
// for header bytes as received ([]byte) and for names held as strings.
func EqualFold[T []byte | string](b T, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if Lower(b[i]) != Lower(s[i]) {
			return false
		}
	}
	return true
}

// TrimOWS removes optional whitespace (SP, HTAB; RFC 9110 §5.6.3) from both
// ends of b.
func TrimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// ForEachElement calls f for every non-empty element of a comma-separated
// list (RFC 9110 §5.6.1), trimmed of optional whitespace.
func ForEachElement(v []byte, f func(el []byte)) {
	for len(v) > 0 {
		i := 0
		for i < len(v) && v[i] != ',' {
			i++
		}
		if el := TrimOWS(v[:i]); len(el) > 0 {
			f(el)
		}
		if i == len(v) {
			return
		}
		v = v[i+1:]
	}
}

// HasToken reports whether the comma-separated list v holds tok, ignoring
// ASCII case.
func HasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		i := 0
		for i < len(v) && v[i] != ',' {
			i++
		}
		if EqualFold(TrimOWS(v[:i]), tok) {
			return true
		}
		if i == len(v) {
			return false
		}
		v = v[i+1:]
	}
	return false
}

// Unhex decodes one hex digit (percent-encoding, IPv6 address text).
func Unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
