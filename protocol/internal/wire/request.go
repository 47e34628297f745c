package wire

import "net/http"

// ParseRequestLine parses the request line at the start of b (RFC 9112 §3):
// method SP request-target SP HTTP-version CRLF, with exactly one SP
// between the parts. It returns the method and target (aliasing b), the
// version's digits, and the line's length with status 0; or NeedMore when
// b ends inside the line; or 400 for a line that breaks the syntax, as
// soon as a byte shows it; or 414 when the line is longer than limit
// bytes (not counting the version and CRLF).
//
// A complete line (one that b holds up to its LF) never gets NeedMore: a
// line that ends early ("GET / X\r\n") is refused at once.
func ParseRequestLine(b []byte, limit int) (method, target []byte, major, minor, n, status int) {
	i := 0
	for i < len(b) && IsToken(b[i]) {
		i++
	}
	if i == len(b) {
		return needMoreOr414(len(b), limit)
	}
	if i == 0 || b[i] != ' ' {
		return bad()
	}
	ts := i + 1
	j := ts
	for j < len(b) && IsTarget(b[j]) {
		j++
	}
	if j == len(b) {
		return needMoreOr414(len(b), limit)
	}
	// A control byte, '#', non-ASCII or a second SP inside the target.
	if j == ts || b[j] != ' ' {
		return bad()
	}
	vs := j + 1
	v := b[vs:min(len(b), vs+10)]
	// Refuse a version that cannot become "HTTP/d.d\r\n" as soon as a
	// byte shows it, so that a short line that has ended is answered at
	// once instead of waiting for bytes that never come.
	for k, c := range v {
		if !VersionByte(k, c) {
			return bad()
		}
	}
	if len(v) < 10 {
		return needMoreOr414(len(b), limit)
	}
	if vs+8 > limit {
		return nil, nil, 0, 0, 0, http.StatusRequestURITooLong
	}
	return b[:i], b[ts:j], int(v[5] - '0'), int(v[7] - '0'), vs + 10, 0
}

func bad() (method, target []byte, major, minor, n, status int) {
	return nil, nil, 0, 0, 0, http.StatusBadRequest
}

// needMoreOr414 is the result for a request line that b ends inside.
func needMoreOr414(n, limit int) (method, target []byte, major, minor, consumed, status int) {
	if n > limit {
		return nil, nil, 0, 0, 0, http.StatusRequestURITooLong
	}
	return nil, nil, 0, 0, 0, NeedMore
}

// SplitTarget splits a request-target (RFC 9112 §3.2) into the authority
// of the absolute form (nil for the other forms), the path and the query
// (after '?', without it; nil when there is no '?'). The asterisk form "*"
// is its own path. The path of an absolute form without one is empty. A
// target of none of the forms, or an absolute form with an empty authority
// or userinfo (RFC 9110 §4.2.4), is not ok.
func SplitTarget(t []byte) (host, path, query []byte, ok bool) {
	switch {
	case len(t) == 0:
		return nil, nil, nil, false
	case t[0] == '/':
		// origin-form
	case len(t) == 1 && t[0] == '*':
		return nil, t, nil, true // asterisk-form (RFC 9112 §3.2.4)
	default:
		// absolute-form: scheme "://" authority [path-abempty] ["?" query].
		k := 0
		for k < len(t) && (t[k] >= 'a' && t[k] <= 'z' || t[k] >= 'A' && t[k] <= 'Z' ||
			k > 0 && (t[k] >= '0' && t[k] <= '9' || t[k] == '+' || t[k] == '-' || t[k] == '.')) {
			k++
		}
		if k == 0 || len(t)-k < 3 || t[k] != ':' || t[k+1] != '/' || t[k+2] != '/' {
			return nil, nil, nil, false
		}
		a := k + 3
		e := a
		for e < len(t) && t[e] != '/' && t[e] != '?' {
			// userinfo ('@') is not a host byte.
			if !IsHost(t[e]) {
				return nil, nil, nil, false
			}
			e++
		}
		if e == a {
			return nil, nil, nil, false
		}
		host, t = t[a:e], t[e:]
	}
	for i, c := range t {
		if c == '?' {
			return host, t[:i], t[i+1:], true
		}
	}
	return host, t, nil, true
}
