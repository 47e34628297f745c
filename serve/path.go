package serve

import "github.com/forkd/forkd/internal/httplex"

// Flags describing how a request path was written; set by reqPath.clean.
const (
	// pathEncSlash: the path contained %2F, an encoded slash.
	pathEncSlash = 1 << iota
	// pathBackslash: the decoded path contains a backslash.
	pathBackslash
	// pathNormalized: cleaning changed the structure of the path (".", ".."
	// or empty segments were removed), so the raw path is not what was
	// routed.
	pathNormalized
	// pathDotfile: a segment of the cleaned path starts with '.'.
	pathDotfile
)

// reqPath is a request path decoded and cleaned once, in a buffer reused
// across requests (pooled by the handler).
type reqPath struct {
	buf   []byte
	key   []byte // scratch for rate-limit keys (rateLimit)
	path  []byte // cleaned path: starts with '/', aliases buf
	flags int
}

// clean percent-decodes raw (RFC 3986 section 2.1) and resolves its dot
// segments (section 5.2.4) and repeated slashes into p.path, which always
// starts with '/' and has no "." or ".." segment, and ends with '/' exactly
// when raw ends with a slash, "." or "..". An encoded slash (%2F) counts as a
// separator and sets pathEncSlash. It reports false for a path that does not
// start with '/', has a malformed escape, or contains a NUL byte (raw or
// encoded).
func (p *reqPath) clean(raw []byte) bool {
	p.flags = 0
	if len(raw) == 0 || raw[0] != '/' {
		return false
	}
	out := append(p.buf[:0], '/')
	segStart := 1   // start of the segment being decoded in out
	seg := 0        // index of the segment being decoded in raw; segment 0 precedes the leading '/'
	endDot := false // the last segment was "." or ".."
	emptyEnd := false
	for i := 0; i <= len(raw); {
		var c byte
		sep := i == len(raw)
		if sep {
			i++
		} else {
			c = raw[i]
			if c == '%' {
				if i+2 >= len(raw) {
					return false
				}
				hi, ok1 := httplex.Unhex(raw[i+1])
				lo, ok2 := httplex.Unhex(raw[i+2])
				if !ok1 || !ok2 {
					return false
				}
				c = hi<<4 | lo
				i += 3
				if c == '/' {
					p.flags |= pathEncSlash
					sep = true
				}
			} else {
				i++
				sep = c == '/'
			}
			if c == 0 {
				return false
			}
		}
		if !sep {
			if c == '\\' {
				p.flags |= pathBackslash
			}
			out = append(out, c)
			continue
		}
		// End of a segment: out[segStart:].
		n := len(out) - segStart
		last := i > len(raw)
		switch {
		case n == 0:
			if seg != 0 && !last {
				p.flags |= pathNormalized // "//"
			}
			emptyEnd = last
		case n == 1 && out[segStart] == '.':
			out = out[:segStart]
			p.flags |= pathNormalized
			endDot = true
		case n == 2 && out[segStart] == '.' && out[segStart+1] == '.':
			out = out[:segStart]
			if segStart > 1 {
				j := segStart - 2 // skip the '/' that ends the previous segment
				for out[j] != '/' {
					j--
				}
				out = out[:j+1]
			}
			p.flags |= pathNormalized
			endDot = true
		default:
			if out[segStart] == '.' {
				p.flags |= pathDotfile
			}
			out = append(out, '/')
			endDot = false
		}
		segStart = len(out)
		seg++
	}
	// out ends with '/' here; keep it only where the path asked for a
	// directory.
	if len(out) > 1 && !emptyEnd && !endDot {
		out = out[:len(out)-1]
	}
	p.buf = out[:0]
	p.path = out
	if p.flags&pathDotfile != 0 {
		p.recheckDotfile()
	}
	return true
}

// recheckDotfile recomputes pathDotfile: a ".." may have removed the dotfile
// segment that set it.
func (p *reqPath) recheckDotfile() {
	p.flags &^= pathDotfile
	for i := 0; i+1 < len(p.path); i++ {
		if p.path[i] == '/' && p.path[i+1] == '.' {
			p.flags |= pathDotfile
			return
		}
	}
}

// shouldEscape reports whether c must be percent-encoded in a path segment
// written back into a request-target or a Location (RFC 3986 section 3.3:
// pchar = unreserved / pct-encoded / sub-delims / ":" / "@"; plus '/').
func shouldEscape(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return false
	}
	switch c {
	case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '@', '/':
		return false
	}
	return true
}

// appendEscapedPath appends the decoded path p percent-encoded.
func appendEscapedPath(dst, p []byte) []byte {
	const hexDigits = "0123456789ABCDEF"
	for _, c := range p {
		if shouldEscape(c) {
			dst = append(dst, '%', hexDigits[c>>4], hexDigits[c&15])
		} else {
			dst = append(dst, c)
		}
	}
	return dst
}
