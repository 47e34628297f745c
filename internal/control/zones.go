package control

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// ZoneStatus is one shared-memory zone's counters, summed over every
// process that uses it (they survive reloads and upgrades with the zone).
type ZoneStatus struct {
	Name string `json:"name"`
	// Kind is "rate_limit" or "shared".
	Kind string `json:"kind"`
	// Entries are the slots that hold a key, of Capacity.
	Entries  uint64 `json:"entries"`
	Capacity uint64 `json:"capacity"`
	// Evictions counts live entries dropped to make room.
	Evictions uint64 `json:"evictions"`
	// Allowed and Limited count a rate limit's requests; for the
	// shared store, the hits and misses of Get.
	Allowed uint64 `json:"allowed"`
	Limited uint64 `json:"limited"`
}

// formatZones writes the zones table of FormatStatus.
func formatZones(w io.Writer, zones []ZoneStatus) error {
	if len(zones) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprint(tw, "\nZONE\tKIND\tENTRIES\tCAPACITY\tEVICTIONS\tALLOWED\tLIMITED\n")
	for _, z := range zones {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\n", z.Name, z.Kind, z.Entries, z.Capacity, z.Evictions, z.Allowed, z.Limited)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("control: writing status: %w", err)
	}
	return nil
}
