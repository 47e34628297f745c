// Package config holds forkd's configuration: the config.hcl schema, its
// defaults and validation. Errors name file:line.
//
// Load reads a file, Parse reads bytes, Default returns the built-in
// configuration used when there is no file. All three return a Config that
// has been completed and validated: every default filled in, workers >= 1,
// every relative path made absolute and every problem reported, each with
// the file position it comes from (see Error).
//
// The built-in defaults apply only when there is no file. A file that sets
// nothing (empty, blank or only comments) is an error, so that truncating
// config.hcl and reloading cannot quietly switch a running server to them.
//
// Relative paths in a file (static roots, pidfile, control_socket, log
// files, unix socket paths of listeners and upstreams) are resolved against
// the directory that holds the file, not the working directory, because the
// master may change directory and workers receive the configuration as JSON
// over ipc.
package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/forkd/forkd/protocol"
)

// DefaultFile is the configuration file forkd reads when none is named and
// the file exists in the working directory.
const DefaultFile = "config.hcl"

// Built-in defaults. A key left out of config.hcl takes the value below;
// the limits block's defaults are protocol.DefaultLimits.
const (
	DefaultAddress         = "127.0.0.1:8080"
	DefaultWorkerTimeout   = 30 * time.Second
	DefaultGracefulTimeout = 30 * time.Second
	DefaultLogLevel        = "info"
	DefaultLogFormat       = "text"
	DefaultAccessFormat    = "combined"
	DefaultSocketMode      = 0o666
	DefaultConnectTimeout  = 5 * time.Second
	DefaultResponseTimeout = 60 * time.Second
	DefaultKeepalive       = 64
	DefaultMaxFails        = 1
	DefaultFailTimeout     = 10 * time.Second
	DefaultRetryBodyBuffer = 64 << 10
	DefaultIndex           = "index.html"
	DefaultRespondStatus   = 200
	DefaultMetricsAddress  = "127.0.0.1:9100"
	DefaultMetricsPath     = "/metrics"
	DefaultDrainDelay      = 0 // TERM drains at once

	// DefaultKeepaliveTimeout closes idle upstream connections, as nginx's
	// upstream keepalive_timeout.
	DefaultKeepaliveTimeout = 60 * time.Second

	// The worker memory limit is off (0) by default; when set, a worker
	// is recycled after its RSS stays above it for the window.
	DefaultMaxWorkerMemory       = 0
	DefaultMaxWorkerMemoryWindow = 30 * time.Second

	// MaxWorkers bounds the workers key; more is a typo, not a plan.
	MaxWorkers = 1024
)

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
	// DrainDelay is how long, on TERM, health routes answer 503 while
	// everything else is served as usual, before the listeners close and
	// workers drain: the time a load balancer needs to notice.
	DrainDelay time.Duration `json:"drain_delay"`

	// MaxWorkerMemory is the resident set size, in bytes, above which a
	// worker is recycled once it has stayed there for
	// MaxWorkerMemoryWindow; 0 = no limit.
	MaxWorkerMemory       uint64        `json:"max_worker_memory"`
	MaxWorkerMemoryWindow time.Duration `json:"max_worker_memory_window"`

	Listen  []Listen `json:"listen"`
	Log     Log      `json:"log"`
	Limits  Limits   `json:"limits"`
	Sites   []Site   `json:"sites"`
	Metrics *Metrics `json:"metrics,omitempty"`
	HTTP2   HTTP2    `json:"http2"`

	// RateLimits are the rate_limit blocks: each is a zone shared by
	// every worker, which sites and routes name in their rate_limit.
	RateLimits []RateLimit `json:"rate_limits,omitempty"`
	// Shared sizes the embedding API's store shared by every worker
	// (forkd.Store); nil: no store.
	Shared *Shared `json:"shared,omitempty"`

	// Path is the file this came from ("" for built-in defaults). Load
	// makes it absolute.
	Path string `json:"path"`

	// Warnings are the problems Load and Parse found that do not make the
	// configuration invalid (an expired certificate), one line each in
	// Error's "file:line:col: summary; detail" form.
	Warnings []string `json:"-"`
}

// DescriptorReserve is how many descriptors a worker keeps for itself
// (listeners, log files, the ipc socket, upstream connections) beside one
// per client connection: max_connections + DescriptorReserve must fit in
// RLIMIT_NOFILE.
const DescriptorReserve = 64

// Listen is one listen block.
type Listen struct {
	Address string `json:"address"` // "host:port", "[::1]:port" or "unix:/path"
	// Name, when set, lets sites name the listeners they serve
	// (Site.Listen).
	Name      string `json:"name,omitempty"`
	ReusePort bool   `json:"reuse_port"`
	Mode      uint32 `json:"mode"` // unix sockets: file mode, default 0666; 0 for TCP
	// ProxyProtocol requires a PROXY protocol header (v1 or v2) at the
	// start of every connection; its source address becomes the client's.
	ProxyProtocol bool `json:"proxy_protocol"`
	// Trusted are the networks ("127.0.0.1/32", "10.0.0.0/8"; a bare
	// address means just it) that may send the header; connections from
	// elsewhere are refused. Unix listeners trust every peer.
	Trusted []string `json:"trusted,omitempty"`

	// MinVersion is the oldest TLS version accepted: "1.2" (default) or
	// "1.3"; TLS, when not empty, holds the certificates, chosen by SNI.
	MinVersion string    `json:"min_version,omitempty"`
	TLS        []TLSCert `json:"tls,omitempty"`

	// Protocols are what the listener speaks: on TLS, the ALPN names it
	// offers, in order ("h2", "http/1.1"); on a plain listener
	// "http/1.1", and "h2c" for HTTP/2 with prior knowledge. Empty means
	// the default (Protocols method).
	Protocols []string `json:"protocols,omitempty"`
}

// The protocol names of a listen block's protocols.
const (
	ProtoHTTP11 = "http/1.1"
	ProtoH2     = "h2"
	ProtoH2C    = "h2c"
)

// ProtocolList returns the listener's protocols, the default filled in:
// on TLS ["h2", "http/1.1"] (ALPN, in this order), on a plain listener
// ["http/1.1"]. protocols = ["http/1.1"] keeps a TLS listener to
// HTTP/1.1 (docs/tls.md).
func (l Listen) ProtocolList() []string {
	if len(l.Protocols) > 0 {
		return l.Protocols
	}
	if l.IsTLS() {
		return []string{ProtoH2, ProtoHTTP11}
	}
	return []string{ProtoHTTP11}
}

// HTTP2 reports whether the listener serves HTTP/2: "h2" on TLS, "h2c"
// otherwise.
func (l Listen) HTTP2() bool {
	want := ProtoH2C
	if l.IsTLS() {
		want = ProtoH2
	}
	return slices.Contains(l.ProtocolList(), want)
}

// HTTP2 is the http2 block: the limits of HTTP/2 connections.
type HTTP2 struct {
	// MaxConcurrentStreams is SETTINGS_MAX_CONCURRENT_STREAMS: the
	// streams a client may have open on one connection.
	MaxConcurrentStreams uint32 `json:"max_concurrent_streams"`
	// MaxReadFrameSize is SETTINGS_MAX_FRAME_SIZE: the largest frame
	// payload a client may send, 16KiB to 16MiB-1 (RFC 9113 §6.5.2).
	MaxReadFrameSize uint64 `json:"max_read_frame_size"`
}

// Defaults of the http2 block.
const (
	DefaultMaxConcurrentStreams = 128
	DefaultMaxReadFrameSize     = 16 << 10
)

// TrustedPrefixes returns Trusted parsed, for protocol.ProxyTrusted. The
// entries of a validated configuration all parse; others are left out.
func (l Listen) TrustedPrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(l.Trusted))
	for _, s := range l.Trusted {
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// parsePrefix reads a trusted network: a CIDR prefix without host bits,
// or a bare address standing for itself.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or a network such as \"10.0.0.0/8\"", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a network such as \"10.0.0.0/8\" or \"fd00::/8\"", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q has bits set past its /%d; write %q, or the address alone", s, p.Bits(), p.Masked().String())
	}
	return p, nil
}

// Log is the log block.
type Log struct {
	Level  string `json:"level"`  // trace, debug, info, warn or error
	Format string `json:"format"` // text or json
	File   string `json:"file"`   // "" or "-" = stderr
	Access string `json:"access"` // "" = off, "-" = stderr
	// AccessFormat is the access log's format: "combined" (the combined
	// log format, then pid and duration) or "json"; it does not follow
	// Format.
	AccessFormat string `json:"access_format"`
}

// Limits is the limits block: protocol.Limits, whose DefaultLimits are the
// block's defaults.
type Limits = protocol.Limits

// Site is one site block.
type Site struct {
	Name  string   `json:"name"`
	Hosts []string `json:"hosts"` // lower case; "*" = any, "*.example.com" = any subdomain
	// Listen names the listeners (Listen.Name) whose requests this site
	// serves; nil: every listener.
	Listen []string `json:"listen,omitempty"`
	// Headers change the header fields of every response of the site's
	// routes (and of its 404s), before the routes' own.
	Headers *Headers `json:"headers,omitempty"`
	Access
	// ErrorPages maps a status ("404") to a file whose contents replace
	// the body of forkd's own errors with that status, and of upstream
	// errors that have none; absolute after Load.
	ErrorPages map[string]string `json:"error_pages,omitempty"`
	// Compress compresses the responses of the site's routes; nil: off.
	Compress *Compress `json:"compress,omitempty"`
	Routes   []Route   `json:"routes"`
}

// Compress is a compress block: the responses it compresses, and how.
type Compress struct {
	// Algorithms are the content codings offered (CodingZstd, CodingBr,
	// CodingGzip), in the server's order of preference among those a
	// client accepts with the same q-value.
	Algorithms []string `json:"algorithms"`
	// Types are the media types compressed: "text/html", or "text/*"
	// for a whole top-level type.
	Types []string `json:"types"`
	// MinLength is the smallest body, in bytes, worth compressing (when
	// its length is known beforehand).
	MinLength int64 `json:"min_length"`
	// Cache bounds, in bytes, the compressed variants of static files
	// that each worker keeps for reuse; 0: none kept.
	Cache uint64 `json:"cache"`
	// Levels are the compression levels by coding (gzip 1-9, br 0-11,
	// zstd 1-22); a coding not named gets DefaultCompressLevels' level.
	Levels map[string]int `json:"levels,omitempty"`
}

// The content codings forkd compresses with (RFC 9110 section 8.4.1).
const (
	CodingZstd = "zstd"
	CodingBr   = "br"
	CodingGzip = "gzip"
)

// Defaults of a compress block.
var (
	DefaultCompressAlgorithms = []string{CodingZstd, CodingBr, CodingGzip}
	DefaultCompressTypes      = []string{"text/*", "application/json", "application/javascript", "image/svg+xml"}
)

// setDefaults fills in the algorithms and types of a block built in code;
// a zero min_length or cache means zero. It does nothing to nil.
func (c *Compress) setDefaults() {
	if c == nil {
		return
	}
	if c.Algorithms == nil {
		c.Algorithms = slices.Clone(DefaultCompressAlgorithms)
	}
	if c.Types == nil {
		c.Types = slices.Clone(DefaultCompressTypes)
	}
}

const (
	DefaultCompressMinLength = 256
	DefaultCompressCache     = 64 << 20
)

// DefaultCompressLevels are the levels of the codings a compress block's
// levels map leaves out: gzip's and zstd's defaults, and the brotli level
// that compresses about as fast as gzip's.
var DefaultCompressLevels = map[string]int{CodingGzip: 6, CodingBr: 5, CodingZstd: 3}

// CompressLevelRange is the lowest and highest level of each coding.
var CompressLevelRange = map[string][2]int{CodingGzip: {1, 9}, CodingBr: {0, 11}, CodingZstd: {1, 22}}

// Level returns the level of coding c: the block's, else the default.
func (c *Compress) Level(coding string) int {
	if l, ok := c.Levels[coding]; ok {
		return l
	}
	return DefaultCompressLevels[coding]
}

// Access is what sites and routes share besides headers: who may reach
// them (a site's checks run first, then its route's), and request IDs.
type Access struct {
	// Allow and Deny are client networks ("10.0.0.0/8", or a bare
	// address); a client in Deny, or not in a non-empty Allow, gets 403.
	// The client is the one a PROXY protocol header names.
	Allow []string `json:"allow,omitempty"`
	Deny  []string `json:"deny,omitempty"`
	// BasicAuth asks for a user and password (401); a route's replaces
	// its site's.
	BasicAuth *BasicAuth `json:"basic_auth,omitempty"`
	// RequestID names the field that carries a request's ID ("" off): an
	// ID a trusted peer sent is kept, else one is generated; it is sent
	// back, forwarded upstream and logged. A route's replaces its site's.
	RequestID string `json:"request_id,omitempty"`
	// RateLimit names the rate_limit blocks (RateLimit.Name) a request
	// must pass, in order; a site's come before its route's.
	RateLimit []string `json:"rate_limit,omitempty"`
}

// RateLimit is a rate_limit block: a limit on the requests of each key
// that holds across every worker (a shared-memory zone the master
// creates), like nginx's limit_req with burst=N nodelay.
type RateLimit struct {
	Name string `json:"name"`
	// Key is a template (Placeholder) whose expansion names the client
	// counted: "{remote_addr}" by default.
	Key string `json:"key"`
	// Rate is the rate as written ("10r/s", "600r/m"); Interval is the
	// time between two requests it allows.
	Rate     string        `json:"rate"`
	Interval time.Duration `json:"interval"`
	// Burst is how many requests beyond the rate may come at once.
	Burst int `json:"burst"`
	// Size is the zone's size in bytes; when its keys fill it, the ones
	// that lapse first are dropped (an approximate LRU).
	Size uint64 `json:"size"`
	// Status answers a refused request, with Retry-After.
	Status int `json:"status"`
}

// Defaults of a rate_limit block.
const (
	DefaultRateLimitKey    = "{remote_addr}"
	DefaultRateLimitSize   = 1 << 20
	DefaultRateLimitStatus = 429
)

// Shared is the shared block: the size of the embedding API's store.
type Shared struct {
	Size uint64 `json:"size"`
}

// DefaultSharedSize is the shared block's default size.
const DefaultSharedSize = 64 << 20

// ParseRate reads a rate_limit rate, "N r/s" or "N r/m" without spaces,
// and returns the interval between two requests.
func ParseRate(s string) (time.Duration, error) {
	num, unit, ok := strings.Cut(s, "r/")
	per := time.Second
	switch {
	case ok && unit == "s":
	case ok && unit == "m":
		per = time.Minute
	default:
		return 0, fmt.Errorf("%q is not a rate such as \"10r/s\" or \"600r/m\"", s)
	}
	n, err := strconv.ParseUint(num, 10, 32)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q: the number of requests must be a whole number from 1", s)
	}
	iv := per / time.Duration(n)
	if iv < time.Microsecond {
		return 0, fmt.Errorf("%q is above a million requests a second", s)
	}
	return iv, nil
}

// BasicAuth is a basic_auth block: users and their bcrypt hashes, written
// inline or in an htpasswd file (bcrypt entries only).
type BasicAuth struct {
	Realm    string            `json:"realm"`
	Users    map[string]string `json:"users,omitempty"`
	Htpasswd string            `json:"htpasswd,omitempty"` // absolute after Load
}

// DefaultRealm is basic_auth's realm when none is given.
const DefaultRealm = "restricted"

// Headers is a headers block: changes to a response's header fields, made
// just before its head is sent, on every response, errors included
// (nginx's add_header ... always). Values are templates (Placeholder).
type Headers struct {
	Set    map[string]string `json:"set,omitempty"`    // replace any field of the name
	Add    map[string]string `json:"add,omitempty"`    // add a field
	Remove []string          `json:"remove,omitempty"` // remove every field of the name
}

// Route is one route block inside a site; exactly one of Static, Proxy,
// Respond, Health, Redirect is set.
type Route struct {
	Prefix string `json:"prefix"`
	// Headers apply after the site's.
	Headers *Headers `json:"headers,omitempty"`
	Access
	// Compress replaces the site's compress block for this route.
	Compress *Compress `json:"compress,omitempty"`
	Static   *Static   `json:"static,omitempty"`
	Proxy    *Proxy    `json:"proxy,omitempty"`
	Respond  *Respond  `json:"respond,omitempty"`
	Health   *Health   `json:"health,omitempty"`
	Redirect *Redirect `json:"redirect,omitempty"`
}

// Health answers 200 "ok" while the instance serves and 503 while it is
// draining (drain_delay), so that a load balancer takes it out of rotation
// before its listeners close. It has no settings.
type Health struct{}

// Static serves files from Root.
type Static struct {
	Root     string   `json:"root"` // absolute after Load
	Index    []string `json:"index"`
	Dotfiles bool     `json:"dotfiles"`
	Gzip     bool     `json:"gzip"` // serve name.gz when present; default true
	// Precompressed are the codings (CodingBr, CodingZstd, CodingGzip),
	// in order of preference, whose files (name.br, name.zst, name.gz)
	// are served in place of name when present and not older; nil: Gzip
	// decides (["gzip"] or none).
	Precompressed []string `json:"precompressed,omitempty"`
	// Fallback is the file ("/index.html", below Root) served with 200
	// for a path that names no file, as single-page applications want;
	// "" answers 404.
	Fallback string `json:"fallback,omitempty"`
}

// Proxy forwards to upstreams.
type Proxy struct {
	Upstreams       []string      `json:"upstreams"` // "host:port" or "unix:/path"
	ConnectTimeout  time.Duration `json:"connect_timeout"`
	ResponseTimeout time.Duration `json:"response_timeout"`
	// Balance picks the upstream of each request: BalanceRoundRobin
	// (weighted, smooth, as nginx's) or BalanceLeastConn.
	Balance string `json:"balance"`
	// Weights, when set, has one positive weight per upstream.
	Weights []int `json:"weights"`
	// Keepalive is the number of idle upstream connections each worker
	// keeps per upstream; 0 keeps none.
	Keepalive int `json:"keepalive"`
	// KeepaliveTimeout closes an idle upstream connection kept that long
	// (nginx's upstream keepalive_timeout).
	KeepaliveTimeout time.Duration `json:"keepalive_timeout"`
	// MaxFails failures within FailTimeout take an upstream out of the
	// rotation for FailTimeout; 0 never does.
	MaxFails    int           `json:"max_fails"`
	FailTimeout time.Duration `json:"fail_timeout"`
	// Host is the Host sent upstream: ProxyHostClient (the client's) or a
	// fixed name.
	Host string `json:"host"`
	// Via adds "Via: 1.1 forkd" to requests sent upstream.
	Via bool `json:"via"`
	// RetryBodyBuffer is the largest request body read whole before it is
	// sent, so that the request can be retried on another upstream; larger
	// bodies stream, and are not retried once sent. 0 buffers none.
	RetryBodyBuffer uint64 `json:"retry_body_buffer"`
	// Upgrades are the protocols (Upgrade tokens, compared without case
	// and without a "/version") that are tunnelled after the upstream's
	// 101; a request asking for another is sent as a plain request, its
	// Upgrade removed. Nil means DefaultUpgrade alone; "h2c" is never
	// tunnelled, whatever the list says.
	Upgrades []string `json:"upgrades"`
	// StripPrefix removes the route's prefix from the path sent upstream:
	// "/api/users" under route "/api/" is sent as "/users".
	StripPrefix bool `json:"strip_prefix"`
	// RequestHeaders change the fields sent upstream.
	RequestHeaders *RequestHeaders `json:"request_headers,omitempty"`
}

// RequestHeaders is a proxy's request_headers block: fields removed from
// the client's request, then fields set (replacing the client's), before
// it goes upstream. Values are templates (Placeholder).
type RequestHeaders struct {
	Set    map[string]string `json:"set,omitempty"`
	Remove []string          `json:"remove,omitempty"`
}

// Proxy balance methods, and the Host value that means the client's.
const (
	BalanceRoundRobin = "round_robin"
	BalanceLeastConn  = "least_conn"
	ProxyHostClient   = "$host"
	// DefaultUpgrade is the one protocol proxy routes tunnel by default.
	DefaultUpgrade = "websocket"
	// UpgradeH2C is HTTP/2 over cleartext, which proxy routes never
	// tunnel: an upgraded connection would reach any path of the upstream
	// past the routing (h2c smuggling).
	UpgradeH2C = "h2c"
)

// Respond sends a fixed response.
type Respond struct {
	Status  int               `json:"status"`
	Body    string            `json:"body"`
	Headers map[string]string `json:"headers"`
}

// Metrics is the optional Prometheus listener.
type Metrics struct {
	Address string `json:"address"` // "host:port" or "unix:/path"
	Path    string `json:"path"`
}

// Default returns the built-in configuration: one listener on
// 127.0.0.1:8080, one worker per CPU, no sites.
func Default() *Config {
	c := base()
	c.SetDefaults()
	return c
}

// base is a configuration with every default that a file's decoding starts
// from: what a key left out of the file stays.
func base() *Config {
	return &Config{
		WorkerTimeout:         DefaultWorkerTimeout,
		GracefulTimeout:       DefaultGracefulTimeout,
		MaxWorkerMemory:       DefaultMaxWorkerMemory,
		MaxWorkerMemoryWindow: DefaultMaxWorkerMemoryWindow,
		DrainDelay:            DefaultDrainDelay,
		Log:                   Log{Level: DefaultLogLevel, Format: DefaultLogFormat, AccessFormat: DefaultAccessFormat},
		Limits:                protocol.DefaultLimits(),
		HTTP2:                 HTTP2{MaxConcurrentStreams: DefaultMaxConcurrentStreams, MaxReadFrameSize: DefaultMaxReadFrameSize},
	}
}

// SetDefaults replaces zero values that cannot be meant literally with their
// defaults: workers 0 becomes runtime.NumCPU(), no listeners becomes one on
// 127.0.0.1:8080, a unix listener's mode 0 becomes 0666, and zero timeouts
// (max_worker_memory_window among them), limits, log level and format,
// static index, proxy timeouts, respond status, site hosts and metrics
// address and path take the documented defaults.
// Booleans are left alone (a zero Static.Gzip stays false). It is meant for
// configurations built in code; Load calls it for the workers and listen
// keys only, so that an explicit zero in a file is reported, not replaced.
func (c *Config) SetDefaults() {
	c.setWorkersAndListen()
	if c.WorkerTimeout == 0 {
		c.WorkerTimeout = DefaultWorkerTimeout
	}
	if c.GracefulTimeout == 0 {
		c.GracefulTimeout = DefaultGracefulTimeout
	}
	setDuration(&c.MaxWorkerMemoryWindow, DefaultMaxWorkerMemoryWindow)
	if c.Log.Level == "" {
		c.Log.Level = DefaultLogLevel
	}
	if c.Log.Format == "" {
		c.Log.Format = DefaultLogFormat
	}
	if c.Log.AccessFormat == "" {
		c.Log.AccessFormat = DefaultAccessFormat
	}
	l, d := &c.Limits, protocol.DefaultLimits()
	setInt(&l.RequestLine, d.RequestLine)
	setInt(&l.HeaderBytes, d.HeaderBytes)
	setInt(&l.HeaderCount, d.HeaderCount)
	if l.BodyBytes == 0 {
		l.BodyBytes = d.BodyBytes
	}
	setDuration(&l.ReadHeaderTimeout, d.ReadHeaderTimeout)
	setDuration(&l.IdleTimeout, d.IdleTimeout)
	setDuration(&l.WriteTimeout, d.WriteTimeout)
	setInt(&l.MaxConnections, d.MaxConnections)
	if c.HTTP2.MaxConcurrentStreams == 0 {
		c.HTTP2.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if c.HTTP2.MaxReadFrameSize == 0 {
		c.HTTP2.MaxReadFrameSize = DefaultMaxReadFrameSize
	}
	for i := range c.Listen {
		if c.Listen[i].Mode == 0 && strings.HasPrefix(c.Listen[i].Address, unixPrefix) {
			c.Listen[i].Mode = DefaultSocketMode
		}
	}
	for i := range c.Sites {
		s := &c.Sites[i]
		if len(s.Hosts) == 0 {
			s.Hosts = []string{"*"}
		}
		s.Compress.setDefaults()
		for j := range s.Routes {
			r := &s.Routes[j]
			r.Compress.setDefaults()
			if r.Static != nil && len(r.Static.Index) == 0 {
				r.Static.Index = []string{DefaultIndex}
			}
			if r.Proxy != nil {
				setDuration(&r.Proxy.ConnectTimeout, DefaultConnectTimeout)
				setDuration(&r.Proxy.ResponseTimeout, DefaultResponseTimeout)
				setDuration(&r.Proxy.FailTimeout, DefaultFailTimeout)
				setDuration(&r.Proxy.KeepaliveTimeout, DefaultKeepaliveTimeout)
				if r.Proxy.Balance == "" {
					r.Proxy.Balance = BalanceRoundRobin
				}
				if r.Proxy.Host == "" {
					r.Proxy.Host = ProxyHostClient
				}
				if r.Proxy.Upgrades == nil {
					r.Proxy.Upgrades = []string{DefaultUpgrade}
				}
			}
			if r.Respond != nil {
				setInt(&r.Respond.Status, DefaultRespondStatus)
			}
			if r.Redirect != nil {
				setInt(&r.Redirect.Status, DefaultRedirectStatus)
			}
		}
	}
	if c.Metrics != nil {
		if c.Metrics.Address == "" {
			c.Metrics.Address = DefaultMetricsAddress
		}
		if c.Metrics.Path == "" {
			c.Metrics.Path = DefaultMetricsPath
		}
	}
}

// setWorkersAndListen applies the two defaults that a file may ask for
// with a zero value or by leaving blocks out.
func (c *Config) setWorkersAndListen() {
	if c.Workers == 0 {
		c.Workers = runtime.NumCPU()
	}
	if len(c.Listen) == 0 {
		c.Listen = []Listen{{Address: DefaultAddress}}
	}
}

func setInt(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

func setDuration(p *time.Duration, v time.Duration) {
	if *p == 0 {
		*p = v
	}
}

// Normalize makes every relative path in c absolute against dir (the
// directory of the configuration file; "" means the working directory) and
// puts site host names and the log level and format in lower case. Load and
// Parse call it; call it yourself on a configuration built in code.
func (c *Config) Normalize(dir string) {
	if dir == "" {
		dir = "."
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	abs := func(p string) string {
		if p == "" || p == "-" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	absAddr := func(a string) string {
		p, ok := strings.CutPrefix(a, unixPrefix)
		// "@name" is a Linux abstract socket, not a path.
		if !ok || p == "" || strings.HasPrefix(p, "@") {
			return a
		}
		return unixPrefix + abs(p)
	}
	c.Pidfile = abs(c.Pidfile)
	c.ControlSocket = abs(c.ControlSocket)
	c.Log.File = abs(c.Log.File)
	c.Log.Access = abs(c.Log.Access)
	c.Log.Level = strings.ToLower(c.Log.Level)
	c.Log.Format = strings.ToLower(c.Log.Format)
	c.Log.AccessFormat = strings.ToLower(c.Log.AccessFormat)
	for i := range c.Listen {
		l := &c.Listen[i]
		l.Address = absAddr(l.Address)
		for j := range l.TLS {
			l.TLS[j].Certificate = abs(l.TLS[j].Certificate)
			l.TLS[j].Key = abs(l.TLS[j].Key)
		}
	}
	if c.Metrics != nil {
		c.Metrics.Address = absAddr(c.Metrics.Address)
	}
	for i := range c.Sites {
		s := &c.Sites[i]
		for j, h := range s.Hosts {
			s.Hosts[j] = strings.ToLower(strings.TrimSuffix(h, "."))
		}
		if s.BasicAuth != nil {
			s.BasicAuth.Htpasswd = abs(s.BasicAuth.Htpasswd)
		}
		for k, v := range s.ErrorPages {
			s.ErrorPages[k] = abs(v)
		}
		for j := range s.Routes {
			r := &s.Routes[j]
			if r.Static != nil {
				r.Static.Root = abs(r.Static.Root)
			}
			if r.BasicAuth != nil {
				r.BasicAuth.Htpasswd = abs(r.BasicAuth.Htpasswd)
			}
			if r.Proxy != nil {
				for k, u := range r.Proxy.Upstreams {
					r.Proxy.Upstreams[k] = absAddr(u)
				}
			}
		}
	}
}

const unixPrefix = "unix:"

// Network splits the listen address into the network and address that
// net.Listen takes: ("tcp", "127.0.0.1:8080") or ("unix", "/run/forkd.sock").
func (l Listen) Network() (network, addr string) {
	if p, ok := strings.CutPrefix(l.Address, unixPrefix); ok {
		return "unix", p
	}
	return "tcp", l.Address
}

// Network splits the metrics address like Listen.Network does.
func (m Metrics) Network() (network, addr string) {
	return Listen{Address: m.Address}.Network()
}

// ControlSocketPath returns the control socket the master serves and the
// forkd status/reload/stop/scale commands dial: ControlSocket when set, else
// the pidfile's path with its ".pid" suffix replaced by ".sock", else ""
// (no control socket).
func (c *Config) ControlSocketPath() string {
	if c.ControlSocket != "" {
		return c.ControlSocket
	}
	if c.Pidfile == "" {
		return ""
	}
	return strings.TrimSuffix(c.Pidfile, ".pid") + ".sock"
}
