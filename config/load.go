package config

import (
	"fmt"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Load reads, completes and validates the configuration file at path. A
// file that cannot be read gives the *fs.PathError from os.ReadFile,
// wrapped; a file with problems gives an *Error listing all of them.
// Relative paths in the file are resolved against the file's directory.
func Load(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(src, path)
}

// LoadControl is Load without the checks of this machine (static roots, log
// directories, user and group, certificate and key files, which it does not
// read): what `forkd status|reload|stop|scale` need to find the control
// socket. An operator who may not read the keys, or who asks why the
// master refused a file whose static root has gone, can still reach it.
func LoadControl(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parse(src, path, noHostChecks)
}

// Check is Load for `forkd -t`: a directory that is to hold the pidfile,
// the control socket or a unix listener's socket and does not exist is a
// warning (in Config.Warnings), not an error. A service manager may make
// it just before the master starts (systemd's RuntimeDirectory=), so a
// check while the service is stopped must not fail; the master's start and
// a reload still refuse it, with the same file:line.
func Check(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parse(src, path, hostChecksWarnDirs)
}

// hostChecks says which checks of this machine parse makes.
type hostChecks int

const (
	allHostChecks      hostChecks = iota // Load, Parse: what the master needs
	hostChecksWarnDirs                   // Check: missing directories of the master's own files warn
	noHostChecks                         // LoadControl: none
)

// Parse does what Load does with src as the contents of the file named
// filename. Diagnostics name filename as given; relative paths in src are
// resolved against filename's directory, and Config.Path is filename made
// absolute. A src that sets nothing (empty, blank or only comments) is an
// error at filename:1:1.
func Parse(src []byte, filename string) (*Config, error) {
	return parse(src, filename, allHostChecks)
}

// parse is Parse; host says which checks of what the configuration asks of
// this machine to make.
func parse(src []byte, filename string, host hostChecks) (*Config, error) {
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		// The body of a file with syntax errors is partial; decoding it
		// would only add confusing follow-on errors.
		return nil, errorOf(diags)
	}
	if body, ok := file.Body.(*hclsyntax.Body); ok && len(body.Attributes) == 0 && len(body.Blocks) == 0 {
		// Built-in defaults apply only when there is no file: an emptied
		// config.hcl followed by a reload must not switch a running server
		// to them.
		start := hcl.Range{Filename: filename, Start: hcl.InitialPos, End: hcl.InitialPos}
		return nil, errorOf(hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Empty configuration",
			Detail:   "The file sets nothing (it is empty, blank or only comments). Built-in defaults apply only when there is no configuration file; write at least one setting, such as workers = 0.",
			Subject:  &start,
		}})
	}
	d := &decoder{pos: make(map[string]hcl.Range), bad: make(map[string]bool)}
	c := d.decodeFile(file.Body)

	abs, err := filepath.Abs(filename)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c.Path = abs
	// Workers 0 and no listen block are documented ways to ask for the
	// default; other zero values are checked by validate as written.
	c.setWorkersAndListen()
	c.Normalize(filepath.Dir(abs))
	v := &validator{pos: d.pos, skip: d.bad, noHost: host == noHostChecks, warnDirs: host == hostChecksWarnDirs}
	v.config(c)
	d.diags = append(d.diags, v.diags...)
	if err := errorOf(d.diags); err != nil {
		return nil, err
	}
	c.Warnings = warningsOf(d.diags)
	return c, nil
}

var (
	rootSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "workers"},
			{Name: "worker_timeout"},
			{Name: "graceful_timeout"},
			{Name: "max_requests"},
			{Name: "max_requests_jitter"},
			{Name: "pidfile"},
			{Name: "user"},
			{Name: "group"},
			{Name: "control_socket"},
			{Name: "max_worker_memory"},
			{Name: "max_worker_memory_window"},
			{Name: "drain_delay"},
		},
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "listen"},
			{Type: "log"},
			{Type: "limits"},
			{Type: "metrics"},
			{Type: "http2"},
			{Type: "site", LabelNames: []string{"name"}},
			{Type: "rate_limit", LabelNames: []string{"name"}},
			{Type: "shared"},
		},
	}
	rateLimitSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "key"}, {Name: "rate", Required: true}, {Name: "burst"}, {Name: "size"}, {Name: "status"},
		},
	}
	sharedSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "size"}},
	}
	listenSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "address", Required: true},
			{Name: "name"},
			{Name: "reuse_port"},
			{Name: "mode"},
			{Name: "proxy_protocol"},
			{Name: "trusted"},
			{Name: "min_version"},
			{Name: "protocols"},
		},
		Blocks: []hcl.BlockHeaderSchema{{Type: "tls"}},
	}
	logSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "level"}, {Name: "format"}, {Name: "file"}, {Name: "access"}, {Name: "access_format"},
		},
	}
	limitsSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "request_line"},
			{Name: "header_bytes"},
			{Name: "header_count"},
			{Name: "body_bytes"},
			{Name: "read_header_timeout"},
			{Name: "idle_timeout"},
			{Name: "write_timeout"},
			{Name: "max_connections"},
		},
	}
	http2Schema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "max_concurrent_streams"}, {Name: "max_read_frame_size"}},
	}
	metricsSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "address"}, {Name: "path"}},
	}
	siteSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "hosts"}, {Name: "listen"}, {Name: "allow"}, {Name: "deny"}, {Name: "error_pages"},
			{Name: "request_id"}, {Name: "rate_limit"},
		},
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "route", LabelNames: []string{"prefix"}}, {Type: "headers"}, {Type: "basic_auth"},
			{Type: "compress"},
		},
	}
	routeSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "allow"}, {Name: "deny"}, {Name: "request_id"}, {Name: "rate_limit"}},
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "static"}, {Type: "proxy"}, {Type: "respond"}, {Type: "health"}, {Type: "redirect"},
			{Type: "headers"}, {Type: "basic_auth"}, {Type: "compress"},
		},
	}
	compressSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "algorithms"}, {Name: "types"}, {Name: "min_length"}, {Name: "cache"}, {Name: "levels"}},
	}
	basicAuthSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "realm"}, {Name: "users"}, {Name: "htpasswd"}},
	}
	headersSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "set"}, {Name: "add"}, {Name: "remove"}},
	}
	staticSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "root", Required: true}, {Name: "index"}, {Name: "dotfiles"}, {Name: "gzip"}, {Name: "fallback"},
			{Name: "precompressed"},
		},
	}
	proxySchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "upstreams", Required: true}, {Name: "connect_timeout"}, {Name: "response_timeout"},
			{Name: "balance"}, {Name: "weights"}, {Name: "keepalive"}, {Name: "keepalive_timeout"},
			{Name: "max_fails"}, {Name: "fail_timeout"}, {Name: "host"}, {Name: "via"}, {Name: "retry_body_buffer"},
			{Name: "upgrades"}, {Name: "strip_prefix"},
		},
		Blocks: []hcl.BlockHeaderSchema{{Type: "request_headers"}},
	}
	requestHeadersSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "set"}, {Name: "remove"}},
	}
	healthSchema  = &hcl.BodySchema{}
	respondSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "status"}, {Name: "body"}, {Name: "headers"}},
	}
)

// decoder turns an HCL body into a Config, collecting diagnostics and the
// source range of every value under its key path (as validator names them)
// so that later checks can point at the line.
type decoder struct {
	diags hcl.Diagnostics
	pos   map[string]hcl.Range
	// bad holds the keys already reported, so that validation does not
	// add a second complaint about the same value.
	bad map[string]bool
}

// invalid reports a problem with the value at key.
func (d *decoder) invalid(key string, rng hcl.Range, summary, detail string) {
	d.bad[key] = true
	d.errorAt(rng, summary, detail)
}

// required marks the required attributes missing from a so that validation
// leaves their reporting to HCL's "Missing required argument".
func (d *decoder) required(a hcl.Attributes, key string, names ...string) {
	for _, n := range names {
		if a[n] == nil {
			d.bad[key+"."+n] = true
		}
	}
}

func (d *decoder) errorAt(rng hcl.Range, summary, detail string) {
	d.diags = append(d.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: rng.Ptr(),
	})
}

func (d *decoder) content(body hcl.Body, schema *hcl.BodySchema) *hcl.BodyContent {
	content, diags := body.Content(schema)
	d.diags = append(d.diags, diags...)
	return content
}

// single returns the only block of type typ, reporting any further ones.
func (d *decoder) single(blocks hcl.Blocks, typ string) *hcl.Block {
	bs := blocks.OfType(typ)
	for _, b := range bs[min(1, len(bs)):] {
		d.errorAt(b.DefRange, "Duplicate "+typ+" block",
			fmt.Sprintf("Only one %s block is allowed; the first is at line %d.", typ, bs[0].DefRange.Start.Line))
	}
	if len(bs) == 0 {
		return nil
	}
	return bs[0]
}

func (d *decoder) decodeFile(body hcl.Body) *Config {
	c := base()
	ct := d.content(body, rootSchema)
	a := ct.Attributes
	d.int(a["workers"], "workers", &c.Workers)
	d.duration(a["worker_timeout"], "worker_timeout", &c.WorkerTimeout)
	d.duration(a["graceful_timeout"], "graceful_timeout", &c.GracefulTimeout)
	d.int(a["max_requests"], "max_requests", &c.MaxRequests)
	d.int(a["max_requests_jitter"], "max_requests_jitter", &c.MaxRequestsJitter)
	d.string(a["pidfile"], "pidfile", &c.Pidfile)
	d.string(a["user"], "user", &c.User)
	d.string(a["group"], "group", &c.Group)
	d.string(a["control_socket"], "control_socket", &c.ControlSocket)
	d.size(a["max_worker_memory"], "max_worker_memory", &c.MaxWorkerMemory)
	d.duration(a["max_worker_memory_window"], "max_worker_memory_window", &c.MaxWorkerMemoryWindow)
	d.duration(a["drain_delay"], "drain_delay", &c.DrainDelay)

	for i, b := range ct.Blocks.OfType("listen") {
		key := fmt.Sprintf("listen[%d]", i)
		d.pos[key] = b.DefRange
		c.Listen = append(c.Listen, d.listen(b, key))
	}
	if b := d.single(ct.Blocks, "log"); b != nil {
		d.pos["log"] = b.DefRange
		la := d.content(b.Body, logSchema).Attributes
		d.string(la["level"], "log.level", &c.Log.Level)
		d.string(la["format"], "log.format", &c.Log.Format)
		d.string(la["file"], "log.file", &c.Log.File)
		d.string(la["access"], "log.access", &c.Log.Access)
		d.accessFormat(la["access_format"], "log.access_format", &c.Log.AccessFormat)
	}
	if b := d.single(ct.Blocks, "limits"); b != nil {
		d.pos["limits"] = b.DefRange
		la := d.content(b.Body, limitsSchema).Attributes
		l := &c.Limits
		d.int(la["request_line"], "limits.request_line", &l.RequestLine)
		d.int(la["header_bytes"], "limits.header_bytes", &l.HeaderBytes)
		d.int(la["header_count"], "limits.header_count", &l.HeaderCount)
		d.int64(la["body_bytes"], "limits.body_bytes", &l.BodyBytes)
		d.duration(la["read_header_timeout"], "limits.read_header_timeout", &l.ReadHeaderTimeout)
		d.duration(la["idle_timeout"], "limits.idle_timeout", &l.IdleTimeout)
		d.duration(la["write_timeout"], "limits.write_timeout", &l.WriteTimeout)
		d.int(la["max_connections"], "limits.max_connections", &l.MaxConnections)
	}
	if b := d.single(ct.Blocks, "metrics"); b != nil {
		d.pos["metrics"] = b.DefRange
		m := &Metrics{Address: DefaultMetricsAddress, Path: DefaultMetricsPath}
		ma := d.content(b.Body, metricsSchema).Attributes
		d.string(ma["address"], "metrics.address", &m.Address)
		d.string(ma["path"], "metrics.path", &m.Path)
		c.Metrics = m
	}
	if b := d.single(ct.Blocks, "http2"); b != nil {
		d.pos["http2"] = b.DefRange
		ha := d.content(b.Body, http2Schema).Attributes
		var n int64
		if attr := ha["max_concurrent_streams"]; attr != nil {
			d.int64(attr, "http2.max_concurrent_streams", &n)
			if n < 1 || n > math.MaxInt32 {
				d.invalid("http2.max_concurrent_streams", attr.Expr.Range(), "Invalid max_concurrent_streams",
					fmt.Sprintf("The value must be between 1 and %d; got %d.", math.MaxInt32, n))
			} else {
				c.HTTP2.MaxConcurrentStreams = uint32(n)
			}
		}
		d.size(ha["max_read_frame_size"], "http2.max_read_frame_size", &c.HTTP2.MaxReadFrameSize)
	}
	for i, b := range ct.Blocks.OfType("site") {
		key := fmt.Sprintf("sites[%d]", i)
		c.Sites = append(c.Sites, d.site(b, key))
	}
	for i, b := range ct.Blocks.OfType("rate_limit") {
		key := fmt.Sprintf("rate_limits[%d]", i)
		c.RateLimits = append(c.RateLimits, d.rateLimit(b, key))
	}
	if b := d.single(ct.Blocks, "shared"); b != nil {
		d.pos["shared"] = b.DefRange
		c.Shared = &Shared{Size: DefaultSharedSize}
		d.size(d.content(b.Body, sharedSchema).Attributes["size"], "shared.size", &c.Shared.Size)
	}
	return c
}

func (d *decoder) listen(b *hcl.Block, key string) Listen {
	var l Listen
	ct := d.content(b.Body, listenSchema)
	a := ct.Attributes
	d.listenTLS(a, ct.Blocks, key, &l)
	d.required(a, key, "address")
	d.string(a["address"], key+".address", &l.Address)
	d.string(a["name"], key+".name", &l.Name)
	d.bool(a["reuse_port"], key+".reuse_port", &l.ReusePort)
	d.bool(a["proxy_protocol"], key+".proxy_protocol", &l.ProxyProtocol)
	d.strings(a["trusted"], key+".trusted", &l.Trusted)
	d.strings(a["protocols"], key+".protocols", &l.Protocols)
	if attr := a["mode"]; attr != nil {
		d.mode(attr, key+".mode", &l.Mode)
	} else if strings.HasPrefix(l.Address, unixPrefix) {
		l.Mode = DefaultSocketMode
	}
	return l
}

func (d *decoder) site(b *hcl.Block, key string) Site {
	s := Site{Name: b.Labels[0]}
	d.pos[key] = b.DefRange
	d.pos[key+".name"] = b.LabelRanges[0]
	ct := d.content(b.Body, siteSchema)
	s.Hosts = []string{"*"}
	d.strings(ct.Attributes["hosts"], key+".hosts", &s.Hosts)
	d.strings(ct.Attributes["listen"], key+".listen", &s.Listen)
	if hb := d.single(ct.Blocks, "headers"); hb != nil {
		s.Headers = d.headers(hb, key+".headers")
	}
	d.access(ct.Attributes, ct.Blocks, key, &s.Access)
	if cb := d.single(ct.Blocks, "compress"); cb != nil {
		s.Compress = d.compress(cb, key+".compress")
	}
	d.stringMap(ct.Attributes["error_pages"], key+".error_pages", &s.ErrorPages)
	for i, rb := range ct.Blocks.OfType("route") {
		rkey := fmt.Sprintf("%s.routes[%d]", key, i)
		d.pos[rkey] = rb.DefRange
		d.pos[rkey+".prefix"] = rb.LabelRanges[0]
		r := Route{Prefix: rb.Labels[0]}
		rct, diags := rb.Body.Content(routeSchema)
		d.diags = append(d.diags, diags...)
		if diags.HasErrors() {
			// An unknown handler block: do not also call it missing.
			d.bad[rkey] = true
		}
		if hb := d.single(rct.Blocks, "headers"); hb != nil {
			r.Headers = d.headers(hb, rkey+".headers")
		}
		d.access(rct.Attributes, rct.Blocks, rkey, &r.Access)
		if cb := d.single(rct.Blocks, "compress"); cb != nil {
			r.Compress = d.compress(cb, rkey+".compress")
		}
		seen := make(map[string]*hcl.Block)
		for _, hb := range rct.Blocks {
			if hb.Type == "headers" || hb.Type == "basic_auth" || hb.Type == "compress" {
				continue
			}
			if first := seen[hb.Type]; first != nil {
				d.errorAt(hb.DefRange, "Duplicate "+hb.Type+" block",
					fmt.Sprintf("Route %q already has a %s block at line %d; a route takes exactly one of static, proxy, respond, health or redirect.",
						r.Prefix, hb.Type, first.DefRange.Start.Line))
				continue
			}
			seen[hb.Type] = hb
			hkey := rkey + "." + hb.Type
			d.pos[hkey] = hb.DefRange
			switch hb.Type {
			case "static":
				r.Static = d.static(hb, hkey)
			case "proxy":
				r.Proxy = d.proxy(hb, hkey)
			case "respond":
				r.Respond = d.respond(hb, hkey)
			case "health":
				d.content(hb.Body, healthSchema)
				r.Health = &Health{}
			case "redirect":
				r.Redirect = d.redirect(hb, hkey)
			}
		}
		s.Routes = append(s.Routes, r)
	}
	return s
}

func (d *decoder) rateLimit(b *hcl.Block, key string) RateLimit {
	r := RateLimit{Name: b.Labels[0], Key: DefaultRateLimitKey, Size: DefaultRateLimitSize, Status: DefaultRateLimitStatus}
	d.pos[key] = b.DefRange
	d.pos[key+".name"] = b.LabelRanges[0]
	a := d.content(b.Body, rateLimitSchema).Attributes
	d.required(a, key, "rate")
	d.string(a["key"], key+".key", &r.Key)
	d.string(a["rate"], key+".rate", &r.Rate)
	d.int(a["burst"], key+".burst", &r.Burst)
	d.size(a["size"], key+".size", &r.Size)
	d.int(a["status"], key+".status", &r.Status)
	if iv, err := ParseRate(r.Rate); err == nil {
		r.Interval = iv
	}
	return r
}

func (d *decoder) static(b *hcl.Block, key string) *Static {
	st := &Static{Index: []string{DefaultIndex}, Gzip: true}
	a := d.content(b.Body, staticSchema).Attributes
	d.required(a, key, "root")
	d.string(a["root"], key+".root", &st.Root)
	d.strings(a["index"], key+".index", &st.Index)
	d.bool(a["dotfiles"], key+".dotfiles", &st.Dotfiles)
	d.bool(a["gzip"], key+".gzip", &st.Gzip)
	d.string(a["fallback"], key+".fallback", &st.Fallback)
	d.strings(a["precompressed"], key+".precompressed", &st.Precompressed)
	return st
}

func (d *decoder) compress(b *hcl.Block, key string) *Compress {
	d.pos[key] = b.DefRange
	c := &Compress{
		Algorithms: slices.Clone(DefaultCompressAlgorithms), Types: slices.Clone(DefaultCompressTypes),
		MinLength: DefaultCompressMinLength, Cache: DefaultCompressCache,
	}
	a := d.content(b.Body, compressSchema).Attributes
	d.strings(a["algorithms"], key+".algorithms", &c.Algorithms)
	d.strings(a["types"], key+".types", &c.Types)
	d.int64(a["min_length"], key+".min_length", &c.MinLength)
	d.size(a["cache"], key+".cache", &c.Cache)
	d.intMap(a["levels"], key+".levels", &c.Levels)
	return c
}

func (d *decoder) proxy(b *hcl.Block, key string) *Proxy {
	p := &Proxy{
		ConnectTimeout: DefaultConnectTimeout, ResponseTimeout: DefaultResponseTimeout,
		Balance: BalanceRoundRobin, Keepalive: DefaultKeepalive, KeepaliveTimeout: DefaultKeepaliveTimeout,
		MaxFails: DefaultMaxFails, FailTimeout: DefaultFailTimeout, Host: ProxyHostClient,
		RetryBodyBuffer: DefaultRetryBodyBuffer, Upgrades: []string{DefaultUpgrade},
	}
	ct := d.content(b.Body, proxySchema)
	a := ct.Attributes
	d.required(a, key, "upstreams")
	d.bool(a["strip_prefix"], key+".strip_prefix", &p.StripPrefix)
	if rb := d.single(ct.Blocks, "request_headers"); rb != nil {
		rkey := key + ".request_headers"
		d.pos[rkey] = rb.DefRange
		rh := &RequestHeaders{}
		ra := d.content(rb.Body, requestHeadersSchema).Attributes
		d.stringMap(ra["set"], rkey+".set", &rh.Set)
		d.strings(ra["remove"], rkey+".remove", &rh.Remove)
		p.RequestHeaders = rh
	}
	d.strings(a["upstreams"], key+".upstreams", &p.Upstreams)
	d.duration(a["connect_timeout"], key+".connect_timeout", &p.ConnectTimeout)
	d.duration(a["response_timeout"], key+".response_timeout", &p.ResponseTimeout)
	d.string(a["balance"], key+".balance", &p.Balance)
	d.ints(a["weights"], key+".weights", &p.Weights)
	d.int(a["keepalive"], key+".keepalive", &p.Keepalive)
	d.duration(a["keepalive_timeout"], key+".keepalive_timeout", &p.KeepaliveTimeout)
	d.int(a["max_fails"], key+".max_fails", &p.MaxFails)
	d.duration(a["fail_timeout"], key+".fail_timeout", &p.FailTimeout)
	d.string(a["host"], key+".host", &p.Host)
	d.bool(a["via"], key+".via", &p.Via)
	d.size(a["retry_body_buffer"], key+".retry_body_buffer", &p.RetryBodyBuffer)
	d.strings(a["upgrades"], key+".upgrades", &p.Upgrades)
	return p
}

func (d *decoder) headers(b *hcl.Block, key string) *Headers {
	d.pos[key] = b.DefRange
	h := &Headers{}
	a := d.content(b.Body, headersSchema).Attributes
	d.stringMap(a["set"], key+".set", &h.Set)
	d.stringMap(a["add"], key+".add", &h.Add)
	d.strings(a["remove"], key+".remove", &h.Remove)
	return h
}

// access decodes allow, deny and basic_auth of a site or route.
func (d *decoder) access(a hcl.Attributes, blocks hcl.Blocks, key string, dst *Access) {
	d.strings(a["allow"], key+".allow", &dst.Allow)
	d.strings(a["deny"], key+".deny", &dst.Deny)
	d.string(a["request_id"], key+".request_id", &dst.RequestID)
	d.strings(a["rate_limit"], key+".rate_limit", &dst.RateLimit)
	b := d.single(blocks, "basic_auth")
	if b == nil {
		return
	}
	bkey := key + ".basic_auth"
	d.pos[bkey] = b.DefRange
	ba := &BasicAuth{Realm: DefaultRealm}
	ba2 := d.content(b.Body, basicAuthSchema).Attributes
	d.string(ba2["realm"], bkey+".realm", &ba.Realm)
	d.stringMap(ba2["users"], bkey+".users", &ba.Users)
	d.string(ba2["htpasswd"], bkey+".htpasswd", &ba.Htpasswd)
	dst.BasicAuth = ba
}

func (d *decoder) respond(b *hcl.Block, key string) *Respond {
	r := &Respond{Status: DefaultRespondStatus}
	a := d.content(b.Body, respondSchema).Attributes
	d.int(a["status"], key+".status", &r.Status)
	d.string(a["body"], key+".body", &r.Body)
	d.stringMap(a["headers"], key+".headers", &r.Headers)
	return r
}

// value evaluates attr (no variables, no functions) and converts it to ty.
// It returns false, having reported why when there was a problem, when the
// attribute is absent, null or wrong.
func (d *decoder) value(attr *hcl.Attribute, key string, ty cty.Type, want string) (cty.Value, bool) {
	if attr == nil {
		return cty.NilVal, false
	}
	d.pos[key] = attr.Expr.Range()
	v, diags := attr.Expr.Value(nil)
	d.diags = append(d.diags, diags...)
	if diags.HasErrors() {
		d.bad[key] = true
	}
	if diags.HasErrors() || v.IsNull() {
		return cty.NilVal, false
	}
	cv, err := convert.Convert(v, ty)
	if err != nil || !cv.IsWhollyKnown() {
		d.invalid(key, attr.Expr.Range(), "Incorrect attribute value type",
			fmt.Sprintf("Inappropriate value for attribute %q: %s is required.", attr.Name, want))
		return cty.NilVal, false
	}
	return cv, true
}

func (d *decoder) string(attr *hcl.Attribute, key string, dst *string) {
	if v, ok := d.value(attr, key, cty.String, "a string"); ok {
		*dst = v.AsString()
	}
}

// accessFormat decodes log.access_format: "combined" or "json". The log
// block's other values are checked by validate; this one is checked here.
func (d *decoder) accessFormat(attr *hcl.Attribute, key string, dst *string) {
	v, ok := d.value(attr, key, cty.String, "a string")
	if !ok {
		return
	}
	switch f := v.AsString(); strings.ToLower(f) {
	case "combined", "json":
		*dst = f
	default:
		d.invalid(key, attr.Expr.Range(), "Invalid access log format",
			fmt.Sprintf("The format %q is not combined or json.", f))
	}
}

func (d *decoder) bool(attr *hcl.Attribute, key string, dst *bool) {
	if v, ok := d.value(attr, key, cty.Bool, "a bool"); ok {
		*dst = v.True()
	}
}

// integer returns attr as a whole number that fits an int64.
func (d *decoder) integer(attr *hcl.Attribute, key string) (int64, bool) {
	v, ok := d.value(attr, key, cty.Number, "a number")
	if !ok {
		return 0, false
	}
	f := v.AsBigFloat()
	n, acc := f.Int64()
	if !f.IsInt() || acc != big.Exact {
		d.invalid(key, attr.Expr.Range(), "Invalid number",
			fmt.Sprintf("The %q value must be a whole number that fits in 64 bits.", attr.Name))
		return 0, false
	}
	return n, true
}

func (d *decoder) int(attr *hcl.Attribute, key string, dst *int) {
	if n, ok := d.integer(attr, key); ok {
		*dst = int(n) // int is 64 bits on every platform forkd runs on
	}
}

func (d *decoder) int64(attr *hcl.Attribute, key string, dst *int64) {
	if n, ok := d.integer(attr, key); ok {
		*dst = n
	}
}

func (d *decoder) duration(attr *hcl.Attribute, key string, dst *time.Duration) {
	v, ok := d.value(attr, key, cty.DynamicPseudoType, "")
	if !ok {
		return
	}
	if v.Type() != cty.String {
		d.invalid(key, attr.Expr.Range(), "Invalid duration",
			fmt.Sprintf("The %q value must be a duration string such as \"30s\", \"1m30s\" or \"500ms\".", attr.Name))
		return
	}
	dur, err := time.ParseDuration(v.AsString())
	if err != nil {
		d.invalid(key, attr.Expr.Range(), "Invalid duration",
			fmt.Sprintf("The %q value %q is not a duration; use a number with a unit: ns, us, ms, s, m or h (\"30s\", \"1m30s\").", attr.Name, v.AsString()))
		return
	}
	*dst = dur
}

// size reads a number of bytes: a string with an optional unit ("512MiB",
// "300MB", "1048576", "0") or a whole number of bytes.
func (d *decoder) size(attr *hcl.Attribute, key string, dst *uint64) {
	v, ok := d.value(attr, key, cty.DynamicPseudoType, "")
	if !ok {
		return
	}
	var n uint64
	switch v.Type() {
	case cty.String:
		n, ok = parseSize(v.AsString())
	case cty.Number:
		f := v.AsBigFloat()
		var acc big.Accuracy
		n, acc = f.Uint64()
		ok = f.IsInt() && acc == big.Exact
	default:
		ok = false
	}
	if !ok {
		d.invalid(key, attr.Expr.Range(), "Invalid size",
			fmt.Sprintf("The %q value must be a whole number of bytes, optionally with a unit: B, kB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), such as \"512MiB\"; \"0\" means no limit.", attr.Name))
		return
	}
	*dst = n
}

// sizeUnits are the units parseSize knows, in lower case.
var sizeUnits = map[string]uint64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// parseSize reads a whole number of bytes with an optional unit from
// sizeUnits, in any case and optionally after a space: "512MiB", "300 MB",
// "1048576". It reports false for anything else, negative numbers and
// fractions included, and for sizes that do not fit in 64 bits.
func parseSize(s string) (uint64, bool) {
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	n, err := strconv.ParseUint(s[:i], 10, 64)
	if err != nil {
		return 0, false
	}
	unit, ok := sizeUnits[strings.ToLower(strings.TrimPrefix(s[i:], " "))]
	if !ok || n > math.MaxUint64/unit {
		return 0, false
	}
	return n * unit, true
}

// mode reads a unix socket's file mode: an octal string ("0660", "660",
// "0o660") or a number whose decimal digits are read as octal (660 means
// 0660, as chmod reads it; HCL has no octal literals).
func (d *decoder) mode(attr *hcl.Attribute, key string, dst *uint32) {
	v, ok := d.value(attr, key, cty.DynamicPseudoType, "")
	if !ok {
		return
	}
	var s string
	switch v.Type() {
	case cty.String:
		s = strings.TrimPrefix(strings.TrimPrefix(v.AsString(), "0o"), "0O")
	case cty.Number:
		f := v.AsBigFloat()
		// Bound the number before formatting it: 1e999999999 is a number.
		if n, acc := f.Uint64(); f.IsInt() && acc == big.Exact && n <= 7777 {
			s = strconv.FormatUint(n, 10)
		}
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if s == "" || err != nil || m > 0o777 {
		d.invalid(key, attr.Expr.Range(), "Invalid socket mode",
			"The mode must be octal permission bits between 0 and 0777, such as \"0660\".")
		return
	}
	*dst = uint32(m)
}

func (d *decoder) strings(attr *hcl.Attribute, key string, dst *[]string) {
	v, ok := d.value(attr, key, cty.List(cty.String), "a list of strings")
	if !ok {
		return
	}
	items, _ := hcl.ExprList(attr.Expr)
	out := make([]string, 0, v.LengthInt())
	for i, it := 0, v.ElementIterator(); it.Next(); i++ {
		_, ev := it.Element()
		ekey := fmt.Sprintf("%s[%d]", key, i)
		if i < len(items) {
			d.pos[ekey] = items[i].Range()
		}
		if ev.IsNull() {
			d.invalid(key, d.pos[ekey], "Invalid list element",
				fmt.Sprintf("The %q list must not contain null.", attr.Name))
			return
		}
		out = append(out, ev.AsString())
	}
	*dst = out
}

func (d *decoder) ints(attr *hcl.Attribute, key string, dst *[]int) {
	v, ok := d.value(attr, key, cty.List(cty.Number), "a list of numbers")
	if !ok {
		return
	}
	out := make([]int, 0, v.LengthInt())
	for it := v.ElementIterator(); it.Next(); {
		_, ev := it.Element()
		var n int64
		var acc big.Accuracy
		if !ev.IsNull() {
			f := ev.AsBigFloat()
			n, acc = f.Int64()
			ok = f.IsInt() && acc == big.Exact
		}
		if ev.IsNull() || !ok {
			d.invalid(key, attr.Expr.Range(), "Invalid list element",
				fmt.Sprintf("The %q list must hold whole numbers.", attr.Name))
			return
		}
		out = append(out, int(n))
	}
	*dst = out
}

// keyPositions records where each key of a map attribute is written, so
// that an error about one entry points at its line.
func (d *decoder) keyPositions(attr *hcl.Attribute, key string) {
	pairs, _ := hcl.ExprMap(attr.Expr)
	for _, p := range pairs {
		if k, diags := p.Key.Value(nil); !diags.HasErrors() && k.Type() == cty.String {
			d.pos[fmt.Sprintf("%s[%q]", key, k.AsString())] = p.Key.Range()
		}
	}
}

// intMap decodes a map of whole numbers, keeping each key's position.
func (d *decoder) intMap(attr *hcl.Attribute, key string, dst *map[string]int) {
	v, ok := d.value(attr, key, cty.Map(cty.Number), "a map of numbers")
	if !ok {
		return
	}
	d.keyPositions(attr, key)
	out := make(map[string]int, v.LengthInt())
	for it := v.ElementIterator(); it.Next(); {
		k, ev := it.Element()
		var n int64
		acc := big.Below
		if !ev.IsNull() {
			f := ev.AsBigFloat()
			if f.IsInt() {
				n, acc = f.Int64()
			}
		}
		if acc != big.Exact {
			d.invalid(key, attr.Expr.Range(), "Invalid map element",
				fmt.Sprintf("The %q map must hold whole numbers.", attr.Name))
			return
		}
		out[k.AsString()] = int(n)
	}
	*dst = out
}

func (d *decoder) stringMap(attr *hcl.Attribute, key string, dst *map[string]string) {
	v, ok := d.value(attr, key, cty.Map(cty.String), "a map of strings")
	if !ok {
		return
	}
	d.keyPositions(attr, key)
	out := make(map[string]string, v.LengthInt())
	for it := v.ElementIterator(); it.Next(); {
		k, ev := it.Element()
		if ev.IsNull() {
			d.invalid(key, attr.Expr.Range(), "Invalid map element",
				fmt.Sprintf("The %q map must not contain null.", attr.Name))
			return
		}
		out[k.AsString()] = ev.AsString()
	}
	*dst = out
}
