package protocol

import (
	"strings"
	"testing"
)

func TestNotHTTP1(t *testing.T) {
	for in, want := range map[string]int{
		"GET / HTTP/1.1\r\n":                lineHTTP1,
		"\r\nGET / HTTP/1.0\n":              lineHTTP1,
		"PRI * HTTP/2.0\r\n\r\nXX\r\n":      lineHTTP1, // the parser's 505
		"GET / HTTP/1.1":                    lineIncomplete,
		"\r\n":                              lineIncomplete,
		"INVALID CONNECTION PREFACE\r\n":    lineNotHTTP1,
		"GET /\r\n":                         lineNotHTTP1,
		"\x16\x03\x01\x02\x00":              lineHTTP1, // a ClientHello: the parser's 400
		"GET /" + strings.Repeat("a", 2000): lineHTTP1,
	} {
		if got := notHTTP1([]byte(in)); got != want {
			t.Errorf("%q: %d, want %d", in, got, want)
		}
	}
}
