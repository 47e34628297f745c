// Package wire is the byte-level syntax of HTTP/1.1 messages (RFC 9112):
// byte classes, the request line, the response head (for the upstream
// client), field lines and chunk-size lines. It
// holds no connection state and does no I/O; package protocol builds its
// requests, limits and connections on it. Keeping it apart lets the
// compiler check that the wire syntax depends on nothing else.
package wire

// Byte classes for the parser, one bit per class. The table is a constant
// string so that it cannot be modified; index it with a byte.
const (
	classToken  = 1 << iota // tchar, RFC 9110 §5.6.2
	classValue              // field-vchar, SP or HTAB, RFC 9110 §5.5
	classTarget             // visible ASCII except '#', RFC 9112 §3.2
	classHost               // reg-name, IP-literal and port bytes, RFC 3986 §3.2.2
	classHex                // HEXDIG
	classQdtext             // qdtext, RFC 9110 §5.6.4
)

// byteClass maps every byte to its class bits (generated; see the class
// constants above for the rules).
const byteClass = "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x22\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x22\x2f\x06\x23\x2f\x2f\x2f\x2f\x2e\x2e\x2f\x2f\x2e\x2f\x2f\x26" +
	"\x3f\x3f\x3f\x3f\x3f\x3f\x3f\x3f\x3f\x3f\x2e\x2e\x26\x2e\x26\x26" +
	"\x26\x3f\x3f\x3f\x3f\x3f\x3f\x2f\x2f\x2f\x2f\x2f\x2f\x2f\x2f\x2f" +
	"\x2f\x2f\x2f\x2f\x2f\x2f\x2f\x2f\x2f\x2f\x2f\x2e\x06\x2e\x27\x2f" +
	"\x27\x3f\x3f\x3f\x3f\x3f\x3f\x2f\x2f\x2f\x2f\x2f\x2f\x2f\x2f\x2f" +
	"\x2f\x2f\x2f\x2f\x2f\x2f\x2f\x2f\x2f\x2f\x2f\x26\x27\x26\x2f\x00" +
	"\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22" +
	"\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22" +
	"\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22" +
	"\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22" +
	"\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22" +
	"\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22" +
	"\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22" +
	"\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22\x22"

// IsToken reports whether c is in the class of that name.
func IsToken(c byte) bool { return byteClass[c]&classToken != 0 }

// IsValue reports whether c is in the class of that name.
func IsValue(c byte) bool { return byteClass[c]&classValue != 0 }

// IsTarget reports whether c is in the class of that name.
func IsTarget(c byte) bool { return byteClass[c]&classTarget != 0 }

// IsHost reports whether c is in the class of that name.
func IsHost(c byte) bool { return byteClass[c]&classHost != 0 }

// IsHex reports whether c is in the class of that name.
func IsHex(c byte) bool { return byteClass[c]&classHex != 0 }

// IsQdtext reports whether c is in the class of that name.
func IsQdtext(c byte) bool { return byteClass[c]&classQdtext != 0 }

// CanStartRequest reports whether a request head may begin with c: the
// first byte of a method, a tchar (RFC 9112 §3), or the CR of an empty line
// that a server skips before the request line (RFC 9112 §2.2). A head that
// begins with any other byte, such as 0x16, which begins a TLS handshake
// record, is no request whatever follows it.
func CanStartRequest(c byte) bool { return IsToken(c) || c == '\r' }
