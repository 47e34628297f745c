package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0", 0, true},
		{"1048576", 1 << 20, true},
		{"512MiB", 512 << 20, true},
		{"1GiB", 1 << 30, true},
		{"300MB", 300e6, true},
		{"2 TiB", 2 << 40, true},
		{"64kb", 64000, true},
		{"64KiB", 64 << 10, true},
		{"1mib", 1 << 20, true},
		{"100B", 100, true},
		{"18446744073709551615", 1<<64 - 1, true},

		{"", 0, false},
		{"MiB", 0, false},
		{"-1", 0, false},
		{"1.5GiB", 0, false},
		{"1e9", 0, false},
		{"512M", 0, false},
		{"512 MiB ", 0, false},
		{" 512MiB", 0, false},
		{"512  MiB", 0, false},
		{"lots", 0, false},
		{"18446744073709551616", 0, false},
		{"16777216TiB", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseSize(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseSize(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestMaxWorkerMemory(t *testing.T) {
	tests := []struct {
		src    string
		mem    uint64
		window time.Duration
		err    string // "" = valid; else the expected "line:col: text"
	}{
		{"workers = 1\n", 0, DefaultMaxWorkerMemoryWindow, ""},
		{"max_worker_memory = \"0\"\n", 0, 30 * time.Second, ""},
		{"max_worker_memory = \"512MiB\"\n", 512 << 20, 30 * time.Second, ""},
		{"max_worker_memory = \"1GiB\"\nmax_worker_memory_window = \"2m\"\n", 1 << 30, 2 * time.Minute, ""},
		{"max_worker_memory = \"300MB\"\n", 300e6, 30 * time.Second, ""},
		{"max_worker_memory = \"1048576\"\n", 1 << 20, 30 * time.Second, ""},
		{"max_worker_memory = 1048576\n", 1 << 20, 30 * time.Second, ""},

		{"max_worker_memory = \"lots\"\n", 0, 0, `1:21: Invalid size; The "max_worker_memory" value must be a whole number of bytes`},
		{"workers = 1\nmax_worker_memory = \"1.5GiB\"\n", 0, 0, "2:21: Invalid size"},
		{"max_worker_memory = -1\n", 0, 0, "1:21: Invalid size"},
		{"max_worker_memory = 1.5\n", 0, 0, "1:21: Invalid size"},
		{"max_worker_memory = true\n", 0, 0, "1:21: Invalid size"},
		{"max_worker_memory = [\"1\"]\n", 0, 0, "1:21: Invalid size"},
		{"max_worker_memory_window = \"0s\"\n", 0, 0, `1:28: Invalid max_worker_memory_window; The duration must be greater than zero; got "0s".`},
		{"max_worker_memory_window = \"-1s\"\n", 0, 0, "1:28: Invalid max_worker_memory_window"},
		{"max_worker_memory_window = \"soon\"\n", 0, 0, `1:28: Invalid duration; The "max_worker_memory_window" value "soon" is not a duration`},
		{"max_worker_memory_window = 30\n", 0, 0, "1:28: Invalid duration"},
	}
	for _, tt := range tests {
		c, err := Parse([]byte(tt.src), "mem.hcl")
		if tt.err == "" {
			if err != nil {
				t.Errorf("%q: %v", tt.src, err)
			} else if c.MaxWorkerMemory != tt.mem || c.MaxWorkerMemoryWindow != tt.window {
				t.Errorf("%q: max_worker_memory %d, window %v; want %d, %v", tt.src, c.MaxWorkerMemory, c.MaxWorkerMemoryWindow, tt.mem, tt.window)
			}
			continue
		}
		var cerr *Error
		if !errors.As(err, &cerr) || len(cerr.Diags) != 1 {
			t.Errorf("%q: err = %v, want one diagnostic", tt.src, err)
			continue
		}
		if want := "mem.hcl:" + tt.err; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: err = %q, want prefix %q", tt.src, err, want)
		}
	}
}

// A configuration built in code gets the window's default from
// SetDefaults; Validate refuses a negative one.
func TestMaxWorkerMemoryBuilt(t *testing.T) {
	c := &Config{MaxWorkerMemory: 1 << 30}
	c.SetDefaults()
	if c.MaxWorkerMemoryWindow != DefaultMaxWorkerMemoryWindow {
		t.Errorf("window = %v, want %v", c.MaxWorkerMemoryWindow, DefaultMaxWorkerMemoryWindow)
	}
	c.MaxWorkerMemoryWindow = -time.Second
	want := fmt.Sprintf("max_worker_memory_window: Invalid max_worker_memory_window; The duration must be greater than zero; got %q.", "-1s")
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate = %v, want %s", err, want)
	}
}
