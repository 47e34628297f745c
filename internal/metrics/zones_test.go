package metrics

import (
	"strings"
	"testing"
)

func TestWriteZones(t *testing.T) {
	var b strings.Builder
	err := Write(&b, Snapshot{Generation: 1, Zones: []Zone{
		{Name: "shared", Kind: "shared", Entries: 2, Capacity: 8, Allowed: 5, Limited: 1},
		{Name: "per_ip", Kind: "rate_limit", Entries: 3, Capacity: 16, Evictions: 1, Allowed: 10, Limited: 4},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`forkd_zone_entries{zone="per_ip",kind="rate_limit"} 3`,
		`forkd_zone_capacity{zone="shared",kind="shared"} 8`,
		`forkd_zone_evictions_total{zone="per_ip",kind="rate_limit"} 1`,
		`forkd_rate_limit_requests_total{zone="per_ip",result="allowed"} 10`,
		`forkd_rate_limit_requests_total{zone="per_ip",result="limited"} 4`,
		`forkd_shared_gets_total{result="hit"} 5`,
	} {
		if !strings.Contains(b.String(), want+"\n") {
			t.Errorf("no line %s in:\n%s", want, b.String())
		}
	}
	b.Reset()
	Write(&b, Snapshot{})
	if strings.Contains(b.String(), "forkd_zone") {
		t.Error("zone families without zones")
	}
}
