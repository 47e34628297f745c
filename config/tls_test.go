package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/forkd/forkd/internal/testcert"
)

// tlsFiles writes a certificate and key for "localhost" into dir and
// returns their paths; expired makes a certificate that ended an hour ago.
func tlsFiles(t *testing.T, dir, name string, expired bool) (cert, key string) {
	t.Helper()
	ca, err := testcert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	var nb, na time.Time
	if expired {
		nb, na = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
	}
	leaf, err := ca.Issue([]string{"localhost"}, nb, na)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := leaf.Write(cert, key); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func tlsConfig(cert, key, extra string) string {
	return fmt.Sprintf("listen {\n  address = \"127.0.0.1:0\"\n%s  tls {\n    certificate = %q\n    key         = %q\n  }\n}\n", extra, cert, key)
}

func TestTLSLoad(t *testing.T) {
	dir := t.TempDir()
	cert, key := tlsFiles(t, dir, "a", false)
	path := filepath.Join(dir, "config.hcl")
	// Relative paths resolve against the file's directory.
	if err := os.WriteFile(path, []byte(tlsConfig("a.pem", "a.key", "  min_version = \"1.3\"\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	l := c.Listen[0]
	if !l.IsTLS() || !c.HasTLS() || l.MinVersion != "1.3" || l.TLS[0].Certificate != cert || l.TLS[0].Key != key {
		t.Fatalf("listen = %+v", l)
	}
	want, _ := os.ReadFile(key)
	if string(l.TLS[0].KeyPEM) != string(want) || len(l.TLS[0].CertPEM) == 0 {
		t.Error("the key and certificate contents are not kept")
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings: %q", c.Warnings)
	}
	// The key never prints or marshals: the configuration's JSON (what
	// workers receive in the sealed memfd) carries the paths only.
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	secret, _ := json.Marshal(l.TLS[0].KeyPEM)
	if string(secret) != `"[redacted]"` || !strings.Contains(string(js), `"key":"`+key+`"`) {
		t.Errorf("JSON: %s / %s", secret, js)
	}
	for _, s := range []string{string(js), fmt.Sprint(l.TLS[0]), fmt.Sprintf("%+v %#v %x %s", c, c, l.TLS[0].KeyPEM, l.TLS[0].KeyPEM)} {
		if strings.Contains(s, "PRIVATE KEY") || strings.Contains(s, fmt.Sprintf("%x", []byte(want))) {
			t.Errorf("key material printed: %.200s", s)
		}
	}
}

func TestTLSErrors(t *testing.T) {
	dir := t.TempDir()
	cert, key := tlsFiles(t, dir, "a", false)
	_, otherKey := tlsFiles(t, dir, "b", false)
	expCert, expKey := tlsFiles(t, dir, "old", true)
	for _, tc := range []struct {
		name, src string
		line      int
		want      string
	}{
		{"missing certificate", tlsConfig(filepath.Join(dir, "none.pem"), key, ""), 4, "Cannot read certificate"},
		{"missing key", tlsConfig(cert, filepath.Join(dir, "none.key"), ""), 5, "Cannot read key"},
		{"mismatched key", tlsConfig(cert, otherKey, ""), 5, "Invalid key; The key in"},
		{"not a certificate", tlsConfig(key, key, ""), 4, "Invalid certificate"},
		{"bad version", tlsConfig(cert, key, "  min_version = \"1.1\"\n"), 3, "Invalid min_version"},
		{"version without tls", "listen {\n  address = \"127.0.0.1:0\"\n  min_version = \"1.3\"\n}\n", 3, "min_version applies only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src), filepath.Join(dir, "c.hcl"))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v", err)
			}
			prefix := fmt.Sprintf("%s:%d:", filepath.Join(dir, "c.hcl"), tc.line)
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want %s... %s", err, prefix, tc.want)
			}
			if strings.Contains(err.Error(), "PRIVATE") {
				t.Errorf("error shows key material: %v", err)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		c, err := Parse([]byte(tlsConfig(expCert, expKey, "")), filepath.Join(dir, "c.hcl"))
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Warnings) != 1 || !strings.HasPrefix(c.Warnings[0], filepath.Join(dir, "c.hcl")+":4:") ||
			!strings.Contains(c.Warnings[0], "Expired certificate") {
			t.Errorf("warnings = %q", c.Warnings)
		}
	})
}

func TestRedirectConfig(t *testing.T) {
	site := func(body string) string {
		return "site \"s\" {\n  route \"/\" {\n    redirect {\n" + body + "    }\n  }\n}\n"
	}
	c, err := Parse([]byte(site("      location = \"https://{host}{uri}\"\n")), "c.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Sites[0].Routes[0].Redirect; r == nil || r.Status != 301 || r.Location != "https://{host}{uri}" {
		t.Fatalf("redirect = %+v", r)
	}
	for _, tc := range []struct{ body, want string }{
		{"      status = 200\n      location = \"/x\"\n", "c.hcl:4:16: Invalid redirect status"},
		{"      location = \"https://{hots}{uri}\"\n", "c.hcl:4:18: Invalid location; Unknown placeholder {hots}"},
		{"      status = 302\n", "Missing required argument"},
	} {
		_, err := Parse([]byte(site(tc.body)), "c.hcl")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %s", tc.body, err, tc.want)
		}
	}
}

// TestProtocolListDefault: a TLS listener offers h2 and http/1.1 (ALPN, in
// this order) unless it names its protocols; a plain one speaks HTTP/1.1.
func TestProtocolListDefault(t *testing.T) {
	dir := t.TempDir()
	cert, key := tlsFiles(t, dir, "a", false)
	for _, tc := range []struct {
		extra string
		tls   bool
		want  string
		http2 bool
	}{
		{"", true, "h2 http/1.1", true},
		{"  protocols = [\"http/1.1\"]\n", true, "http/1.1", false},
		{"  protocols = [\"http/1.1\", \"h2\"]\n", true, "http/1.1 h2", true},
		{"", false, "http/1.1", false},
		{"  protocols = [\"http/1.1\", \"h2c\"]\n", false, "http/1.1 h2c", true},
	} {
		src := tlsConfig(cert, key, tc.extra)
		if !tc.tls {
			src = "listen {\n  address = \"127.0.0.1:0\"\n" + tc.extra + "}\n"
		}
		c, err := Parse([]byte(src), "c.hcl")
		if err != nil {
			t.Fatalf("%q: %v", tc.extra, err)
		}
		l := c.Listen[0]
		if got := strings.Join(l.ProtocolList(), " "); got != tc.want || l.HTTP2() != tc.http2 {
			t.Errorf("tls=%v %q: protocols %q, HTTP2 %v; want %q, %v", tc.tls, tc.extra, got, l.HTTP2(), tc.want, tc.http2)
		}
	}
}
