// Package logging builds forkd's hclog loggers from the log block and keeps
// the log file reopenable, so USR1 after logrotate moves it starts a new file.
package logging

import (
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/forkd/forkd/config"
)

// File is an io.Writer over a log file that can be reopened in place. With
// no path it writes to stderr and Reopen does nothing.
type File struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

// OpenFile opens path for appending ("" or "-" = stderr).
func OpenFile(path string) (*File, error) {
	if path == "-" {
		path = ""
	}
	lf := &File{path: path}
	if err := lf.Reopen(); err != nil {
		return nil, err
	}
	return lf, nil
}

// Write writes p in one write(2); with O_APPEND lines from several processes
// sharing the file never interleave.
func (lf *File) Write(p []byte) (int, error) {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.f == nil {
		return os.Stderr.Write(p)
	}
	return lf.f.Write(p)
}

// Reopen closes and reopens the file by path.
func (lf *File) Reopen() error {
	if lf.path == "" {
		return nil
	}
	f, err := os.OpenFile(lf.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open log file: %w", err)
	}
	lf.mu.Lock()
	old := lf.f
	lf.f = f
	lf.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Close closes the file.
func (lf *File) Close() error {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.f == nil {
		return nil
	}
	err := lf.f.Close()
	lf.f = nil
	return err
}

// Path returns the file's path ("" = stderr).
func (lf *File) Path() string { return lf.path }

// New returns a logger named name writing to out with the level and format of c.
func New(c config.Log, name string, out io.Writer) hclog.Logger {
	lvl := hclog.LevelFromString(c.Level)
	if lvl == hclog.NoLevel {
		lvl = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:            name,
		Level:           lvl,
		Output:          out,
		JSONFormat:      c.Format == "json",
		IncludeLocation: false,
		TimeFormat:      "2006-01-02T15:04:05.000Z07:00",
		DisableTime:     false,
		Color:           hclog.ColorOff,
	})
}
