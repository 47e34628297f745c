package serve

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/lograte"
	"github.com/forkd/forkd/protocol/upstream"
	"github.com/hashicorp/go-hclog"
)

// parseUpstream splits "host:port" or "unix:/path" into a network and an
// address.
func parseUpstream(s string) (network, addr string, err error) {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if !strings.HasPrefix(path, "/") {
			return "", "", fmt.Errorf("upstream %q: unix socket path must be absolute", s)
		}
		return "unix", path, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", "", fmt.Errorf("upstream %q: %w", s, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("upstream %q: bad port", s)
	}
	if host == "" {
		return "", "", fmt.Errorf("upstream %q: missing host", s)
	}
	return "tcp", s, nil
}

// newProxy builds a proxy route; lim's HeaderBytes and HeaderCount bound
// the upstreams' response heads too. onLoop: its exchanges may run on the
// event loops (ProxyOnLoop), and its pools detach the connections the
// loops watch from the runtime's poller.
func newProxy(c *config.Proxy, lim config.Limits, logger hclog.Logger, onLoop bool) (*proxy, error) {
	if len(c.Upstreams) == 0 {
		return nil, errors.New("proxy: at least one upstream is required")
	}
	if c.Weights != nil && len(c.Weights) != len(c.Upstreams) {
		return nil, errors.New("proxy: weights must have one entry per upstream")
	}
	p := &proxy{
		onLoop:      onLoop,
		leastConn:   c.Balance == config.BalanceLeastConn,
		via:         c.Via,
		retryBody:   int64(min(c.RetryBodyBuffer, 64<<20)),
		maxFails:    int32(c.MaxFails),
		failTimeout: c.FailTimeout,
		logger:      logger,
		noneLim:     lograte.New(proxyLogEvery),
	}
	if c.Host != "" && c.Host != config.ProxyHostClient {
		p.host = c.Host
	}
	upgrades := c.Upgrades
	if upgrades == nil {
		upgrades = []string{config.DefaultUpgrade}
	}
	if rh := c.RequestHeaders; rh != nil {
		p.reqRemove = rh.Remove
		p.reqSet = []headerField{} // not nil: the request's fields are checked
		for _, name := range sortedKeys(rh.Set) {
			f, err := newHeaderField(name, rh.Set[name])
			if err != nil {
				return nil, fmt.Errorf("proxy: request_headers: %w", err)
			}
			p.reqSet = append(p.reqSet, f)
		}
	}
	for _, u := range upgrades {
		if !strings.EqualFold(u, config.UpgradeH2C) { // validation refuses it; never, even in code
			p.upgrades = append(p.upgrades, u)
		}
	}
	if p.failTimeout <= 0 {
		p.failTimeout = config.DefaultFailTimeout
	}
	connectTimeout := c.ConnectTimeout
	if connectTimeout <= 0 {
		connectTimeout = config.DefaultConnectTimeout
	}
	timeout := c.ResponseTimeout
	if timeout <= 0 {
		timeout = config.DefaultResponseTimeout
	}
	p.timeout, p.connTimeout = timeout, connectTimeout
	keepaliveTimeout := c.KeepaliveTimeout
	if keepaliveTimeout <= 0 {
		keepaliveTimeout = config.DefaultKeepaliveTimeout
	}
	p.bufs.New = func() any { b := make([]byte, proxyBufSize); return &b }
	p.bodyBufs.New = func() any { b := make([]byte, p.retryBody+1); return &b }
	for i, s := range c.Upstreams {
		network, addr, err := parseUpstream(s)
		if err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
		b := &backend{
			addr:   s,
			weight: 1,
			logLim: lograte.New(proxyLogEvery),
			pool: upstream.NewPool(upstream.Config{
				Network: network, Address: addr,
				ConnectTimeout: connectTimeout, Timeout: timeout,
				Keepalive: c.Keepalive, IdleTimeout: keepaliveTimeout,
				SurplusTimeout: proxySurplusIdle,
				MaxHeadBytes:   lim.HeaderBytes, MaxHeadFields: lim.HeaderCount,
				Logger: logger, Detach: onLoop,
			}),
		}
		if c.Weights != nil {
			if c.Weights[i] < 1 {
				return nil, fmt.Errorf("proxy: weight %d of upstream %q is not positive", c.Weights[i], s)
			}
			b.weight = c.Weights[i]
		}
		p.backends = append(p.backends, b)
	}
	return p, nil
}

// Close closes the idle upstream connections and ends the tunnels: the
// server forgets a connection once it is hijacked, so its Shutdown does
// not wait for them, and the worker closes its handler when Shutdown is
// done.
func (p *proxy) Close() error {
	for _, b := range p.backends {
		b.pool.Close()
	}
	p.tmu.Lock()
	p.closed = true
	for t := range p.tunnels {
		t.end()
	}
	p.tmu.Unlock()
	return nil
}
