package metrics

import (
	"bytes"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func sampleSnapshot() Snapshot {
	var retired Classes
	for range 10 {
		retired.Add(200)
	}
	retired.Add(404)
	retired.Add(503)
	return Snapshot{
		// Out of order on purpose: Write sorts by slot, then pid.
		Workers: []Worker{
			{Slot: 1, PID: 202, RSS: 11 << 20, Requests: 40, OpenConns: 3, Status: Classes{0, 30, 5, 4, 1},
				H2Status: Classes{0, 12, 0, 1, 0}, H2OpenConns: 1},
			{Slot: 0, PID: 201, RSS: 10276044, Requests: 100, OpenConns: 7, Status: Classes{1, 90, 0, 9, 0},
				H2Status: Classes{0, 20, 0, 0, 0}, H2OpenConns: 2},
		},
		Retired:   retired,
		RetiredH2: Classes{0, 4, 0, 0, 0},
		Restarts: map[string]uint64{
			"timeout":             1,
			"crash":               2,
			"max_requests":        5,
			"reload":              4,
			`odd "cause"\` + "\n": 1,
		},
		Reloads:        3,
		ReloadFailures: 1,
		Generation:     3,
		Started:        time.Date(2025, 1, 2, 3, 4, 5, 250e6, time.UTC),
	}
}

func TestWriteGolden(t *testing.T) {
	s := sampleSnapshot()
	workersBefore := append([]Worker(nil), s.Workers...)
	var b bytes.Buffer
	if err := Write(&b, s); err != nil {
		t.Fatal(err)
	}
	if s.Workers[0] != workersBefore[0] {
		t.Error("Write reordered the caller's Workers slice")
	}
	golden := filepath.Join("testdata", "snapshot.prom")
	if *update {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("Write output differs from %s (run with -update to accept):\n%s", golden, b.String())
	}
	checkExposition(t, b.String())

	// The same snapshot renders the same bytes every time.
	var again bytes.Buffer
	Write(&again, sampleSnapshot())
	if !bytes.Equal(b.Bytes(), again.Bytes()) {
		t.Error("Write is not deterministic")
	}
}

func TestWriteEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, Snapshot{}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	checkExposition(t, out)
	for _, want := range []string{"forkd_workers 0\n", `forkd_requests_total{class="2xx"} 0` + "\n", "forkd_generation 0\n",
		`forkd_http2_requests_total{class="2xx"} 0` + "\n", "forkd_http2_open_connections 0\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("empty snapshot output lacks %q", want)
		}
	}
	if strings.Contains(out, "forkd_master_start_time_seconds") {
		t.Error("zero start time rendered")
	}
}

func TestClassesAdd(t *testing.T) {
	var c Classes
	for _, code := range []int{100, 101, 200, 204, 299, 301, 404, 499, 500, 599, 99, 600, 0, -1} {
		c.Add(code)
	}
	if want := (Classes{2, 3, 1, 2, 2}); c != want {
		t.Errorf("Classes = %v, want %v", c, want)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestWriteError(t *testing.T) {
	if err := Write(failWriter{}, sampleSnapshot()); err == nil {
		t.Error("Write to a failing writer returned nil")
	}
}

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler(sampleSnapshot))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != ContentType {
		t.Errorf("GET: %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	var want bytes.Buffer
	Write(&want, sampleSnapshot())
	if !bytes.Equal(body, want.Bytes()) {
		t.Error("GET body differs from Write output")
	}

	resp, err = http.Post(srv.URL+"/metrics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %s, Allow %q", resp.Status, resp.Header.Get("Allow"))
	}
}

// Line shapes of the text exposition format, version 0.0.4.
var (
	helpLine   = regexp.MustCompile(`^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (?:[^\\\n]|\\\\|\\n)*$`)
	typeLine   = regexp.MustCompile(`^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$`)
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*")*\})? (-?[0-9.e+]+|NaN|[+-]Inf)$`)
)

// checkExposition checks what a Prometheus scraper would reject: malformed
// lines, samples outside their announced family, families announced twice,
// duplicate series, and a missing final newline.
func checkExposition(t *testing.T, out string) {
	t.Helper()
	if !strings.HasSuffix(out, "\n") {
		t.Error("output does not end in a newline")
	}
	seenFamily := map[string]bool{}
	seenSeries := map[string]bool{}
	current := ""
	for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "# HELP "):
			m := helpLine.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("line %d: malformed HELP: %q", i+1, line)
				continue
			}
			if seenFamily[m[1]] {
				t.Errorf("line %d: family %s announced twice", i+1, m[1])
			}
			seenFamily[m[1]] = true
			current = m[1]
		case strings.HasPrefix(line, "# TYPE "):
			m := typeLine.FindStringSubmatch(line)
			if m == nil || m[1] != current {
				t.Errorf("line %d: malformed or misplaced TYPE: %q", i+1, line)
			}
		default:
			m := sampleLine.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("line %d: malformed sample: %q", i+1, line)
				continue
			}
			if m[1] != current {
				t.Errorf("line %d: sample of %s inside family %s", i+1, m[1], current)
			}
			series := m[1] + m[2]
			if seenSeries[series] {
				t.Errorf("line %d: duplicate series %s", i+1, series)
			}
			seenSeries[series] = true
		}
	}
}
