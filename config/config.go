// Package config holds forkd's configuration: the config.hcl schema, its
// defaults and validation. Errors name file:line.
package config

import "time"

// Config is the whole validated configuration. It travels to workers as JSON.
type Config struct {
	Workers           int           `json:"workers"` // 0 in the file = NumCPU; after Load always >= 1
	WorkerTimeout     time.Duration `json:"worker_timeout"`
	GracefulTimeout   time.Duration `json:"graceful_timeout"`
	MaxRequests       int           `json:"max_requests"`
	MaxRequestsJitter int           `json:"max_requests_jitter"`
	Pidfile           string        `json:"pidfile"`
	User              string        `json:"user"`
	Group             string        `json:"group"`
	ControlSocket     string        `json:"control_socket"`

	Listen  []Listen `json:"listen"`
	Log     Log      `json:"log"`
	Limits  Limits   `json:"limits"`
	Sites   []Site   `json:"sites"`
	Metrics *Metrics `json:"metrics,omitempty"`

	// Path is the file this came from ("" for built-in defaults).
	Path string `json:"path"`
}

// Listen is one listen block.
type Listen struct {
	Address   string `json:"address"` // "host:port", "[::1]:port" or "unix:/path"
	ReusePort bool   `json:"reuse_port"`
	Mode      uint32 `json:"mode"` // unix sockets: file mode, default 0666
}

// Log is the log block.
type Log struct {
	Level  string `json:"level"`
	Format string `json:"format"`
	File   string `json:"file"`
	Access string `json:"access"`
}

// Limits is the limits block.
type Limits struct {
	RequestLine       int           `json:"request_line"`
	HeaderBytes       int           `json:"header_bytes"`
	HeaderCount       int           `json:"header_count"`
	BodyBytes         int64         `json:"body_bytes"`
	ReadHeaderTimeout time.Duration `json:"read_header_timeout"`
	IdleTimeout       time.Duration `json:"idle_timeout"`
	WriteTimeout      time.Duration `json:"write_timeout"`
	MaxConnections    int           `json:"max_connections"`
}

// Site is one site block.
type Site struct {
	Name   string   `json:"name"`
	Hosts  []string `json:"hosts"`
	Routes []Route  `json:"routes"`
}

// Route is one route block inside a site; exactly one of Static, Proxy,
// Respond is set.
type Route struct {
	Prefix  string   `json:"prefix"`
	Static  *Static  `json:"static,omitempty"`
	Proxy   *Proxy   `json:"proxy,omitempty"`
	Respond *Respond `json:"respond,omitempty"`
}

// Static serves files from Root.
type Static struct {
	Root     string   `json:"root"` // absolute after Load
	Index    []string `json:"index"`
	Dotfiles bool     `json:"dotfiles"`
	Gzip     bool     `json:"gzip"` // serve name.gz when present; default true
}

// Proxy forwards to upstreams.
type Proxy struct {
	Upstreams       []string      `json:"upstreams"`
	ConnectTimeout  time.Duration `json:"connect_timeout"`
	ResponseTimeout time.Duration `json:"response_timeout"`
}

// Respond sends a fixed response.
type Respond struct {
	Status  int               `json:"status"`
	Body    string            `json:"body"`
	Headers map[string]string `json:"headers"`
}

// Metrics is the optional Prometheus listener.
type Metrics struct {
	Address string `json:"address"`
	Path    string `json:"path"`
}
