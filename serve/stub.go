// Package serve is what workers serve: sites chosen by Host, routes by the
// longest prefix, and per route static files, a reverse proxy or a fixed
// response; plus the access log.
package serve

// STUB: signatures only; the serve implementer replaces this file and keeps
// every exported name and signature below.

import (
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/protocol"
	"github.com/hashicorp/go-hclog"
)

// Options are what New needs besides the configuration.
type Options struct {
	Logger hclog.Logger
	// Fallback serves requests no site route matches (the embedding
	// application's handler). Nil: the built-in welcome page and /healthz when
	// the configuration has no sites, else 404.
	Fallback protocol.Handler
}

// New builds the handler for cfg.Sites. It validates what config could not
// (static roots exist, upstream addresses parse) and returns wrapped errors.
func New(cfg *config.Config, opts Options) (protocol.Handler, error) { return nil, nil }

// Close releases what New opened (upstream connection pools).
// (The returned handler also implements io.Closer.)

// AccessLog writes one line per request to a file opened with O_APPEND.
type AccessLog struct{}

// OpenAccessLog opens path ("-" = stderr) in the given format ("text" =
// combined log format with pid and duration appended, "json" = one object per line).
func OpenAccessLog(path, format string, pid int) (*AccessLog, error) { return nil, nil }

// Log writes the line for one request; it has protocol.LogFunc's signature.
func (a *AccessLog) Log(r *protocol.Request, w *protocol.ResponseWriter, start time.Time) {}

// Reopen reopens the file (after logrotate moved it; USR1).
func (a *AccessLog) Reopen() error { return nil }

// Close closes the file.
func (a *AccessLog) Close() error { return nil }
