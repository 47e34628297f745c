package config

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// LoadLenient reads from the file at path only the top-level settings the
// control commands (`forkd status|reload|stop|scale`) use: pidfile,
// control_socket, worker_timeout, graceful_timeout and drain_delay. It is
// for a file that Load refuses, so that an operator can still reach the
// master (and see `last reload: FAILED`) while the file is broken.
//
// Every other key, and any of these whose value is malformed, is ignored:
// the result holds the defaults there. A file that cannot be read gives
// the error from os.ReadFile, wrapped, and no Config. A file with syntax
// errors gives the Config read from the part of it that parses, together
// with an *Error naming the syntax errors; otherwise the error is nil.
func LoadLenient(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c := base()
	c.Path = abs
	// A file with syntax errors still yields the attributes parsed before
	// and around them.
	file, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if body, ok := file.Body.(*hclsyntax.Body); ok {
		d := &decoder{pos: make(map[string]hcl.Range), bad: make(map[string]bool)}
		attr := func(name string) *hcl.Attribute {
			if a, ok := body.Attributes[name]; ok {
				return a.AsHCLAttribute()
			}
			return nil
		}
		d.string(attr("pidfile"), "pidfile", &c.Pidfile)
		d.string(attr("control_socket"), "control_socket", &c.ControlSocket)
		for _, t := range []struct {
			name string
			dst  *time.Duration
		}{
			{"worker_timeout", &c.WorkerTimeout},
			{"graceful_timeout", &c.GracefulTimeout},
			{"drain_delay", &c.DrainDelay},
		} {
			// A malformed or out-of-range value keeps the default.
			v := *t.dst
			d.duration(attr(t.name), t.name, &v)
			if d.bad[t.name] || v < 0 || (v == 0 && t.name != "drain_delay") {
				continue
			}
			*t.dst = v
		}
	}
	c.Normalize(filepath.Dir(abs))
	return c, errorOf(diags)
}
