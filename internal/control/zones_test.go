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

// TestFormatStatusUpstreams: the upstreams workers hold down follow the
// zones, with how many workers hold each down.
func TestFormatStatusUpstreams(t *testing.T) {
	var b strings.Builder
	now := time.Now()
	s := &Status{MasterPID: 1, Started: now, Generation: 1,
		Workers:   []WorkerStatus{{Slot: 0, PID: 10}, {Slot: 1, PID: 11}},
		Upstreams: []UpstreamStatus{{Address: "127.0.0.1:9001", DownIn: 1, Of: 2}}}
	if err := FormatStatus(&b, s, now); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, "UPSTREAM        DOWN IN") || !strings.Contains(out, "127.0.0.1:9001  1 of 2 workers") {
		t.Fatalf("no upstream row:\n%s", out)
	}
}
