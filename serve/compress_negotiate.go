package serve

import (
	"bytes"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/httplex"
)

// coding is a content coding forkd compresses with, or identity.
type coding uint8

const (
	codingIdentity coding = iota
	codingZstd
	codingBr
	codingGzip
)

// codingOf maps config's names to codings; unknown names are identity
// (validation refuses them).
func codingOf(name string) coding {
	switch name {
	case config.CodingZstd:
		return codingZstd
	case config.CodingBr:
		return codingBr
	case config.CodingGzip:
		return codingGzip
	}
	return codingIdentity
}

// codingsOf maps a validated list of names.
func codingsOf(names []string) []coding {
	out := make([]coding, 0, len(names))
	for _, n := range names {
		if c := codingOf(n); c != codingIdentity {
			out = append(out, c)
		}
	}
	return out
}

// name is the coding's token, as Content-Encoding writes it.
func (c coding) name() string {
	switch c {
	case codingZstd:
		return config.CodingZstd
	case codingBr:
		return config.CodingBr
	case codingGzip:
		return config.CodingGzip
	}
	return "identity"
}

// ext is the file name suffix of a precompressed variant.
func (c coding) ext() string {
	switch c {
	case codingZstd:
		return ".zst"
	case codingBr:
		return ".br"
	case codingGzip:
		return ".gz"
	}
	return ""
}

// qUnset marks a coding the Accept-Encoding value does not name.
const qUnset = -1

// negotiate picks, from offered (the server's order of preference), the
// coding an Accept-Encoding value v (RFC 9110 section 12.5.3) asks for:
// the one with the highest q-value, the server's order deciding among
// equals; "*" stands for codings not named, "q=0" refuses, "x-gzip" is
// gzip. identity wins when the client weighs it higher than every offered
// coding, when nothing offered is acceptable, and when v is absent or
// empty. It does not allocate.
func negotiate(v []byte, offered []coding) coding {
	if len(v) == 0 || len(offered) == 0 {
		return codingIdentity
	}
	var q [codingGzip + 1]int // in thousandths
	for i := range q {
		q[i] = qUnset
	}
	star := qUnset
	for len(v) > 0 {
		var item []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			item, v = v[:i], v[i+1:]
		} else {
			item, v = v, nil
		}
		name, params := item, []byte(nil)
		if i := bytes.IndexByte(item, ';'); i >= 0 {
			name, params = item[:i], item[i+1:]
		}
		name = httplex.TrimOWS(name)
		w := qValue(params)
		switch {
		case len(name) == 1 && name[0] == '*':
			star = w
		case httplex.EqualFold(name, "identity"):
			q[codingIdentity] = w
		case httplex.EqualFold(name, "gzip"), httplex.EqualFold(name, "x-gzip"):
			q[codingGzip] = w
		case httplex.EqualFold(name, "br"):
			q[codingBr] = w
		case httplex.EqualFold(name, "zstd"):
			q[codingZstd] = w
		}
	}
	// identity is acceptable unless refused (section 12.5.3), but only a
	// weight the client gave it competes with the codings it listed.
	identity := q[codingIdentity]
	if identity == qUnset {
		identity = max(star, 0)
	}
	best, bestQ := codingIdentity, 0
	for _, c := range offered {
		w := q[c]
		if w == qUnset {
			w = star
		}
		if w > bestQ {
			best, bestQ = c, w
		}
	}
	if bestQ == 0 || bestQ < identity {
		return codingIdentity
	}
	return best
}

// qValue reads the weight of a list item's parameters, in thousandths:
// 1000 without "q", 0 for a malformed one (a weight the server cannot
// read is not consent).
func qValue(params []byte) int {
	for len(params) > 0 {
		var p []byte
		if i := bytes.IndexByte(params, ';'); i >= 0 {
			p, params = params[:i], params[i+1:]
		} else {
			p, params = params, nil
		}
		p = httplex.TrimOWS(p)
		if len(p) < 2 || p[0] != 'q' && p[0] != 'Q' || p[1] != '=' {
			continue
		}
		// RFC 9110 section 12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
		s := p[2:]
		if len(s) == 0 || s[0] != '0' && s[0] != '1' {
			return 0
		}
		n := int(s[0]-'0') * 1000
		if len(s) == 1 {
			return n
		}
		if s[1] != '.' || len(s) > 5 {
			return 0
		}
		scale := 100
		for _, c := range s[2:] {
			if c < '0' || c > '9' {
				return 0
			}
			n += int(c-'0') * scale
			scale /= 10
		}
		if n > 1000 {
			return 0
		}
		return n
	}
	return 1000
}
