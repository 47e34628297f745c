package protocol

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

func isToken(c byte) bool  { return byteClass[c]&classToken != 0 }
func isValue(c byte) bool  { return byteClass[c]&classValue != 0 }
func isTarget(c byte) bool { return byteClass[c]&classTarget != 0 }
func isHost(c byte) bool   { return byteClass[c]&classHost != 0 }
func isHex(c byte) bool    { return byteClass[c]&classHex != 0 }
func isQdtext(c byte) bool { return byteClass[c]&classQdtext != 0 }

// lower returns c with ASCII upper case folded to lower case.
func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// equalFold reports whether b equals the lower-case ASCII string s, ignoring
// ASCII case in b.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if lower(b[i]) != s[i] {
			return false
		}
	}
	return true
}

// equalFoldString reports whether a and b are equal ignoring ASCII case.
func equalFoldString(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

// trimOWS removes optional whitespace (SP, HTAB) from both ends of b.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
