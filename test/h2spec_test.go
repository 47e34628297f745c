package test

import (
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// h2specKnown are the h2spec cases forkd fails, each for a reason of
// x/net/http2's (which does the framing) or of the listener's, never a
// case that regressed. A case not listed fails the test.
var h2specKnown = map[string]string{
	// x/net refuses a SETTINGS frame that repeats a setting with a
	// PROTOCOL_ERROR; RFC 9113 §6.5.3 says to apply them in order.
	"http2/6.5.3/Sends multiple values of SETTINGS_INITIAL_WINDOW_SIZE": "x/net",
	// x/net answers a request with connection-specific fields (or a TE
	// other than "trailers") with a 400 response instead of resetting the
	// stream with PROTOCOL_ERROR (RFC 9113 §8.2.2).
	"http2/8.1.2.2/Sends a HEADERS frame that contains the connection-specific header field":                       "x/net",
	"http2/8.1.2.2/Sends a HEADERS frame that contains the TE header field with any value other than \"trailers\"": "x/net",
}

// h2specKnownH2C adds, on an h2c listener that also speaks HTTP/1.1, the
// invalid preface case: "INVALID CONNECTION PREFACE\r\n\r\n" is a
// malformed HTTP/1.1 request there, answered 400 before the close.
var h2specKnownH2C = map[string]string{
	"http2/3.5/Sends invalid connection preface": "HTTP/1.1 on the same listener",
}

// h2specBin finds h2spec (.ci/run installs it with go install).
func h2specBin(t *testing.T) string {
	if p, err := exec.LookPath("h2spec"); err == nil {
		return p
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "h2spec")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("h2spec not installed: go install github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible (.ci/run does)")
	return ""
}

type junit struct {
	Suites []struct {
		Package string `xml:"package,attr"`
		Cases   []struct {
			Name    string    `xml:"classname,attr"`
			Error   *struct{} `xml:"error"`
			Failure *struct{} `xml:"failure"`
			Skipped *struct{} `xml:"skipped"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// TestH2Spec runs h2spec in strict mode against a TLS and an h2c listener.
func TestH2Spec(t *testing.T) {
	env := startH2(t, "")
	bin := h2specBin(t)
	for _, c := range []struct {
		name  string
		args  []string
		known []map[string]string
	}{
		{"tls", []string{"-t", "-k", "-h", "127.0.0.1", "-p", strings.Split(env.tlsAddr, ":")[1]}, []map[string]string{h2specKnown}},
		{"h2c", []string{"-h", "127.0.0.1", "-p", strings.Split(env.s.addr, ":")[1]}, []map[string]string{h2specKnown, h2specKnownH2C}},
	} {
		t.Run(c.name, func(t *testing.T) {
			report := filepath.Join(t.TempDir(), "h2spec.xml")
			args := append([]string{"--strict", "-o", "5", "-j", report}, c.args...)
			out, err := exec.Command(bin, args...).CombinedOutput()
			b, rerr := os.ReadFile(report)
			if rerr != nil {
				t.Fatalf("h2spec: %v %v\n%s", err, rerr, out)
			}
			var j junit
			if err := xml.Unmarshal(b, &j); err != nil {
				t.Fatal(err)
			}
			var passed, failed, skipped int
			for _, s := range j.Suites {
				for _, tc := range s.Cases {
					id := s.Package + "/" + tc.Name
					switch {
					case tc.Skipped != nil:
						skipped++
					case tc.Error == nil && tc.Failure == nil:
						passed++
					default:
						failed++
						known := false
						for _, k := range c.known {
							_, ok := k[id]
							known = known || ok
						}
						if !known {
							t.Errorf("h2spec %s failed", id)
						}
					}
				}
			}
			t.Logf("h2spec --strict (%s): %d tests, %d passed, %d skipped, %d failed", c.name, passed+failed+skipped, passed, skipped, failed)
			if skipped > 0 || passed < 140 {
				t.Errorf("h2spec: %d passed, %d skipped\n%s", passed, skipped, out)
			}
		})
	}
}
