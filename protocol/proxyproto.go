package protocol

// The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2) lets a
// load balancer that forwards a TCP connection tell the server who the
// client is: the balancer writes one header before the client's bytes. This
// file parses that header; it does not read from connections. The caller
// feeds it the bytes read so far, from the start of the connection, and
// gets one of three answers: a complete header (and its length, to skip),
// "incomplete" (read more and call again), or an error (close the
// connection). Parsing allocates nothing.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"

	"github.com/forkd/forkd/internal/httplex"
)

// Errors from ParseProxyHeader. Every malformed header gives an error that
// wraps ErrProxyMalformed.
var (
	// ErrProxyIncomplete means the bytes so far are a valid beginning of
	// a header: read more and call again.
	ErrProxyIncomplete = errors.New("protocol: PROXY header incomplete")
	// ErrProxyMissing means the connection does not start with a PROXY
	// header signature at all (a client that talks HTTP directly).
	ErrProxyMissing = errors.New("protocol: no PROXY header")
	// ErrProxyMalformed means the connection starts with a PROXY signature
	// but what follows breaks the specification.
	ErrProxyMalformed = errors.New("protocol: malformed PROXY header")
)

// The specific malformations, made once so that reporting one allocates
// nothing.
var (
	errProxyV1Line      = fmt.Errorf("%w: v1 line longer than 107 bytes or without CRLF", ErrProxyMalformed)
	errProxyV1Proto     = fmt.Errorf("%w: v1 protocol is not TCP4, TCP6 or UNKNOWN", ErrProxyMalformed)
	errProxyV1Address   = fmt.Errorf("%w: v1 address does not match its protocol", ErrProxyMalformed)
	errProxyV1Port      = fmt.Errorf("%w: v1 port is not a number from 0 to 65535", ErrProxyMalformed)
	errProxyV1Syntax    = fmt.Errorf("%w: v1 fields are not separated by single spaces", ErrProxyMalformed)
	errProxyV2Version   = fmt.Errorf("%w: v2 version nibble is not 2", ErrProxyMalformed)
	errProxyV2Command   = fmt.Errorf("%w: v2 command is not LOCAL or PROXY", ErrProxyMalformed)
	errProxyV2Family    = fmt.Errorf("%w: v2 address family or transport is not defined", ErrProxyMalformed)
	errProxyV2Length    = fmt.Errorf("%w: v2 length too short for its address family", ErrProxyMalformed)
	errProxyV2Transport = fmt.Errorf("%w: v2 transport is datagram on a stream connection", ErrProxyMalformed)
	errProxyV2TLV       = fmt.Errorf("%w: v2 TLVs do not fill the header's length exactly", ErrProxyMalformed)
	errProxyV2CRC       = fmt.Errorf("%w: v2 CRC32C TLV is not 4 bytes, repeated, or does not match", ErrProxyMalformed)
)

// Sizes from the specification.
const (
	// ProxyV1MaxLen is the longest v1 header, CRLF included (section 2.1).
	ProxyV1MaxLen = 107
	// ProxyV2MaxLen is the longest v2 header: 16 fixed bytes and a 16-bit
	// length of address and TLV bytes.
	ProxyV2MaxLen = 16 + 0xffff
)

// proxyV1Sig and proxyV2Sig start a v1 and a v2 header.
const (
	proxyV1Sig = "PROXY "
	proxyV2Sig = "\r\n\r\n\x00\r\nQUIT\n"
)

// ProxyHeader is what a PROXY header says about the connection.
type ProxyHeader struct {
	// Version is 1 (text) or 2 (binary).
	Version int
	// Local is set for a v2 LOCAL command: the balancer opened the
	// connection itself (a health check) and relays no client.
	Local bool
	// Source and Destination are the client's address and the address it
	// connected to. They are the zero AddrPort (IsValid false) when the
	// header carries no usable address: LOCAL, v1 UNKNOWN, and v2 UNSPEC
	// or AF_UNIX. The connection's own addresses then apply (section 2.1,
	// 2.2). IPv4 addresses are plain IPv4, never IPv4-mapped IPv6, for v1;
	// for v2 they are as sent.
	Source, Destination netip.AddrPort
}

// ParseProxyHeader parses the PROXY header, version 1 or 2 as the first
// bytes tell, at the start of b, the bytes a connection has delivered so
// far. It returns the header and its length n: the request starts at b[n].
//
// With ErrProxyIncomplete, b is a valid beginning and n is the least total
// length the header will have (for v2 once its 16 fixed bytes are in: the
// exact length, up to ProxyV2MaxLen; otherwise len(b)+1): read until
// len(b) >= n and call again with all the bytes. ErrProxyMissing and
// errors that wrap ErrProxyMalformed are final.
//
// Extra bytes after the header are left alone. v2 TLVs are checked for
// framing (they must fill the header's length exactly) and a CRC32C TLV
// is verified; the others are skipped, not interpreted. ParseProxyHeader
// does not allocate.
func ParseProxyHeader(b []byte) (h ProxyHeader, n int, err error) {
	if len(b) == 0 {
		return h, 1, ErrProxyIncomplete
	}
	switch b[0] {
	case proxyV1Sig[0]:
		if !hasPrefixOrIsPrefix(b, proxyV1Sig) {
			return h, 0, ErrProxyMissing
		}
		return parseProxyV1(b)
	case proxyV2Sig[0]:
		if !hasPrefixOrIsPrefix(b, proxyV2Sig) {
			return h, 0, ErrProxyMissing
		}
		return parseProxyV2(b)
	}
	return h, 0, ErrProxyMissing
}

// hasPrefixOrIsPrefix reports whether b starts with sig or is a shorter
// beginning of it.
func hasPrefixOrIsPrefix(b []byte, sig string) bool {
	k := min(len(b), len(sig))
	return string(b[:k]) == sig[:k]
}

// parseProxyV1 parses "PROXY TCP4 1.2.3.4 5.6.7.8 1234 80\r\n" (section
// 2.1). The line is at most 107 bytes; it ends at the first CRLF.
func parseProxyV1(b []byte) (h ProxyHeader, n int, err error) {
	end := -1
	for i := 0; i < len(b) && i < ProxyV1MaxLen; i++ {
		if b[i] == '\n' {
			if i == 0 || b[i-1] != '\r' {
				return h, 0, errProxyV1Line
			}
			end = i - 1
			break
		}
	}
	if end < 0 {
		if len(b) >= ProxyV1MaxLen {
			return h, 0, errProxyV1Line
		}
		return h, len(b) + 1, ErrProxyIncomplete
	}
	n = end + 2
	line := b[len(proxyV1Sig):end]
	h.Version = 1
	proto, rest, _ := cutByte(line, ' ')
	var v6 bool
	switch string(proto) {
	case "UNKNOWN":
		// The receiver must ignore everything up to CRLF and use the
		// connection's own addresses.
		return h, n, nil
	case "TCP4":
	case "TCP6":
		v6 = true
	default:
		return ProxyHeader{}, 0, errProxyV1Proto
	}
	var f [4][]byte
	for i := range f {
		var ok bool
		f[i], rest, ok = cutByte(rest, ' ')
		if len(f[i]) == 0 || ok != (i < 3) {
			return ProxyHeader{}, 0, errProxyV1Syntax
		}
	}
	var src, dst netip.Addr
	var ok1, ok2 bool
	if v6 {
		src, ok1 = parseIPv6(f[0])
		dst, ok2 = parseIPv6(f[1])
	} else {
		src, ok1 = parseIPv4(f[0])
		dst, ok2 = parseIPv4(f[1])
	}
	if !ok1 || !ok2 {
		return ProxyHeader{}, 0, errProxyV1Address
	}
	sp, ok1 := parsePort(f[2])
	dp, ok2 := parsePort(f[3])
	if !ok1 || !ok2 {
		return ProxyHeader{}, 0, errProxyV1Port
	}
	h.Source = netip.AddrPortFrom(src, sp)
	h.Destination = netip.AddrPortFrom(dst, dp)
	return h, n, nil
}

// cutByte splits b around the first c.
func cutByte(b []byte, c byte) (before, after []byte, found bool) {
	for i, x := range b {
		if x == c {
			return b[:i], b[i+1:], true
		}
	}
	return b, nil, false
}

// parsePort reads a decimal port, 0 to 65535, of at most five digits.
func parsePort(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n > 0xffff {
		return 0, false
	}
	return uint16(n), true
}

// parseIPv4 reads a dotted-quad IPv4 address without leading zeros (which
// some parsers read as octal).
func parseIPv4(b []byte) (netip.Addr, bool) {
	var a [4]byte
	field, digits, val := 0, 0, 0
	for i := 0; i <= len(b); i++ {
		if i == len(b) || b[i] == '.' {
			if digits == 0 || field > 3 {
				return netip.Addr{}, false
			}
			a[field] = byte(val)
			field++
			digits, val = 0, 0
			continue
		}
		c := b[i]
		if c < '0' || c > '9' || (digits > 0 && val == 0) {
			return netip.Addr{}, false
		}
		val = val*10 + int(c-'0')
		digits++
		if val > 255 {
			return netip.Addr{}, false
		}
	}
	if field != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(a), true
}

// parseIPv6 reads an IPv6 address in the text forms of RFC 4291, section
// 2.2: eight groups of up to four hex digits, "::" for one run of zero
// groups, and an IPv4 dotted quad in place of the last two groups. Zones
// are refused.
func parseIPv6(b []byte) (netip.Addr, bool) {
	var a [16]byte
	ellipsis := -1 // byte index in a where "::" stands
	i, j := 0, 0   // i indexes b, j indexes a
	if len(b) >= 2 && b[0] == ':' && b[1] == ':' {
		ellipsis = 0
		i = 2
		if len(b) == 2 {
			return netip.AddrFrom16(a), true
		}
	}
	for i < len(b) {
		// One group: hex digits, or a trailing dotted quad.
		val, k := 0, i
		for k < len(b) && k-i < 4 {
			d, ok := httplex.Unhex(b[k])
			if !ok {
				break
			}
			val = val<<4 | int(d)
			k++
		}
		if k == i {
			return netip.Addr{}, false
		}
		if k < len(b) && b[k] == '.' {
			if j > 12 {
				return netip.Addr{}, false
			}
			v4, ok := parseIPv4(b[i:])
			if !ok {
				return netip.Addr{}, false
			}
			q := v4.As4()
			copy(a[j:], q[:])
			j += 4
			break // the dotted quad ends the address
		}
		if j > 14 {
			return netip.Addr{}, false
		}
		a[j], a[j+1] = byte(val>>8), byte(val)
		j += 2
		i = k
		if i == len(b) {
			break
		}
		if b[i] != ':' {
			return netip.Addr{}, false
		}
		i++
		if i < len(b) && b[i] == ':' {
			if ellipsis >= 0 {
				return netip.Addr{}, false
			}
			ellipsis = j
			i++
			if i == len(b) {
				break
			}
		} else if i == len(b) {
			return netip.Addr{}, false // a trailing single ':'
		}
	}
	if ellipsis < 0 {
		if j != 16 {
			return netip.Addr{}, false
		}
		return netip.AddrFrom16(a), true
	}
	if j == 16 {
		return netip.Addr{}, false // "::" must stand for at least one group
	}
	// Move what followed "::" to the end; zeros fill the gap.
	n := j - ellipsis
	copy(a[16-n:], a[ellipsis:j])
	for k := ellipsis; k < 16-n; k++ {
		a[k] = 0
	}
	return netip.AddrFrom16(a), true
}

// v2 address families and transports (section 2.2, the 14th byte).
const (
	proxyV2Unspec = 0x0
	proxyV2Inet   = 0x1
	proxyV2Inet6  = 0x2
	proxyV2Unix   = 0x3
	proxyV2Stream = 0x1
	proxyV2Dgram  = 0x2
)

// proxyV2AddrLen is the size of the address block of a v2 address family
// (section 2.2); TLVs follow it. AF_UNSPEC has none.
func proxyV2AddrLen(fam byte) int {
	switch fam {
	case proxyV2Inet:
		return 12
	case proxyV2Inet6:
		return 36
	case proxyV2Unix:
		return 216
	}
	return 0
}

// v2 TLV types that the parser looks at (section 2.2.1 onwards); the
// others (ALPN, AUTHORITY, SSL, NETNS, NOOP, custom ones) are skipped.
const proxyV2TypeCRC32C = 0x03

// parseProxyV2 parses the binary header (section 2.2): the 12-byte
// signature, version and command, family and transport, a big-endian
// length, then that many bytes: the family's address block and TLVs,
// each a type byte, a big-endian 16-bit length and that many bytes.
//
// The TLVs must fill the declared length exactly: a TLV that runs past
// it, or bytes left over that cannot be a TLV, make the header malformed,
// so that a length that claims bytes which are really the client's request
// is refused instead of swallowing them. They are checked as they arrive,
// so such a header is refused as soon as a TLV header overruns, not only
// after a wait for bytes that never come. A CRC32C TLV, if present, must
// be 4 bytes and match the header (section 2.2.5).
func parseProxyV2(b []byte) (h ProxyHeader, n int, err error) {
	if len(b) < 16 {
		if len(b) > 12 && b[12]>>4 != 2 {
			return h, 0, errProxyV2Version
		}
		return h, 16, ErrProxyIncomplete
	}
	if b[12]>>4 != 2 {
		return h, 0, errProxyV2Version
	}
	cmd := b[12] & 0xf
	if cmd > 1 {
		return h, 0, errProxyV2Command
	}
	fam, transport := b[13]>>4, b[13]&0xf
	length := int(binary.BigEndian.Uint16(b[14:16]))
	n = 16 + length
	known := fam <= proxyV2Unix && transport <= proxyV2Dgram
	if cmd == 1 && !known {
		// "Other values ... must be rejected as invalid by receivers."
		return h, 0, errProxyV2Family
	}
	if known {
		// A LOCAL header of a family nobody defined is discarded whole,
		// unchecked: its receiver "must ... discard the protocol block
		// including the family".
		alen := proxyV2AddrLen(fam)
		if length < alen {
			return h, 0, errProxyV2Length
		}
		if err := checkProxyV2TLVs(b[:min(len(b), n)], 16+alen, n); err != nil {
			return h, 0, err
		}
	}
	if len(b) < n {
		return h, n, ErrProxyIncomplete
	}
	h.Version = 2
	if cmd == 0 {
		// LOCAL: use the real endpoints and discard the protocol block,
		// family included, whatever it holds.
		h.Local = true
		return h, n, nil
	}
	if fam == proxyV2Unspec || transport == 0 {
		// Unknown or unsupported protocol: accept with the real endpoint
		// addresses, ignoring any address information.
		return h, n, nil
	}
	if transport == proxyV2Dgram {
		return ProxyHeader{}, 0, errProxyV2Transport
	}
	addr := b[16:n]
	switch fam {
	case proxyV2Inet:
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(addr[0:4])), binary.BigEndian.Uint16(addr[8:10]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(addr[4:8])), binary.BigEndian.Uint16(addr[10:12]))
	case proxyV2Inet6:
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(addr[0:16])), binary.BigEndian.Uint16(addr[32:34]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(addr[16:32])), binary.BigEndian.Uint16(addr[34:36]))
	case proxyV2Unix:
		// Two 108-byte paths; an AddrPort cannot hold them, so the
		// connection's own addresses apply.
	}
	return h, n, nil
}

// checkProxyV2TLVs checks the TLVs of a v2 header that ends at n, those
// of b[i:] that have arrived (b is the header so far, at most n bytes):
// each TLV's 3-byte header must be followed by a length that ends within
// n, and once the header is complete the last TLV must end at n exactly.
// A complete header's CRC32C TLV is verified.
func checkProxyV2TLVs(b []byte, i, n int) error {
	crc := -1 // where the CRC32C value is, if there is one
	for i+3 <= len(b) {
		typ, tlen := b[i], int(binary.BigEndian.Uint16(b[i+1:i+3]))
		if i+3+tlen > n {
			return errProxyV2TLV
		}
		if typ == proxyV2TypeCRC32C {
			if tlen != 4 || crc >= 0 {
				return errProxyV2CRC
			}
			crc = i + 3
		}
		i += 3 + tlen
	}
	if len(b) < n {
		return nil // the rest of the header has not arrived
	}
	if i != n {
		return errProxyV2TLV
	}
	if crc >= 0 {
		// The checksum covers the whole header with its own value
		// zeroed. (MakeTable makes Castagnoli's table once, and hands
		// every caller that one.)
		castagnoli := crc32.MakeTable(crc32.Castagnoli)
		sum := ^crc32.Update(0, castagnoli, b[:crc])
		for range 4 {
			// A zero byte, the table way (a slice of zeros passed to
			// Update would escape, and allocate).
			sum = castagnoli[byte(sum)] ^ sum>>8
		}
		sum = crc32.Update(^sum, castagnoli, b[crc+4:n])
		if sum != binary.BigEndian.Uint32(b[crc:crc+4]) {
			return errProxyV2CRC
		}
	}
	return nil
}

// ProxyTrusted reports whether a connection from addr may send a PROXY
// header: whether one of trusted contains it. An IPv4-mapped IPv6 address
// (a dual-stack listener's view of an IPv4 client) is matched as IPv4. An
// invalid addr (a unix socket peer) is not trusted; callers decide for
// unix listeners themselves.
func ProxyTrusted(trusted []netip.Prefix, addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
