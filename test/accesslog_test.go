package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestJSONAccessLogWithTextErrorLog: log.access_format applies to the
// access log alone.
func TestJSONAccessLogWithTextErrorLog(t *testing.T) {
	dir := t.TempDir()
	access := filepath.Join(dir, "access.log")
	s := start(t, opts{workers: 1, extra: "log {\n  level = \"debug\"\n  format = \"text\"\n  access = \"" + access + "\"\n  access_format = \"json\"\n}"})
	for i := 0; i < 3; i++ {
		if code, _, err := get(s.addr, "/json-test"); err != nil || code != 200 {
			t.Fatalf("GET: %d %v", code, err)
		}
	}
	var lines []string
	eventually(t, 10*time.Second, "3 access log lines", func() bool {
		b, _ := os.ReadFile(access)
		lines = strings.Split(strings.TrimSpace(string(b)), "\n")
		return len(lines) >= 3
	})
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("access log line is not JSON: %q: %v", l, err)
		}
		if !strings.Contains(l, "/json-test") {
			t.Fatalf("access log line lacks the path: %q", l)
		}
	}
	// The error log stays text.
	// The output is copied from a pipe: wait for the line.
	s.seen(`^\d{4}-\d\d-\d\dT.* \[(INFO|DEBUG)\] `, 10*time.Second)
}
