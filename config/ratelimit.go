package config

import (
	"fmt"
	"time"

	"github.com/forkd/forkd/internal/zone"
)

// rateLimits checks the rate_limit blocks and the shared block, and
// records the block names that sites and routes may use.
func (v *validator) rateLimits(c *Config) {
	v.zones = make(map[string]bool, len(c.RateLimits))
	for i := range c.RateLimits {
		r := &c.RateLimits[i]
		key := fmt.Sprintf("rate_limits[%d]", i)
		switch {
		case !isToken(r.Name):
			v.errorf(key+".name", "Invalid rate_limit name", "The name %q is not a plain word such as \"per_ip\" (letters, digits, '-', '_', '.').", r.Name)
		case v.zones[r.Name]:
			v.errorf(key+".name", "Duplicate rate_limit", "A rate_limit named %q is already defined.", r.Name)
		}
		v.zones[r.Name] = true
		if r.Key == "" {
			v.errorf(key+".key", "Invalid key", "The key must not be empty; \"{remote_addr}\" counts each client address.")
		} else if _, err := ParseTemplate(r.Key); err != nil {
			v.errorErr(key+".key", "Invalid key", err)
		}
		if iv, err := ParseRate(r.Rate); err != nil {
			v.errorErr(key+".rate", "Invalid rate", err)
		} else {
			r.Interval = iv
		}
		if r.Burst < 0 || r.Burst > 1_000_000 {
			v.errorf(key+".burst", "Invalid burst", "The burst must be between 0 and 1000000; got %d.", r.Burst)
		}
		v.zoneSize(key+".size", r.Size)
		if r.Status < 400 || r.Status > 599 {
			v.errorf(key+".status", "Invalid status", "The status must be between 400 and 599; got %d.", r.Status)
		}
	}
	if c.Shared != nil {
		v.zoneSize("shared.size", c.Shared.Size)
	}
}

// zoneSize checks the size of a shared-memory zone.
func (v *validator) zoneSize(key string, n uint64) {
	if n < zone.MinSize || n > zone.MaxSize {
		v.errorf(key, "Invalid size", "The size must be between %dKiB and %dGiB; got %d bytes.", zone.MinSize>>10, zone.MaxSize>>30, n)
	}
}

// rateLimitRefs checks that a site's or route's rate_limit names blocks
// that exist.
func (v *validator) rateLimitRefs(key string, names []string) {
	for i, n := range names {
		if !v.zones[n] {
			v.errorf(fmt.Sprintf("%s.rate_limit[%d]", key, i), "Unknown rate_limit", "No rate_limit block is named %q.", n)
		}
	}
}

// ZoneSpec is the zone the block asks for: what the master creates, and
// compares on reload and upgrade to keep a zone (a changed key, rate,
// burst or size gives a new one; status does not).
func (r RateLimit) ZoneSpec() zone.Spec {
	return zone.Spec{
		Kind: zone.KindLimiter, Name: r.Name, Size: int64(r.Size),
		Interval: r.Interval, Tau: time.Duration(r.Burst) * r.Interval, Key: r.Key,
	}
}

// ZoneSpec is the zone of the shared store.
func (s Shared) ZoneSpec() zone.Spec {
	return zone.Spec{Kind: zone.KindStore, Name: "shared", Size: int64(s.Size)}
}
