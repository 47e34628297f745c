package httplex

import "testing"

func TestEqualFold(t *testing.T) {
	for _, c := range []struct {
		b, s string
		want bool
	}{
		{"Connection", "connection", true},
		{"CONNECTION", "Connection", true},
		{"connectio", "connection", false},
		{"keep-alive", "keep_alive", false},
		{"", "", true},
	} {
		if got := EqualFold([]byte(c.b), c.s); got != c.want {
			t.Errorf("EqualFold([]byte(%q), %q) = %v", c.b, c.s, got)
		}
		if got := EqualFold(c.b, c.s); got != c.want {
			t.Errorf("EqualFold(%q, %q) = %v", c.b, c.s, got)
		}
	}
}

func TestTrimOWS(t *testing.T) {
	for in, want := range map[string]string{" \tgzip\t ": "gzip", "gzip": "gzip", " ": "", "a b": "a b"} {
		if got := string(TrimOWS([]byte(in))); got != want {
			t.Errorf("TrimOWS(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLists(t *testing.T) {
	var got []string
	ForEachElement([]byte(" close ,, Keep-Alive,\tupgrade "), func(el []byte) { got = append(got, string(el)) })
	if len(got) != 3 || got[0] != "close" || got[1] != "Keep-Alive" || got[2] != "upgrade" {
		t.Fatalf("ForEachElement = %q", got)
	}
	if !HasToken([]byte("keep-alive, Upgrade"), "upgrade") || HasToken([]byte("keep-alive"), "close") || HasToken(nil, "x") {
		t.Fatal("HasToken")
	}
	if n := testing.AllocsPerRun(100, func() { HasToken([]byte("a, b, close"), "close") }); n != 0 {
		t.Fatalf("HasToken allocates %v", n)
	}
}
