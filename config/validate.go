package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Validate reports every problem in c as an *Error, or returns nil. It
// checks a complete configuration and changes nothing but the TLS file contents: build one in code
// by starting from Default, or call SetDefaults and Normalize before
// Validate. Load and Parse validate already, with file positions.
//
// Besides the values themselves it checks what they ask of this machine
// and that would stop workers from booting: each listener's certificate and
// key files can be read and match (their contents are kept in the Listen's
// TLSCert, the one change Validate makes), each static root is an existing
// directory, the directories of the log and access log files exist, and
// user and group, when set, are known to the system (user.Lookup, or a
// numeric id).
func (c *Config) Validate() error {
	v := &validator{}
	v.config(c)
	return errorOf(v.diags)
}

// validator checks a Config. pos maps key paths such as
// "sites[0].routes[1].proxy.upstreams[0]" to where the value was written;
// it is nil for a configuration built in code, and diagnostics then name
// the key path instead of a line.
type validator struct {
	pos  map[string]hcl.Range
	skip map[string]bool // keys whose problem was reported while decoding
	// noHost skips the checks of this machine (files, users) and the
	// reading of certificates (LoadControl).
	noHost bool
	// warnDirs makes a missing directory for the pidfile, the control
	// socket or a unix socket a warning (Check).
	warnDirs bool
	diags    hcl.Diagnostics
	// zones holds the names of the rate_limit blocks.
	zones map[string]bool
}

// rangeOf finds where key, or failing that its nearest parent, was written.
func (v *validator) rangeOf(key string) *hcl.Range {
	for k := key; k != ""; k = parentKey(k) {
		if r, ok := v.pos[k]; ok {
			return r.Ptr()
		}
	}
	return nil
}

// parentKey strips the last ".name" or "[index]" from a key path.
func parentKey(k string) string {
	if strings.HasSuffix(k, "]") {
		if i := strings.LastIndexByte(k, '['); i >= 0 {
			return k[:i]
		}
	}
	if i := strings.LastIndexByte(k, '.'); i >= 0 {
		return k[:i]
	}
	return ""
}

func (v *validator) errorf(key, summary, format string, args ...any) {
	if v.skip[key] {
		return
	}
	d := &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  v.rangeOf(key),
	}
	if d.Subject == nil {
		d.Summary = key + ": " + summary
	}
	v.diags = append(v.diags, d)
}

// errorErr reports err, from one of the check functions, as the detail.
func (v *validator) errorErr(key, summary string, err error) {
	v.errorf(key, summary, "%s.", capitalize(err.Error()))
}

// where names the place key was written, for "first defined at" details.
func (v *validator) where(key string) string {
	if r := v.rangeOf(key); r != nil {
		return fmt.Sprintf("line %d", r.Start.Line)
	}
	return key
}

func (v *validator) positive(key string, n int64) {
	if n <= 0 {
		v.errorf(key, "Invalid "+lastName(key), "The value must be greater than zero; got %d.", n)
	}
}

func (v *validator) nonNegative(key string, n int64) {
	if n < 0 {
		v.errorf(key, "Invalid "+lastName(key), "The value must not be negative; got %d.", n)
	}
}

func (v *validator) positiveDuration(key string, d time.Duration) {
	if d <= 0 {
		v.errorf(key, "Invalid "+lastName(key), "The duration must be greater than zero; got %q.", d.String())
	}
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func lastName(key string) string {
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		return key[i+1:]
	}
	return key
}

// fileDir checks that the directory that is to hold the master's file p (a
// pidfile or a socket; "" is none) exists: the master creates the file, not
// its directory.
func (v *validator) fileDir(key, summary, p string) {
	err := v.host(checkFileDir, p)
	var noDir *noDirError
	switch {
	case err == nil:
	case v.warnDirs && errors.As(err, &noDir):
		v.warnf(key, summary, "%s.", capitalize(err.Error()))
	default:
		v.errorErr(key, summary, err)
	}
}

// host runs one check of this machine, unless the validator skips them.
func (v *validator) host(check func(string) error, arg string) error {
	if v.noHost {
		return nil
	}
	return check(arg)
}

func (v *validator) config(c *Config) {
	if c.Workers < 1 || c.Workers > MaxWorkers {
		v.errorf("workers", "Invalid workers",
			"The value must be 0 (one per CPU) or between 1 and %d; got %d.", MaxWorkers, c.Workers)
	}
	v.positiveDuration("worker_timeout", c.WorkerTimeout)
	v.positiveDuration("graceful_timeout", c.GracefulTimeout)
	v.nonNegative("max_requests", int64(c.MaxRequests))
	v.nonNegative("max_requests_jitter", int64(c.MaxRequestsJitter))
	v.positiveDuration("max_worker_memory_window", c.MaxWorkerMemoryWindow)
	if c.DrainDelay < 0 {
		v.errorf("drain_delay", "Invalid drain_delay", "The duration must not be negative; got %q.", c.DrainDelay.String())
	}
	if err := v.host(checkUser, c.User); err != nil {
		v.errorErr("user", "Unknown user", err)
	}
	if err := v.host(checkGroup, c.Group); err != nil {
		v.errorErr("group", "Unknown group", err)
	}
	v.fileDir("pidfile", "Invalid pidfile", c.Pidfile)
	v.fileDir("control_socket", "Invalid control_socket", c.ControlSocket)

	if len(c.Listen) == 0 {
		v.errorf("listen", "Missing listen block", "At least one listener is required.")
	}
	seen := make(map[string]string) // canonical address -> key
	listenNames := make(map[string]int)
	for i, l := range c.Listen {
		key := fmt.Sprintf("listen[%d]", i)
		v.listen(key, l, seen)
		v.listenTLS(key, &c.Listen[i])
		v.listenName(key+".name", l.Name, i, listenNames)
		v.protocols(key, l)
	}

	v.log(c.Log)
	v.limits(c.Limits)
	if f := c.HTTP2.MaxReadFrameSize; f != 0 && f < 1<<14 || f > 1<<24-1 {
		v.errorf("http2.max_read_frame_size", "Invalid max_read_frame_size",
			"The size must be between 16KiB and 16MiB-1 (16777215) bytes (RFC 9113 §6.5.2); got %d.", f)
	}

	if m := c.Metrics; m != nil {
		v.metrics(*m, seen)
	}

	v.rateLimits(c)
	siteNames := make(map[string]string)
	hosts := make(map[string][]hostUse)
	for i := range c.Sites {
		key := fmt.Sprintf("sites[%d]", i)
		on := v.siteListen(key+".listen", c.Sites[i].Listen, listenNames, len(c.Listen))
		v.site(key, &c.Sites[i], siteNames, hosts, on)
	}
}

// listenName checks a listener's name: unique, and a token (a site names
// it in its listen list).
func (v *validator) listenName(key, name string, i int, names map[string]int) {
	if name == "" {
		return
	}
	if !isToken(name) {
		v.errorf(key, "Invalid listen name", "The name %q is not a plain word such as \"https\" (letters, digits, '-', '_', '.').", name)
		return
	}
	if prev, dup := names[name]; dup {
		v.errorf(key, "Duplicate listen name", "A listener named %q is already defined at %s.", name, v.where(fmt.Sprintf("listen[%d].name", prev)))
		return
	}
	names[name] = i
}

// siteListen checks a site's listen list and returns the indices of the
// listeners it serves: every one when the list is absent.
func (v *validator) siteListen(key string, list []string, names map[string]int, n int) []bool {
	on := make([]bool, n)
	if list == nil {
		for i := range on {
			on[i] = true
		}
		return on
	}
	if len(list) == 0 {
		v.errorf(key, "Invalid listen", "The site serves no listener; name at least one, or leave listen out to serve every listener.")
	}
	for i, name := range list {
		j, ok := names[name]
		if !ok {
			v.errorf(fmt.Sprintf("%s[%d]", key, i), "Unknown listener", "No listen block has name = %q.", name)
			continue
		}
		on[j] = true
	}
	return on
}

// hostUse is where a site host was written and the listeners that site
// serves: a host may repeat in sites that share no listener.
type hostUse struct {
	key string
	on  []bool
}

// overlaps reports whether two sites serve a listener in common.
func overlaps(a, b []bool) bool {
	for i := range a {
		if a[i] && i < len(b) && b[i] {
			return true
		}
	}
	return false
}

func (v *validator) listen(key string, l Listen, seen map[string]string) {
	akey := key + ".address"
	canon, isUnix, err := checkAddress(l.Address, false)
	if err != nil {
		v.errorErr(akey, "Invalid listen address", err)
		return
	}
	if prev, dup := seen[canon]; dup && !strings.HasSuffix(canon, ":0") {
		v.errorf(akey, "Duplicate listen address",
			"The address %q is already listened on at %s.", l.Address, v.where(prev))
	} else {
		seen[canon] = akey
	}
	if isUnix {
		if p := strings.TrimPrefix(l.Address, unixPrefix); !strings.HasPrefix(p, "@") {
			v.fileDir(akey, "Invalid listen address", p)
		}
		if l.Mode == 0 || l.Mode > 0o777 {
			v.errorf(key+".mode", "Invalid socket mode",
				"The mode must be octal permission bits between 01 and 0777; got %#o.", l.Mode)
		}
		if l.ReusePort {
			v.errorf(key+".reuse_port", "Invalid reuse_port",
				"reuse_port applies only to TCP listeners, not unix sockets.")
		}
	} else if l.Mode != 0 {
		v.errorf(key+".mode", "Invalid socket mode", "mode applies only to unix sockets.")
	}
	v.proxyProtocol(key, l, isUnix)
}

// protocols checks a listener's protocols: known names for its kind, each
// once; a plain listener always speaks HTTP/1.1.
func (v *validator) protocols(key string, l Listen) {
	if l.Protocols == nil {
		return
	}
	allowed := []string{ProtoHTTP11, ProtoH2C}
	kind := "a plain listener"
	if l.IsTLS() {
		allowed, kind = []string{ProtoH2, ProtoHTTP11}, "a TLS listener"
	}
	if len(l.Protocols) == 0 {
		v.errorf(key+".protocols", "Invalid protocols", "The list must not be empty; %s may list %q.", kind, allowed)
		return
	}
	for i, p := range l.Protocols {
		ekey := fmt.Sprintf("%s.protocols[%d]", key, i)
		switch {
		case !slices.Contains(allowed, p):
			v.errorf(ekey, "Invalid protocol", "%s may list %q; got %q.", kind, allowed, p)
		case slices.Index(l.Protocols, p) < i:
			v.errorf(ekey, "Duplicate protocol", "%q is listed twice.", p)
		}
	}
	if !l.IsTLS() && !slices.Contains(l.Protocols, ProtoHTTP11) {
		v.errorf(key+".protocols", "Invalid protocols",
			"A plain listener always speaks %q: list it (\"h2c\" adds HTTP/2 with prior knowledge).", ProtoHTTP11)
	}
}

// proxyProtocol checks a listener's proxy_protocol and trusted keys.
func (v *validator) proxyProtocol(key string, l Listen, isUnix bool) {
	for i, s := range l.Trusted {
		if _, err := parsePrefix(s); err != nil {
			v.errorErr(fmt.Sprintf("%s.trusted[%d]", key, i), "Invalid trusted network", err)
		}
	}
	// Without proxy_protocol, trusted names the peers whose forwarding
	// headers (X-Forwarded-*, Forwarded, X-Real-IP) proxy routes believe.
	switch {
	case isUnix && len(l.Trusted) > 0:
		v.errorf(key+".trusted", "Invalid trusted",
			"A unix socket's peers have no IP address; file permissions (mode) decide who may connect, and all of them are trusted.")
	case l.ProxyProtocol && !isUnix && len(l.Trusted) == 0:
		v.errorf(key+".proxy_protocol", "Missing trusted",
			"With proxy_protocol = true, trusted must list the load balancers' addresses or networks, such as [\"127.0.0.1/32\", \"10.0.0.0/8\"]; every other client is refused.")
	}
}

func (v *validator) log(l Log) {
	switch l.Level {
	case "trace", "debug", "info", "warn", "error":
	default:
		v.errorf("log.level", "Invalid log level",
			"The level %q is not one of trace, debug, info, warn or error.", l.Level)
	}
	switch l.Format {
	case "text", "json":
	default:
		v.errorf("log.format", "Invalid log format", "The format %q is not text or json.", l.Format)
	}
	switch l.AccessFormat {
	case "combined", "json":
	default:
		v.errorf("log.access_format", "Invalid access log format", "The format %q is not combined or json.", l.AccessFormat)
	}
	if err := v.host(checkLogPath, l.File); err != nil {
		v.errorErr("log.file", "Invalid log file", err)
	}
	if err := v.host(checkLogPath, l.Access); err != nil {
		v.errorErr("log.access", "Invalid access log", err)
	}
}

func (v *validator) limits(l Limits) {
	v.positive("limits.request_line", int64(l.RequestLine))
	v.positive("limits.header_bytes", int64(l.HeaderBytes))
	v.positive("limits.header_count", int64(l.HeaderCount))
	v.nonNegative("limits.body_bytes", l.BodyBytes)
	v.positiveDuration("limits.read_header_timeout", l.ReadHeaderTimeout)
	v.positiveDuration("limits.idle_timeout", l.IdleTimeout)
	v.positiveDuration("limits.write_timeout", l.WriteTimeout)
	v.positive("limits.max_connections", int64(l.MaxConnections))
}

func (v *validator) metrics(m Metrics, listens map[string]string) {
	canon, _, err := checkAddress(m.Address, false)
	if err != nil {
		v.errorErr("metrics.address", "Invalid metrics address", err)
	} else if prev, dup := listens[canon]; dup {
		v.errorf("metrics.address", "Duplicate listen address",
			"The metrics address %q is already a listener at %s.", m.Address, v.where(prev))
	}
	if !strings.HasPrefix(m.Path, "/") {
		v.errorf("metrics.path", "Invalid metrics path", "The path %q must start with \"/\".", m.Path)
	}
}

func (v *validator) site(key string, s *Site, names map[string]string, hosts map[string][]hostUse, on []bool) {
	nkey := key + ".name"
	if s.Name == "" {
		v.errorf(nkey, "Invalid site name", "The site name must not be empty.")
	} else if prev, dup := names[s.Name]; dup {
		v.errorf(nkey, "Duplicate site", "A site named %q is already defined at %s.", s.Name, v.where(prev))
	} else {
		names[s.Name] = nkey
	}

	if len(s.Hosts) == 0 {
		v.errorf(key+".hosts", "Missing hosts", "Site %q matches no host; use [\"*\"] to match any.", s.Name)
	}
	for i, h := range s.Hosts {
		hkey := fmt.Sprintf("%s.hosts[%d]", key, i)
		if err := checkHost(h); err != nil {
			v.errorErr(hkey, "Invalid host", err)
			continue
		}
		norm := strings.ToLower(h)
		dup := false
		for _, prev := range hosts[norm] {
			if overlaps(prev.on, on) {
				v.errorf(hkey, "Duplicate host", "The host %q is already matched at %s. Sites may repeat a host only on different listeners (site.listen).", h, v.where(prev.key))
				dup = true
				break
			}
		}
		if !dup {
			hosts[norm] = append(hosts[norm], hostUse{key: hkey, on: on})
		}
	}

	v.headers(key+".headers", s.Headers)
	v.access(key, &s.Access)
	v.compress(key+".compress", s.Compress)
	v.errorPages(key+".error_pages", s.ErrorPages)
	if len(s.Routes) == 0 {
		v.errorf(key, "Missing route", "Site %q has no route blocks.", s.Name)
	}
	prefixes := make(map[string]string)
	for i := range s.Routes {
		rkey := fmt.Sprintf("%s.routes[%d]", key, i)
		r := &s.Routes[i]
		pkey := rkey + ".prefix"
		if err := checkPrefix(r.Prefix); err != nil {
			v.errorErr(pkey, "Invalid route prefix", err)
		} else if prev, dup := prefixes[r.Prefix]; dup {
			v.errorf(pkey, "Duplicate route", "Site %q already has a route %q at %s.", s.Name, r.Prefix, v.where(prev))
		} else {
			prefixes[r.Prefix] = pkey
		}
		v.route(rkey, r)
	}
}

func (v *validator) route(key string, r *Route) {
	v.headers(key+".headers", r.Headers)
	v.access(key, &r.Access)
	v.compress(key+".compress", r.Compress)
	var kinds []string
	if r.Static != nil {
		kinds = append(kinds, "static")
		v.static(key+".static", r.Static)
	}
	if r.Proxy != nil {
		kinds = append(kinds, "proxy")
		v.proxy(key+".proxy", r.Proxy)
	}
	if r.Respond != nil {
		kinds = append(kinds, "respond")
		v.respond(key+".respond", r.Respond)
	}
	if r.Health != nil {
		kinds = append(kinds, "health")
	}
	if r.Redirect != nil {
		kinds = append(kinds, "redirect")
		v.redirect(key+".redirect", r.Redirect)
	}
	// Report the conflict at the handler written last.
	sort.SliceStable(kinds, func(i, j int) bool {
		a, b := v.rangeOf(key+"."+kinds[i]), v.rangeOf(key+"."+kinds[j])
		return a != nil && b != nil && a.Start.Byte < b.Start.Byte
	})
	switch len(kinds) {
	case 0:
		v.errorf(key, "Missing route handler", "Route %q needs one static, proxy, respond, health or redirect block.", r.Prefix)
	case 1:
	default:
		v.errorf(key+"."+kinds[1], "Conflicting route handlers",
			"Route %q already has a %s block at %s; a route takes exactly one of static, proxy, respond, health or redirect.",
			r.Prefix, kinds[0], v.where(key+"."+kinds[0]))
	}
}

func (v *validator) static(key string, s *Static) {
	if s.Root == "" {
		v.errorf(key+".root", "Invalid static root", "The root directory must not be empty.")
	} else if err := v.host(checkStaticRoot, s.Root); err != nil {
		v.errorErr(key+".root", "Invalid static root", err)
	}
	if f := s.Fallback; f != "" {
		fkey := key + ".fallback"
		if !strings.HasPrefix(f, "/") || strings.HasSuffix(f, "/") || strings.ContainsRune(f, 0) || slices.Contains(strings.Split(f, "/"), "..") {
			v.errorf(fkey, "Invalid fallback", "The fallback %q must be the path of a file below the root, such as \"/index.html\".", f)
		} else if err := v.host(checkFile, filepath.Join(s.Root, f)); err != nil && s.Root != "" {
			v.errorErr(fkey, "Invalid fallback", err)
		}
	}
	v.codings(key+".precompressed", s.Precompressed, false)
	for i, name := range s.Index {
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
			v.errorf(fmt.Sprintf("%s.index[%d]", key, i), "Invalid index file",
				"The index entry %q must be a plain file name, without \"/\".", name)
		}
	}
}

// compress checks a compress block; nil is off.
func (v *validator) compress(key string, c *Compress) {
	if c == nil {
		return
	}
	v.codings(key+".algorithms", c.Algorithms, true)
	for i, t := range c.Types {
		if !isMediaRange(t) {
			v.errorf(fmt.Sprintf("%s.types[%d]", key, i), "Invalid media type",
				"%q is not a media type without parameters, such as \"application/json\", or a range such as \"text/*\".", t)
		}
	}
	v.nonNegative(key+".min_length", c.MinLength)
	for _, coding := range slices.Sorted(maps.Keys(c.Levels)) {
		lkey := fmt.Sprintf("%s.levels[%q]", key, coding)
		r, ok := CompressLevelRange[coding]
		switch l := c.Levels[coding]; {
		case !ok:
			v.errorf(lkey, "Unknown content coding", "%q is not one of %q, %q, %q.", coding, CodingZstd, CodingBr, CodingGzip)
		case l < r[0] || l > r[1]:
			v.errorf(lkey, "Invalid compression level", "The %s level must be from %d to %d, not %d.", coding, r[0], r[1], l)
		}
	}
}

// codings checks a list of content codings: each one forkd knows, once.
func (v *validator) codings(key string, list []string, required bool) {
	if required && len(list) == 0 {
		v.errorf(key, "Invalid algorithms", "The list must name at least one of %q, %q, %q.", CodingZstd, CodingBr, CodingGzip)
	}
	for i, c := range list {
		ikey := fmt.Sprintf("%s[%d]", key, i)
		switch {
		case c != CodingZstd && c != CodingBr && c != CodingGzip:
			v.errorf(ikey, "Unknown content coding", "%q is not one of %q, %q, %q.", c, CodingZstd, CodingBr, CodingGzip)
		case slices.Index(list, c) < i:
			v.errorf(ikey, "Duplicate content coding", "%q is listed twice.", c)
		}
	}
}

// isMediaRange reports whether t is "type/subtype" or "type/*", both
// HTTP tokens, without parameters (RFC 9110 section 8.3.1).
func isMediaRange(t string) bool {
	typ, sub, ok := strings.Cut(t, "/")
	return ok && typ != "*" && isToken(typ) && (sub == "*" || isToken(sub))
}

func (v *validator) proxy(key string, p *Proxy) {
	if len(p.Upstreams) == 0 {
		v.errorf(key+".upstreams", "Missing upstreams", "A proxy needs at least one upstream.")
	}
	for i, u := range p.Upstreams {
		if _, _, err := checkAddress(u, true); err != nil {
			v.errorErr(fmt.Sprintf("%s.upstreams[%d]", key, i), "Invalid upstream", err)
		}
	}
	v.positiveDuration(key+".connect_timeout", p.ConnectTimeout)
	v.positiveDuration(key+".response_timeout", p.ResponseTimeout)
	v.positiveDuration(key+".fail_timeout", p.FailTimeout)
	v.positiveDuration(key+".keepalive_timeout", p.KeepaliveTimeout)
	if p.Balance != BalanceRoundRobin && p.Balance != BalanceLeastConn {
		v.errorf(key+".balance", "Invalid balance", "The balance %q is not one of %q or %q.", p.Balance, BalanceRoundRobin, BalanceLeastConn)
	}
	if p.Weights != nil && len(p.Weights) != len(p.Upstreams) {
		v.errorf(key+".weights", "Invalid weights", "weights has %d entries for %d upstreams; give one per upstream.", len(p.Weights), len(p.Upstreams))
	}
	for i, w := range p.Weights {
		if w < 1 || w > 1000 {
			v.errorf(key+".weights", "Invalid weights", "Weight %d is %d; weights are whole numbers from 1 to 1000.", i, w)
		}
	}
	v.nonNegative(key+".keepalive", int64(p.Keepalive))
	v.nonNegative(key+".max_fails", int64(p.MaxFails))
	if p.Host != ProxyHostClient {
		if p.Host == "" {
			v.errorf(key+".host", "Invalid host", "host must be %q (the client's Host) or a host name.", ProxyHostClient)
		}
		for i := 0; i < len(p.Host); i++ {
			if !isHostByte(p.Host[i]) {
				v.errorf(key+".host", "Invalid host", "host %q may hold only the bytes of a host name, an IP literal and a port.", p.Host)
				break
			}
		}
	}
	if p.RetryBodyBuffer > 64<<20 {
		v.errorf(key+".retry_body_buffer", "Invalid retry_body_buffer", "retry_body_buffer is at most 64MiB (each request in flight may hold that much); got %d.", p.RetryBodyBuffer)
	}
	if rh := p.RequestHeaders; rh != nil {
		rkey := key + ".request_headers"
		v.fieldMap(rkey+".set", rh.Set, true)
		for name := range rh.Set {
			if isHopField(name) {
				v.errorf(fmt.Sprintf("%s.set[%q]", rkey, name), "Invalid header",
					"%s is the proxy's to send (use host for Host); it cannot be set.", name)
			}
		}
		for i, name := range rh.Remove {
			if !isToken(name) {
				v.errorf(fmt.Sprintf("%s.remove[%d]", rkey, i), "Invalid header name", "The header name %q is not an HTTP token.", name)
			}
		}
	}
	for i, u := range p.Upgrades {
		ukey := fmt.Sprintf("%s.upgrades[%d]", key, i)
		switch {
		case strings.EqualFold(u, UpgradeH2C):
			v.errorf(ukey, "Invalid upgrades",
				"%q is never tunnelled: an HTTP/2 connection upgraded through the proxy would reach every path of the upstream past the routes (h2c smuggling).", u)
		case !isToken(u) || strings.ContainsRune(u, '/'):
			v.errorf(ukey, "Invalid upgrades", "%q is not a protocol name (an HTTP token without \"/version\"), such as \"websocket\".", u)
		}
	}
}

// isHopField reports whether name is a field a proxy writes itself: Host,
// the framing and the hop-by-hop fields.
func isHopField(name string) bool {
	for _, f := range []string{"Host", "Connection", "Keep-Alive", "Upgrade", "TE", "Trailer", "Proxy-Connection"} {
		if strings.EqualFold(name, f) {
			return true
		}
	}
	return false
}

// isHostByte reports whether c may appear in a Host value (RFC 3986
// reg-name, IP literal and port bytes).
func isHostByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("-._~!$&'()*+,;=:[]%", c) >= 0
}

func (v *validator) respond(key string, r *Respond) {
	// A final response has a status from 200 to 599 (RFC 9110, section 15);
	// 1xx are interim responses and cannot end an exchange.
	if r.Status < 200 || r.Status > 599 {
		v.errorf(key+".status", "Invalid status code",
			"The status %d is not a final HTTP status code (200 to 599).", r.Status)
	} else if r.Body != "" && (r.Status == 204 || r.Status == 304) {
		// RFC 9110, sections 15.3.5 and 15.4.5: no content in 204 and 304.
		v.errorf(key+".body", "Invalid body", "A %d response cannot have a body.", r.Status)
	}
	v.fieldMap(key+".headers", r.Headers, false)
}

// fieldMap checks a map of response header fields at key: names are
// unique tokens that are not framing, values hold no CR, LF or NUL, and
// with templates they are valid templates (placeholders).
func (v *validator) fieldMap(key string, m map[string]string, templates bool) {
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	// In file order where known, so that a duplicate is reported where it
	// is written the second time.
	sort.Slice(names, func(i, j int) bool {
		a := v.rangeOf(fmt.Sprintf("%s[%q]", key, names[i]))
		b := v.rangeOf(fmt.Sprintf("%s[%q]", key, names[j]))
		if a != nil && b != nil && a.Start.Byte != b.Start.Byte {
			return a.Start.Byte < b.Start.Byte
		}
		return names[i] < names[j]
	})
	folded := make(map[string]string, len(names))
	for _, name := range names {
		hkey := fmt.Sprintf("%s[%q]", key, name)
		prev, dup := folded[strings.ToLower(name)]
		folded[strings.ToLower(name)] = name
		switch {
		case dup:
			// Field names are case-insensitive (RFC 9110, section 5.1).
			v.errorf(hkey, "Duplicate header", "The header %q is also set as %q.", name, prev)
		case !isToken(name):
			// RFC 9110, section 5.1: a field name is a token.
			v.errorf(hkey, "Invalid header name", "The header name %q is not an HTTP token.", name)
		case isFramingField(name):
			v.errorf(hkey, "Invalid header", "The server sets %s from the body; it cannot be configured.", name)
		case strings.ContainsAny(m[name], "\r\n\x00"):
			// RFC 9110, section 5.5: CR, LF and NUL are invalid in field values.
			v.errorf(hkey, "Invalid header value", "The value of %q contains CR, LF or NUL.", name)
		case templates:
			if _, err := ParseTemplate(m[name]); err != nil {
				v.errorErr(hkey, "Invalid header value", err)
			}
		}
	}
}

// isFramingField reports whether name is a field the server writes from
// the body and the connection's state.
func isFramingField(name string) bool {
	return strings.EqualFold(name, "Content-Length") || strings.EqualFold(name, "Transfer-Encoding")
}

// headers checks a headers block.
func (v *validator) headers(key string, h *Headers) {
	if h == nil {
		return
	}
	v.fieldMap(key+".set", h.Set, true)
	v.fieldMap(key+".add", h.Add, true)
	for _, m := range []struct {
		name   string
		fields map[string]string
	}{{"set", h.Set}, {"add", h.Add}} {
		for name := range m.fields {
			if strings.EqualFold(name, "Connection") {
				v.errorf(fmt.Sprintf("%s.%s[%q]", key, m.name, name), "Invalid header", "The server sets Connection from the connection's state; it cannot be configured.")
			}
		}
	}
	for i, name := range h.Remove {
		rkey := fmt.Sprintf("%s.remove[%d]", key, i)
		switch {
		case !isToken(name):
			v.errorf(rkey, "Invalid header name", "The header name %q is not an HTTP token.", name)
		case isFramingField(name) || strings.EqualFold(name, "Connection"):
			v.errorf(rkey, "Invalid header", "The server sets %s itself; it cannot be removed.", name)
		}
	}
}

// checkAddress checks a listener or upstream address, "host:port" or
// "unix:/path", and returns a canonical form for finding duplicates.
// Upstreams need a host and a nonzero port; listeners may leave the host
// empty (all interfaces) and use port 0 (any free port).
func checkAddress(a string, upstream bool) (canon string, isUnix bool, err error) {
	if p, ok := strings.CutPrefix(a, unixPrefix); ok {
		switch {
		case p == "" || p == "@":
			return "", true, fmt.Errorf("the address %q names no socket path", a)
		case len(p) > 107:
			// sun_path holds 108 bytes with the terminating NUL (unix(7)).
			return "", true, fmt.Errorf("the socket path in %q is longer than 107 bytes", a)
		case strings.ContainsRune(p, 0):
			return "", true, fmt.Errorf("the socket path in %q contains NUL", a)
		}
		return a, true, nil
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil || strings.Contains(a, "://") {
		return "", false, fmt.Errorf("the address %q is not \"host:port\", \"[ipv6]:port\" or \"unix:/path\"", a)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || (upstream && n == 0) {
		return "", false, fmt.Errorf("the port %q in %q is not a number from 1 to 65535", port, a)
	}
	switch {
	case host == "" && upstream:
		return "", false, fmt.Errorf("the upstream %q names no host", a)
	case host == "":
	case strings.Contains(host, ":"):
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is6() {
			return "", false, fmt.Errorf("the host %q in %q is not an IPv6 address", host, a)
		}
		host = ip.String()
	default:
		if !isHostname(host) {
			return "", false, fmt.Errorf("the host %q in %q is not an IP address or host name", host, a)
		}
		host = strings.ToLower(host)
	}
	return net.JoinHostPort(host, strconv.FormatUint(n, 10)), false, nil
}

// checkHost checks a site's host pattern: "*", "*.example.com", a host
// name, an IPv4 address or a bracketed IPv6 address, without a port.
func checkHost(h string) error {
	if h == "*" {
		return nil
	}
	if ip, ok := strings.CutPrefix(h, "["); ok {
		if a, err := netip.ParseAddr(strings.TrimSuffix(ip, "]")); err == nil && a.Is6() && strings.HasSuffix(ip, "]") {
			return nil
		}
		return fmt.Errorf("the host %q is not a bracketed IPv6 address", h)
	}
	name := strings.TrimPrefix(h, "*.")
	if !isHostname(strings.TrimSuffix(name, ".")) {
		return fmt.Errorf("the host %q is not \"*\", \"*.domain\", a host name or an IP address (ports are not matched)", h)
	}
	return nil
}

// isHostname reports whether s is made of DNS labels: letters, digits,
// '-' and '_' between dots (RFC 1123, section 2.1, with the underscore
// seen in practice). IPv4 addresses pass too.
func isHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// checkPrefix checks a route prefix: an absolute path that a request
// target's path can begin with.
func checkPrefix(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("the prefix %q must start with \"/\"", p)
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c == 0x7f || c == '?' || c == '#' {
			return fmt.Errorf("the prefix %q contains a space, control character, '?' or '#', which a path never holds", p)
		}
	}
	return nil
}

// isToken reports whether s is an HTTP token (RFC 9110, section 5.6.2).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// checkFile checks that path is a regular file that can be read.
func checkFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	return nil
}

// MaxErrorPage bounds the size of an error page: each worker holds them.
const MaxErrorPage = 1 << 20

// errorPages checks a site's error_pages: statuses from 400 to 599, and
// files that can be read.
func (v *validator) errorPages(key string, pages map[string]string) {
	for _, code := range slices.Sorted(maps.Keys(pages)) {
		pkey := fmt.Sprintf("%s[%q]", key, code)
		n, err := strconv.Atoi(code)
		if err != nil || n < 400 || n > 599 || len(code) != 3 {
			v.errorf(pkey, "Invalid error page status", "The status %q is not an error status from 400 to 599.", code)
			continue
		}
		if err := v.host(checkErrorPage, pages[code]); err != nil {
			v.errorErr(pkey, "Invalid error page", err)
		}
	}
}

// checkErrorPage checks that an error page can be read and is not too big.
func checkErrorPage(path string) error {
	if err := checkFile(path); err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err == nil && st.Size() > MaxErrorPage {
		return fmt.Errorf("%s is larger than 1 MiB", path)
	}
	return err
}
