package wire

import "testing"

func TestParseChunkLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		n    int64
		ok   bool
	}{
		{"5\r", 5, true},
		{"0000a\r", 10, true},
		{"Ff\r", 255, true},
		{"5;a\r", 5, true},
		{"5 ; a = b ; c=\"q\\\"x\"\r", 5, true},
		{"5\t;a\r", 5, true},
		{"5", 0, false},
		{"\r", 0, false},
		{"x\r", 0, false},
		{"5 \r", 0, false},
		{"5;\r", 0, false},
		{"5;a=\r", 0, false},
		{"5;a=\"x\r", 0, false},
		{"5;a=b c\r", 0, false},
		{"-5\r", 0, false},
		{"0x5\r", 0, false},
		{"fffffffffffffffff\r", 0, false},
	} {
		n, ok := ParseChunkLine([]byte(tc.line))
		if n != tc.n || ok != tc.ok {
			t.Errorf("%q: %d %v, want %d %v", tc.line, n, ok, tc.n, tc.ok)
		}
	}
}

func TestParseFieldLine(t *testing.T) {
	for _, tc := range []struct {
		in          string
		name, value string
		next, st    int
	}{
		{"Host: a\r\n", "Host", "a", 9, 0},
		{"X:\t b \t\r\nrest", "X", "b", 9, 0},
		{"\r\n", "", "", 2, 0},
		{"Host: a", "", "", 0, NeedMore},
		{"Host: a\r", "", "", 0, NeedMore},
		{"Host : a\r\n", "", "", 0, 400},
		{" Host: a\r\n", "", "", 0, 400},
		{"Host: a\nb\r\n", "", "", 0, 400},
		{"Host: a\x00\r\n", "", "", 0, 400},
		{"\r\x00", "", "", 0, 400},
	} {
		name, value, next, st := ParseFieldLine([]byte(tc.in), 0)
		if string(name) != tc.name || string(value) != tc.value || next != tc.next || st != tc.st {
			t.Errorf("%q: %q %q %d %d, want %q %q %d %d", tc.in, name, value, next, st, tc.name, tc.value, tc.next, tc.st)
		}
	}
}

func TestVersionByte(t *testing.T) {
	for _, v := range []string{"HTTP/1.1\r\n", "HTTP/1.0\r\n", "HTTP/9.2\r\n"} {
		for k := range len(v) {
			if !VersionByte(k, v[k]) {
				t.Errorf("%q: byte %d refused", v, k)
			}
		}
	}
	for _, bad := range []struct {
		k int
		c byte
	}{{0, 'h'}, {4, ' '}, {5, 'x'}, {6, ','}, {8, '\n'}, {9, '\r'}} {
		if VersionByte(bad.k, bad.c) {
			t.Errorf("byte %d %q accepted", bad.k, bad.c)
		}
	}
}
