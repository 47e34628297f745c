package protocol

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net/netip"
	"strings"
	"testing"
)

// v2 builds a v2 header: version/command byte, family/transport byte and
// the address block (TLVs included).
func v2(verCmd, famProto byte, rest []byte) []byte {
	b := append([]byte(proxyV2Sig), verCmd, famProto, 0, 0)
	binary.BigEndian.PutUint16(b[14:], uint16(len(rest)))
	return append(b, rest...)
}

func v2inet(src, dst string, sp, dp uint16, tlv []byte) []byte {
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	rest := append(append(s[:], d[:]...), byte(sp>>8), byte(sp), byte(dp>>8), byte(dp))
	return v2(0x21, 0x11, append(rest, tlv...))
}

func v2inet6(src, dst string, sp, dp uint16) []byte {
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	rest := append(append(s[:], d[:]...), byte(sp>>8), byte(sp), byte(dp>>8), byte(dp))
	return v2(0x21, 0x21, rest)
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// withCRC appends a CRC32C TLV to the v2 header h and fills it in
// (section 2.2.5: the checksum of the whole header with the value zeroed);
// bad spoils it.
func withCRC(h []byte, bad bool) []byte {
	h = append(h, proxyV2TypeCRC32C, 0, 4, 0, 0, 0, 0)
	binary.BigEndian.PutUint16(h[14:], uint16(len(h)-16))
	sum := crc32.Checksum(h, crc32.MakeTable(crc32.Castagnoli))
	if bad {
		sum++
	}
	binary.BigEndian.PutUint32(h[len(h)-4:], sum)
	return h
}

// withLength sets the length field of the v2 header h.
func withLength(h []byte, n int) []byte {
	binary.BigEndian.PutUint16(h[14:], uint16(n))
	return h
}

// tlvsFill reports whether the TLVs of the complete v2 header h, after its
// address block, fill it exactly: the test's own reading of section 2.2.
func tlvsFill(h []byte) bool {
	fam := h[13] >> 4
	i := 16 + map[byte]int{0: 0, 1: 12, 2: 36, 3: 216}[fam]
	for i+3 <= len(h) {
		i += 3 + int(h[i+1])<<8 + int(h[i+2])
	}
	return i == len(h)
}

func TestParseProxyHeader(t *testing.T) {
	const req = "GET / HTTP/1.1\r\n"
	tlv := []byte{0x04, 0x00, 0x03, 'a', 'b', 'c'} // a NOOP TLV
	tests := []struct {
		name    string
		in      []byte
		want    ProxyHeader
		n       int
		wantErr error
	}{
		{"v1 tcp4", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n" + req),
			ProxyHeader{Version: 1, Source: ap("192.0.2.1:56324"), Destination: ap("198.51.100.2:443")}, 45, nil},
		{"v1 tcp6", []byte("PROXY TCP6 2001:db8::1 ::1 1 65535\r\n"),
			ProxyHeader{Version: 1, Source: ap("[2001:db8::1]:1"), Destination: ap("[::1]:65535")}, 36, nil},
		{"v1 tcp6 mapped", []byte("PROXY TCP6 ::ffff:10.0.0.1 fe80::1:2:3:4 0 80\r\n"),
			ProxyHeader{Version: 1, Source: ap("[::ffff:10.0.0.1]:0"), Destination: ap("[fe80::1:2:3:4]:80")}, 47, nil},
		{"v1 unknown", []byte("PROXY UNKNOWN\r\n" + req), ProxyHeader{Version: 1}, 15, nil},
		{"v1 unknown with addresses", []byte("PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n"), ProxyHeader{Version: 1}, 39, nil},
		{"v1 longest", []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
			ProxyHeader{Version: 1, Source: ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
				Destination: ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")}, 104, nil},

		{"v1 partial", []byte("PROXY TCP4 192.0.2.1 "), ProxyHeader{}, 22, ErrProxyIncomplete},
		{"v1 partial signature", []byte("PRO"), ProxyHeader{}, 4, ErrProxyIncomplete},
		{"v1 CR without LF yet", []byte("PROXY UNKNOWN\r"), ProxyHeader{}, 15, ErrProxyIncomplete},
		{"empty", nil, ProxyHeader{}, 1, ErrProxyIncomplete},

		{"plain http", []byte(req), ProxyHeader{}, 0, ErrProxyMissing},
		{"almost v1", []byte("PROXI TCP4"), ProxyHeader{}, 0, ErrProxyMissing},
		{"almost v2", []byte("\r\n\r\nGET"), ProxyHeader{}, 0, ErrProxyMissing},

		{"v1 tcp4 with ipv6", []byte("PROXY TCP4 ::1 ::1 1 2\r\n"), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v1 tcp6 with ipv4", []byte("PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n"), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v1 leading zero", []byte("PROXY TCP4 01.2.3.4 1.2.3.4 1 2\r\n"), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v1 port too big", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n"), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v1 double space", []byte("PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n"), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v1 trailing space", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 1 2 \r\n"), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v1 missing port", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n"), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v1 bare LF", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n"), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v1 unknown protocol", []byte("PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n"), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v1 zone", []byte("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v1 too long", []byte("PROXY UNKNOWN " + strings.Repeat("x", 100)), ProxyHeader{}, 0, ErrProxyMalformed},

		{"v2 tcp4", append(v2inet("192.0.2.1", "198.51.100.2", 56324, 443, nil), req...),
			ProxyHeader{Version: 2, Source: ap("192.0.2.1:56324"), Destination: ap("198.51.100.2:443")}, 28, nil},
		{"v2 tcp4 with TLV", v2inet("10.1.2.3", "10.0.0.1", 1, 2, tlv),
			ProxyHeader{Version: 2, Source: ap("10.1.2.3:1"), Destination: ap("10.0.0.1:2")}, 34, nil},
		{"v2 tcp6", v2inet6("2001:db8::7", "2001:db8::8", 9, 10),
			ProxyHeader{Version: 2, Source: ap("[2001:db8::7]:9"), Destination: ap("[2001:db8::8]:10")}, 52, nil},
		{"v2 local", v2(0x20, 0x00, nil), ProxyHeader{Version: 2, Local: true}, 16, nil},
		{"v2 local ignores family", v2(0x20, 0xff, []byte{1, 2, 3}), ProxyHeader{Version: 2, Local: true}, 19, nil},
		{"v2 unspec", v2(0x21, 0x00, tlv), ProxyHeader{Version: 2}, 22, nil},
		{"v2 inet unspec transport", v2(0x21, 0x10, make([]byte, 12)), ProxyHeader{Version: 2}, 28, nil},
		{"v2 unix", v2(0x21, 0x31, make([]byte, 216)), ProxyHeader{Version: 2}, 232, nil},

		{"v2 partial signature", []byte(proxyV2Sig[:5]), ProxyHeader{}, 16, ErrProxyIncomplete},
		{"v2 partial addresses", v2inet("1.2.3.4", "5.6.7.8", 1, 2, nil)[:20], ProxyHeader{}, 28, ErrProxyIncomplete},
		{"v2 partial TLV", v2inet("1.2.3.4", "5.6.7.8", 1, 2, tlv)[:30], ProxyHeader{}, 34, ErrProxyIncomplete},

		{"v2 version 1", v2(0x11, 0x11, make([]byte, 12)), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v2 version 3 early", []byte(proxyV2Sig + "\x31"), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v2 command 2", v2(0x22, 0x11, make([]byte, 12)), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v2 family 4", v2(0x21, 0x41, make([]byte, 12)), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v2 transport 3", v2(0x21, 0x13, make([]byte, 12)), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v2 udp", v2(0x21, 0x12, make([]byte, 12)), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v2 inet short", v2(0x21, 0x11, make([]byte, 11)), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v2 inet6 short", v2(0x21, 0x21, make([]byte, 35)), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v2 unix short", v2(0x21, 0x31, make([]byte, 215)), ProxyHeader{}, 0, ErrProxyMalformed},

		// TLVs must fill the declared length exactly (section 2.2).
		{"v2 TLV of length 0", v2inet("1.2.3.4", "5.6.7.8", 1, 2, []byte{0x04, 0, 0}),
			ProxyHeader{Version: 2, Source: ap("1.2.3.4:1"), Destination: ap("5.6.7.8:2")}, 31, nil},
		{"v2 TLVs after unspec", v2(0x21, 0x00, append([]byte{0x01, 0, 2, 'h', '2'}, tlv...)), ProxyHeader{Version: 2}, 27, nil},
		{"v2 longest", v2inet("1.2.3.4", "5.6.7.8", 1, 2, append([]byte{0x04, 0xff, 0xf0}, make([]byte, 0xfff0)...)),
			ProxyHeader{Version: 2, Source: ap("1.2.3.4:1"), Destination: ap("5.6.7.8:2")}, ProxyV2MaxLen, nil},
		{"v2 TLV claims 0xffff past the header", v2inet("1.2.3.4", "5.6.7.8", 1, 2, []byte{0x04, 0xff, 0xff}), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v2 TLV claims 0xffff, header incomplete", withLength(v2inet("1.2.3.4", "5.6.7.8", 1, 2, []byte{0x04, 0xff, 0xff}), 112), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v2 TLV overruns by one", v2inet("1.2.3.4", "5.6.7.8", 1, 2, []byte{0x04, 0, 2, 'a'}), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v2 one byte after the TLVs", v2inet("1.2.3.4", "5.6.7.8", 1, 2, append(tlv, 0x04)), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v2 two bytes after the TLVs", v2inet("1.2.3.4", "5.6.7.8", 1, 2, append(tlv, 0x04, 0)), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v2 TLV overrun after unspec", v2(0x21, 0x00, []byte{0x04, 0, 9}), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v2 local TLV overrun", v2(0x20, 0x00, []byte{0x04, 0xff, 0xff}), ProxyHeader{}, 0, ErrProxyMalformed},
		// A length that covers the request's bytes: they are no TLVs.
		{"v2 length covering the request", append(withLength(v2inet("1.2.3.4", "5.6.7.8", 1, 2, nil), 12+len(req)), req...),
			ProxyHeader{}, 0, ErrProxyMalformed},
		{"v2 length past the request", append(withLength(v2inet("1.2.3.4", "5.6.7.8", 1, 2, nil), 12+1000), req...),
			ProxyHeader{}, 0, ErrProxyMalformed},
		{"v2 inet length 0", withLength(v2inet("1.2.3.4", "5.6.7.8", 1, 2, nil)[:16], 0), ProxyHeader{}, 0, ErrProxyMalformed},

		// CRC32C (section 2.2.5) is verified when present.
		{"v2 CRC32C", withCRC(v2inet("1.2.3.4", "5.6.7.8", 1, 2, tlv), false),
			ProxyHeader{Version: 2, Source: ap("1.2.3.4:1"), Destination: ap("5.6.7.8:2")}, 41, nil},
		{"v2 CRC32C wrong", withCRC(v2inet("1.2.3.4", "5.6.7.8", 1, 2, tlv), true), ProxyHeader{}, 0, ErrProxyMalformed},
		{"v2 CRC32C short", v2inet("1.2.3.4", "5.6.7.8", 1, 2, []byte{proxyV2TypeCRC32C, 0, 3, 1, 2, 3}), ProxyHeader{}, 0, ErrProxyMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, n, err := ParseProxyHeader(tt.in)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if h != tt.want {
				t.Errorf("header %+v, want %+v", h, tt.want)
			}
			if n != tt.n {
				t.Errorf("n = %d, want %d", n, tt.n)
			}
		})
	}
}

// TestParseProxyHeaderPieces feeds valid headers a byte at a time: every
// proper prefix is incomplete, with a length promise the header keeps, and
// the whole header parses as it does in one piece.
func TestParseProxyHeaderPieces(t *testing.T) {
	for _, full := range [][]byte{
		[]byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"),
		[]byte("PROXY UNKNOWN\r\n"),
		v2inet("1.2.3.4", "5.6.7.8", 1, 2, []byte{4, 0, 1, 0}),
		v2inet6("::1", "::2", 3, 4),
		v2(0x20, 0, nil),
		v2(0x21, 0x00, []byte{0x04, 0, 1, 'x', 0x02, 0, 0}),
		withCRC(v2inet("1.2.3.4", "5.6.7.8", 1, 2, []byte{4, 0, 1, 0}), false),
	} {
		want, wantN, err := ParseProxyHeader(full)
		if err != nil || wantN != len(full) {
			t.Fatalf("%q: %v, n %d", full, err, wantN)
		}
		for i := 0; i < len(full); i++ {
			_, n, err := ParseProxyHeader(full[:i])
			if !errors.Is(err, ErrProxyIncomplete) {
				t.Fatalf("%q[:%d]: %v, want incomplete", full, i, err)
			}
			if n <= i || n > len(full) {
				t.Fatalf("%q[:%d]: promised length %d", full, i, n)
			}
		}
		if got, _, _ := ParseProxyHeader(full); got != want {
			t.Fatalf("%q: %+v then %+v", full, want, got)
		}
	}
}

func TestParseProxyHeaderAllocs(t *testing.T) {
	ins := [][]byte{
		[]byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n"),
		[]byte("PROXY TCP6 2001:db8::1 ::ffff:1.2.3.4 1 65535\r\n"),
		v2inet("192.0.2.1", "198.51.100.2", 1, 2, []byte{4, 0, 1, 0}),
		v2inet6("2001:db8::7", "2001:db8::8", 9, 10),
		[]byte("PROXY TCP4 1.2.3.4 1.2.3"),
		[]byte("PROXY TCP4 1.2.3.4 1.2.3.4 99999 1\r\n"),
		v2(0x21, 0x41, nil),
		withCRC(v2inet("192.0.2.1", "198.51.100.2", 1, 2, []byte{4, 0, 1, 0}), false),
		withCRC(v2inet("192.0.2.1", "198.51.100.2", 1, 2, nil), true),
		v2inet("1.2.3.4", "5.6.7.8", 1, 2, []byte{0x04, 0xff, 0xff}),
	}
	for _, in := range ins {
		if a := testing.AllocsPerRun(100, func() { _, _, _ = ParseProxyHeader(in) }); a != 0 {
			t.Errorf("%q: %v allocations, want 0", in, a)
		}
	}
}

func TestProxyTrusted(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("fd00::/8")}
	for addr, want := range map[string]bool{
		"127.0.0.1": true, "127.0.0.2": false, "10.200.3.4": true, "11.0.0.1": false,
		"::ffff:10.1.1.1": true, "fd12::1": true, "::1": false,
	} {
		if got := ProxyTrusted(trusted, netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s: %v, want %v", addr, got, want)
		}
	}
	if ProxyTrusted(trusted, netip.Addr{}) {
		t.Error("an invalid address (unix peer) is trusted")
	}
}

// checkProxyResult checks what holds for every answer ParseProxyHeader
// gives, whatever the input.
func checkProxyResult(t *testing.T, b []byte) {
	h, n, err := ParseProxyHeader(b)
	switch {
	case err == nil:
		if n <= 0 || n > len(b) {
			t.Fatalf("%q: complete with n = %d of %d", b, n, len(b))
		}
		if h.Version != 1 && h.Version != 2 {
			t.Fatalf("%q: version %d", b, h.Version)
		}
		if h.Source.IsValid() != h.Destination.IsValid() || (h.Local && h.Source.IsValid()) {
			t.Fatalf("%q: %+v", b, h)
		}
		// The same header with more bytes after it parses the same.
		more := append(append([]byte{}, b[:n]...), "GET / HTTP/1.1\r\n"...)
		if h2, n2, err2 := ParseProxyHeader(more); h2 != h || n2 != n || err2 != nil {
			t.Fatalf("%q: %+v %d, then with more bytes %+v %d %v", b, h, n, h2, n2, err2)
		}
		if h.Version == 1 && h.Source.IsValid() {
			// The addresses read are the ones written.
			line := string(b[:n])
			for _, a := range []netip.AddrPort{h.Source, h.Destination} {
				if !strings.Contains(line, a.Addr().String()) && !strings.Contains(line, a.Addr().StringExpanded()) {
					p, err := netip.ParseAddr(a.Addr().String())
					if err != nil || p != a.Addr() {
						t.Fatalf("%q: address %v", b, a)
					}
				}
			}
		}
	case errors.Is(err, ErrProxyIncomplete):
		if n <= len(b) || n > ProxyV2MaxLen {
			t.Fatalf("%q: incomplete, promised length %d", b, n)
		}
	case errors.Is(err, ErrProxyMissing), errors.Is(err, ErrProxyMalformed):
		if n != 0 || h != (ProxyHeader{}) {
			t.Fatalf("%q: %v with %+v %d", b, err, h, n)
		}
	default:
		t.Fatalf("%q: unexpected error %v", b, err)
	}
}

func FuzzParseProxyV2(f *testing.F) {
	f.Add(v2inet("192.0.2.1", "198.51.100.2", 56324, 443, nil))
	f.Add(v2inet("10.1.2.3", "10.0.0.1", 1, 2, []byte{4, 0, 3, 'a', 'b', 'c'}))
	f.Add(v2inet6("2001:db8::7", "2001:db8::8", 9, 10))
	f.Add(v2(0x20, 0, nil))
	f.Add(v2(0x21, 0x31, make([]byte, 216)))
	f.Add(v2(0x21, 0x00, nil))
	f.Add([]byte(proxyV2Sig + "\x21\x11\x00"))
	f.Add(withCRC(v2inet("10.1.2.3", "10.0.0.1", 1, 2, []byte{4, 0, 1, 'a'}), false))
	f.Add(v2inet("1.2.3.4", "5.6.7.8", 1, 2, []byte{0x04, 0xff, 0xff}))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkProxyResult(t, b)
		// With the signature forced, the fuzzer explores the v2 body.
		withSig := append([]byte(proxyV2Sig), b...)
		checkProxyResult(t, withSig)
		h, n, err := ParseProxyHeader(withSig)
		if err == nil && !h.Local && len(withSig) >= 16 {
			fam, proto := withSig[13]>>4, withSig[13]&0xf
			if h.Source.IsValid() != ((fam == 1 || fam == 2) && proto == 1) {
				t.Fatalf("%q: family %d proto %d gave %+v", withSig, fam, proto, h)
			}
			if n != 16+int(binary.BigEndian.Uint16(withSig[14:16])) {
				t.Fatalf("%q: n %d", withSig, n)
			}
			if fam := withSig[13] >> 4; fam <= 3 && withSig[13]&0xf <= 2 && !tlvsFill(withSig[:n]) {
				t.Fatalf("%q: accepted with TLVs that do not fill its length", withSig[:n])
			}
		}
	})
}

func FuzzParseProxyV1(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::1 ::ffff:1.2.3.4 1 65535\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("PROXY TCP4 1.2.3.4 1.2.3"))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkProxyResult(t, b)
		checkProxyResult(t, append([]byte(proxyV1Sig), b...))
	})
}

// FuzzParseIPv6 compares the allocation-free address parsers with
// net/netip's.
func FuzzParseIPv6(f *testing.F) {
	for _, s := range []string{"::", "::1", "1::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:1.2.3.4", "::ffff:1.2.3.4",
		"1::2:3", "fe80::1%eth0", "1:2:3:4:5:6:7::", "::1:2:3:4:5:6:7", "1.2.3.4", "01.2.3.4", "1:::2", "12345::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := netip.ParseAddr(s)
		if got, ok := parseIPv6([]byte(s)); ok != (err == nil && want.Is6() && want.Zone() == "") || (ok && got != want) {
			t.Fatalf("parseIPv6(%q) = %v, %v; netip: %v, %v", s, got, ok, want, err)
		}
		if got, ok := parseIPv4([]byte(s)); ok != (err == nil && want.Is4()) || (ok && got != want) {
			t.Fatalf("parseIPv4(%q) = %v, %v; netip: %v, %v", s, got, ok, want, err)
		}
	})
}
