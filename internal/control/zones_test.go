package control

import (
	"strings"
	"testing"
	"time"
)

func TestFormatStatusZones(t *testing.T) {
	var b strings.Builder
	now := time.Now()
	s := &Status{MasterPID: 1, Started: now, Generation: 1,
		Zones: []ZoneStatus{{Name: "per_ip", Kind: "rate_limit", Entries: 3, Capacity: 65280, Evictions: 1, Allowed: 10, Limited: 4}}}
	if err := FormatStatus(&b, s, now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.Contains(out, "ZONE") || !strings.Contains(out, "per_ip  rate_limit  3") {
		t.Fatalf("no zone row:\n%s", out)
	}
}
