package metrics

import (
	"cmp"
	"slices"
)

// Zone is one shared-memory zone's counters (rate_limit blocks, the
// shared store), as the master reads them from the zone itself: they
// cover every worker, and survive reloads and upgrades with the zone.
type Zone struct {
	Name string
	Kind string // "rate_limit" or "shared"
	// Entries are the slots holding a key, of Capacity.
	Entries, Capacity uint64
	// Evictions counts live entries dropped to make room.
	Evictions uint64
	// Allowed and Limited count a rate limit's requests; for the shared
	// store, the hits and misses of Get.
	Allowed, Limited uint64
}

// writeZones writes the zone families, zones by kind then name.
func (e *encoder) writeZones(zones []Zone) {
	zones = slices.Clone(zones)
	slices.SortFunc(zones, func(a, b Zone) int { return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name)) })
	e.family("forkd_zone_entries", "gauge", "Keys held by each shared-memory zone (rate_limit blocks, the shared store).")
	for _, z := range zones {
		e.sample("forkd_zone_entries", uintStr(z.Entries), "zone", z.Name, "kind", z.Kind)
	}
	e.family("forkd_zone_capacity", "gauge", "Keys each shared-memory zone can hold.")
	for _, z := range zones {
		e.sample("forkd_zone_capacity", uintStr(z.Capacity), "zone", z.Name, "kind", z.Kind)
	}
	e.family("forkd_zone_evictions_total", "counter", "Live keys dropped from each shared-memory zone to make room for new ones.")
	for _, z := range zones {
		e.sample("forkd_zone_evictions_total", uintStr(z.Evictions), "zone", z.Name, "kind", z.Kind)
	}
	e.family("forkd_rate_limit_requests_total", "counter", "Requests checked by each rate_limit block, by result: allowed or limited.")
	for _, z := range zones {
		if z.Kind == "rate_limit" {
			e.sample("forkd_rate_limit_requests_total", uintStr(z.Allowed), "zone", z.Name, "result", "allowed")
			e.sample("forkd_rate_limit_requests_total", uintStr(z.Limited), "zone", z.Name, "result", "limited")
		}
	}
	e.family("forkd_shared_gets_total", "counter", "Reads of the shared store (forkd.Store), by result: hit or miss.")
	for _, z := range zones {
		if z.Kind == "shared" {
			e.sample("forkd_shared_gets_total", uintStr(z.Allowed), "result", "hit")
			e.sample("forkd_shared_gets_total", uintStr(z.Limited), "result", "miss")
		}
	}
}
