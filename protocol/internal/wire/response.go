package wire

import (
	"errors"

	"github.com/forkd/forkd/internal/httplex"
)

// Errors of ParseResponseHead. A response that fails with any but
// ErrNeedMore cannot be framed, so the connection it came on must be
// discarded.
var (
	// ErrNeedMore means the input ended before the head did.
	ErrNeedMore = errors.New("wire: response head incomplete")
	// ErrMalformed is a status line or field line that breaks RFC 9112.
	ErrMalformed = errors.New("wire: malformed response head")
	// ErrFraming is a head whose body length cannot be trusted (RFC 9112
	// §6.3): Content-Length with Transfer-Encoding, a Content-Length that
	// is not one decimal number, a repeated one, a transfer coding other
	// than a single "chunked", or Transfer-Encoding in HTTP/1.0.
	ErrFraming = errors.New("wire: response framing refused")
	// ErrHeadTooLarge is a head over the caller's byte or field limit.
	ErrHeadTooLarge = errors.New("wire: response head too large")
)

// RespField is one field of a response head; both slices alias the input.
type RespField struct {
	Name, Value []byte
}

// ResponseHead is a parsed status line and field section (RFC 9112 §4, §5).
type ResponseHead struct {
	Minor         int // HTTP/1.Minor
	Status        int
	Fields        []RespField // reused by the next parse
	ContentLength int64       // -1 when absent
	Chunked       bool        // Transfer-Encoding: chunked
	Close         bool        // the connection ends after this response
	UpgradeToken  bool        // Connection lists "upgrade"
}

// ParseResponseHead parses the response head at the start of b into h and
// returns its length. It is as strict as the request parser in the other
// direction, since a response that two parties frame differently smuggles
// a response (or poisons a pooled connection) just as a request does:
//
//   - The status line is "HTTP/1.d SP 3DIGIT [SP reason] CRLF"; the status
//     is 100 to 599. Only the missing SP before an empty reason phrase is
//     tolerated.
//   - Field lines follow ParseFieldLine (no obs-fold, no whitespace before
//     the colon, CRLF only).
//   - Content-Length is exactly one field of decimal digits.
//   - Transfer-Encoding is exactly one field "chunked", never with
//     Content-Length, never in HTTP/1.0. Other codings are refused: the
//     caller could not decode them, and they are the classic obfuscations.
//
// maxBytes and maxFields bound the head; maxFields also bounds h.Fields.
func ParseResponseHead(h *ResponseHead, b []byte, maxBytes, maxFields int) (int, error) {
	clear(h.Fields)
	h.Fields = h.Fields[:0]
	h.ContentLength = -1
	h.Chunked, h.Close, h.UpgradeToken = false, false, false

	n, err := parseStatusLine(h, b)
	if err != nil {
		if err == ErrNeedMore && len(b) > maxBytes {
			return 0, ErrHeadTooLarge
		}
		return 0, err
	}
	pos := n
	var clSeen, teSeen, keepAlive bool
	for {
		name, value, next, st := ParseFieldLine(b, pos)
		if st == NeedMore {
			if len(b) > maxBytes {
				return 0, ErrHeadTooLarge
			}
			return 0, ErrNeedMore
		}
		if st != 0 {
			return 0, ErrMalformed
		}
		if next > maxBytes {
			return 0, ErrHeadTooLarge
		}
		pos = next
		if name == nil {
			break
		}
		if len(h.Fields) >= maxFields {
			return 0, ErrHeadTooLarge
		}
		h.Fields = append(h.Fields, RespField{Name: name, Value: value})
		switch len(name) {
		case 10:
			if !httplex.EqualFold(name, "connection") {
				break
			}
			httplex.ForEachElement(value, func(el []byte) {
				switch {
				case httplex.EqualFold(el, "close"):
					h.Close = true
				case httplex.EqualFold(el, "keep-alive"):
					keepAlive = true
				case httplex.EqualFold(el, "upgrade"):
					h.UpgradeToken = true
				}
			})
		case 14:
			if !httplex.EqualFold(name, "content-length") {
				break
			}
			if clSeen || len(value) == 0 || len(value) > 18 {
				return 0, ErrFraming
			}
			clSeen = true
			var cl int64
			for _, c := range value {
				if c < '0' || c > '9' {
					return 0, ErrFraming
				}
				cl = cl*10 + int64(c-'0')
			}
			h.ContentLength = cl
		case 17:
			if !httplex.EqualFold(name, "transfer-encoding") {
				break
			}
			if teSeen || !httplex.EqualFold(value, "chunked") {
				return 0, ErrFraming
			}
			teSeen = true
		}
	}
	if teSeen {
		if clSeen || h.Minor == 0 {
			return 0, ErrFraming
		}
		h.Chunked = true
	}
	if h.Minor == 0 && !keepAlive {
		h.Close = true
	}
	return pos, nil
}

// parseStatusLine parses "HTTP/1.d SP 3DIGIT SP reason-phrase CRLF". It
// looks at every byte it has, so that a line that has gone wrong is refused
// before its end arrives.
func parseStatusLine(h *ResponseHead, b []byte) (int, error) {
	const fixed = len("HTTP/1.1 200")
	for k := 0; k < fixed; k++ {
		if k == len(b) {
			return 0, ErrNeedMore
		}
		c := b[k]
		var ok bool
		switch {
		case k < 8:
			ok = VersionByte(k, c) && (k != 5 || c == '1')
		case k == 8:
			ok = c == ' '
		case k == 9:
			ok = c >= '1' && c <= '5'
		default:
			ok = c >= '0' && c <= '9'
		}
		if !ok {
			return 0, ErrMalformed
		}
	}
	h.Minor = int(b[7] - '0')
	if h.Minor > 1 {
		h.Minor = 1 // RFC 9112 §2.3: a later 1.x speaks like 1.1
	}
	h.Status = int(b[9]-'0')*100 + int(b[10]-'0')*10 + int(b[11]-'0')
	i := fixed
	if i < len(b) && b[i] == ' ' {
		i++
		for i < len(b) && IsValue(b[i]) {
			i++
		}
	}
	if i == len(b) || i+1 == len(b) && b[i] == '\r' {
		return 0, ErrNeedMore
	}
	if b[i] != '\r' || b[i+1] != '\n' {
		return 0, ErrMalformed
	}
	return i + 2, nil
}
