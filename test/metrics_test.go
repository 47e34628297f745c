// The metrics endpoint.

package test

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestMetrics(t *testing.T) {
	maddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := start(t, opts{workers: 2, extra: fmt.Sprintf(`metrics { address = "%s" }`, maddr)})
	for i := 0; i < 10; i++ {
		if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
			t.Fatalf("GET: %d %v", code, err)
		}
	}
	var body string
	eventually(t, 10*time.Second, "metrics to count the requests", func() bool {
		_, b, err := get(maddr, "/metrics")
		body = b
		m := regexp.MustCompile(`forkd_requests_total\{class="2xx"\} (\d+)`).FindStringSubmatch(b)
		if err != nil || m == nil {
			return false
		}
		n, _ := strconv.Atoi(m[1])
		return n >= 10
	})
	for _, want := range []string{"forkd_workers 2", "forkd_worker_rss_bytes{", "forkd_generation 1", "# TYPE forkd_requests_total counter"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}
