package test

import (
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// h2specKnown are the h2spec cases forkd may fail: none. (x/net's own
// answers to a repeated SETTINGS parameter and to connection-specific
// fields differ from RFC 9113; h2/filter.go puts them right. An h2c
// listener answers a first line that is neither HTTP/1.x nor the client
// preface as an invalid preface.)
var h2specKnown = map[string]string{}

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
		{"h2c", []string{"-h", "127.0.0.1", "-p", strings.Split(env.s.addr, ":")[1]}, []map[string]string{h2specKnown}},
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
