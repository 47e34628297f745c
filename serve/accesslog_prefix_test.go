package serve

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestAccessLogErrorPrefix checks that OpenAccessLog's errors name the
// access log exactly once: the worker reports them as they are, and a
// caller that adds its own "access log: " repeats it.
func TestAccessLogErrorPrefix(t *testing.T) {
	dir := t.TempDir()
	for name, open := range map[string]func() error{
		"missing directory": func() error {
			_, err := OpenAccessLog(filepath.Join(dir, "no", "such", "dir", "a.log"), "text", 1)
			return err
		},
		"directory": func() error {
			_, err := OpenAccessLog(dir, "text", 1)
			return err
		},
		"format": func() error {
			_, err := OpenAccessLog(filepath.Join(dir, "a.log"), "xml", 1)
			return err
		},
	} {
		err := open()
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "access log: ") || strings.Count(msg, "access log") != 1 {
			t.Errorf("%s: error %q, want \"access log: \" once, at the start", name, msg)
		}
	}
}
