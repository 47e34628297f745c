package serve

import "testing"

func TestNegotiate(t *testing.T) {
	all := []coding{codingZstd, codingBr, codingGzip}
	for _, tc := range []struct {
		ae      string
		offered []coding
		want    coding
	}{
		{"", all, codingIdentity},
		{"gzip", all, codingGzip},
		{"x-gzip", all, codingGzip},
		{"GZIP", all, codingGzip},
		{"gzip, br", all, codingBr},         // server preference among equals
		{"gzip, br, zstd", all, codingZstd}, // server preference among equals
		{"gzip, br, zstd", []coding{codingGzip, codingBr}, codingGzip},
		{"gzip;q=1.0, br;q=0.5", all, codingGzip}, // the client's weights first
		{"gzip;q=0.5, br;q=0.9, zstd;q=0.1", all, codingBr},
		{"br;q=0", all, codingIdentity},
		{"br;q=0.000, gzip", all, codingGzip},
		{"*", all, codingZstd},
		{"*;q=0", all, codingIdentity},
		{"*;q=0, gzip", all, codingGzip},
		{"br;q=0, *", all, codingZstd},
		{"zstd;q=0, *", all, codingBr},
		{"identity", all, codingIdentity},
		{"gzip;q=0.5, identity", all, codingIdentity}, // identity weighed higher
		{"gzip, identity;q=0.5", all, codingGzip},
		{"gzip, identity", all, codingGzip},   // equals: the server compresses
		{"identity;q=0", all, codingIdentity}, // nothing else offered
		{"deflate", all, codingIdentity},
		{"compress, deflate", all, codingIdentity},
		{"gzip;q=2", all, codingIdentity}, // malformed weights refuse
		{"gzip;q=0.5x", all, codingIdentity},
		{"gzip;q=1.5", all, codingIdentity},
		{"gzip;q=0.0001", all, codingIdentity},
		{"gzip ; q=0.8 , br ; q=0.7", all, codingGzip},
		{"gzip;level=1;q=0.3, br;q=0.2", all, codingGzip},
		{" , ,gzip,, ", all, codingGzip},
		{"gzip", nil, codingIdentity},
	} {
		if got := negotiate([]byte(tc.ae), tc.offered); got != tc.want {
			t.Errorf("negotiate(%q, %v) = %s, want %s", tc.ae, tc.offered, got.name(), tc.want.name())
		}
	}
}

func TestNegotiateAllocs(t *testing.T) {
	v := []byte("gzip;q=0.8, br;q=0.9, zstd, identity;q=0.1, *;q=0")
	offered := []coding{codingZstd, codingBr, codingGzip}
	if n := testing.AllocsPerRun(100, func() { negotiate(v, offered) }); n != 0 {
		t.Errorf("negotiate allocates %v times", n)
	}
}

func FuzzNegotiate(f *testing.F) {
	f.Add("gzip;q=0.5, br, *;q=0")
	f.Fuzz(func(t *testing.T, ae string) {
		c := negotiate([]byte(ae), []coding{codingZstd, codingBr, codingGzip})
		if c > codingGzip {
			t.Fatalf("coding %d", c)
		}
	})
}
