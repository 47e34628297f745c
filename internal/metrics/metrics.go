// Package metrics renders forkd's metrics in the Prometheus text exposition
// format, version 0.0.4.
//
// The numbers come from the master, which aggregates the heartbeats its
// workers send every second; nothing is counted here. Rendering a snapshot
// of a few dozen series is all that is needed, so this package writes the
// format by hand instead of depending on the Prometheus client library.
//
// See https://prometheus.io/docs/instrumenting/exposition_formats/ for the
// format.
package metrics

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ContentType is the media type of the text exposition format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Classes counts responses by status class: Classes[0] counts 1xx
// responses, Classes[1] 2xx, and so on up to Classes[4] for 5xx.
type Classes [5]uint64

// Add counts one response with the given status code. Codes outside 100-599
// are ignored.
func (c *Classes) Add(status int) {
	if status >= 100 && status < 600 {
		c[status/100-1]++
	}
}

// Plus returns the element-wise sum of c and d.
func (c Classes) Plus(d Classes) Classes {
	for i := range c {
		c[i] += d[i]
	}
	return c
}

// Worker is the latest heartbeat of one live worker.
type Worker struct {
	Slot      int
	PID       int
	RSS       uint64  // resident set size in bytes
	Requests  uint64  // requests served since the worker started
	OpenConns int64   // connections open now
	Status    Classes // responses since the worker started, by status class
	// H2Status and H2OpenConns are the HTTP/2 part of Status (streams
	// answered) and of OpenConns (HTTP/2 connections).
	H2Status    Classes
	H2OpenConns int64
}

// Snapshot is the state of a master at one moment.
type Snapshot struct {
	// Workers are the live workers. Write orders them by slot, then pid.
	Workers []Worker
	// Retired counts the responses of workers that have exited, from their
	// last heartbeat. forkd_requests_total is Retired plus the live
	// workers' counts, so it never goes down when a worker is replaced.
	Retired Classes
	// RetiredH2 is the HTTP/2 part of Retired.
	RetiredH2 Classes
	// Restarts counts worker replacements by cause: "crash", "timeout",
	// "max_requests", "reload" and so on.
	Restarts       map[string]uint64
	Reloads        uint64 // reloads attempted, successful or not
	ReloadFailures uint64 // reloads rejected, e.g. for an invalid config
	Generation     int
	Started        time.Time // when the master started; omitted when zero
	// Zones are the shared-memory zones; their families are written only
	// when there is one.
	Zones []Zone
}

// classLabels are the label values of forkd_requests_total, by Classes index.
var classLabels = [len(Classes{})]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// Write writes s to w in the text exposition format. The output is
// deterministic: families in a fixed order, workers by slot then pid,
// restart causes sorted by name.
func Write(w io.Writer, s Snapshot) error {
	bw := bufio.NewWriter(w)
	e := encoder{w: bw}

	workers := slices.Clone(s.Workers)
	slices.SortFunc(workers, func(a, b Worker) int {
		return cmp.Or(cmp.Compare(a.Slot, b.Slot), cmp.Compare(a.PID, b.PID))
	})

	total, h2 := s.Retired, s.RetiredH2
	var conns, h2conns int64
	for _, wk := range workers {
		total = total.Plus(wk.Status)
		h2 = h2.Plus(wk.H2Status)
		conns += wk.OpenConns
		h2conns += wk.H2OpenConns
	}

	e.family("forkd_requests_total", "counter", "Responses sent by all workers, current and retired, by status class.")
	for i, n := range total {
		e.sample("forkd_requests_total", uintStr(n), "class", classLabels[i])
	}

	e.family("forkd_open_connections", "gauge", "Client connections open across all workers.")
	e.sample("forkd_open_connections", strconv.FormatInt(conns, 10))

	// HTTP/2 is told apart in families of its own, not by a label on
	// the two above: their series keep their meaning (all protocols),
	// and a sum over them counts nothing twice.
	e.family("forkd_http2_requests_total", "counter", "Responses sent on HTTP/2 streams, a part of forkd_requests_total, by status class.")
	for i, n := range h2 {
		e.sample("forkd_http2_requests_total", uintStr(n), "class", classLabels[i])
	}

	e.family("forkd_http2_open_connections", "gauge", "HTTP/2 client connections open across all workers, a part of forkd_open_connections.")
	e.sample("forkd_http2_open_connections", strconv.FormatInt(h2conns, 10))

	e.family("forkd_workers", "gauge", "Live worker processes.")
	e.sample("forkd_workers", strconv.Itoa(len(workers)))

	e.family("forkd_worker_requests_total", "counter", "Requests served by each live worker since it started.")
	for _, wk := range workers {
		e.sample("forkd_worker_requests_total", uintStr(wk.Requests), workerLabels(wk)...)
	}

	e.family("forkd_worker_open_connections", "gauge", "Client connections open in each live worker.")
	for _, wk := range workers {
		e.sample("forkd_worker_open_connections", strconv.FormatInt(wk.OpenConns, 10), workerLabels(wk)...)
	}

	e.family("forkd_worker_rss_bytes", "gauge", "Resident set size of each live worker in bytes.")
	for _, wk := range workers {
		e.sample("forkd_worker_rss_bytes", uintStr(wk.RSS), workerLabels(wk)...)
	}

	e.family("forkd_worker_restarts_total", "counter", "Workers replaced by the master, by cause.")
	causes := make([]string, 0, len(s.Restarts))
	for c := range s.Restarts {
		causes = append(causes, c)
	}
	slices.Sort(causes)
	for _, c := range causes {
		e.sample("forkd_worker_restarts_total", uintStr(s.Restarts[c]), "cause", c)
	}

	e.family("forkd_reloads_total", "counter", "Configuration reloads attempted.")
	e.sample("forkd_reloads_total", uintStr(s.Reloads))

	e.family("forkd_reload_failures_total", "counter", "Configuration reloads that failed and left the running configuration in place.")
	e.sample("forkd_reload_failures_total", uintStr(s.ReloadFailures))

	e.family("forkd_generation", "gauge", "Configuration generation of the current workers; it grows by one on every successful reload.")
	e.sample("forkd_generation", strconv.Itoa(s.Generation))

	if len(s.Zones) > 0 {
		e.writeZones(s.Zones)
	}

	if !s.Started.IsZero() {
		e.family("forkd_master_start_time_seconds", "gauge", "Start time of the master since the Unix epoch in seconds.")
		secs := float64(s.Started.UnixMilli()) / 1e3
		e.sample("forkd_master_start_time_seconds", strconv.FormatFloat(secs, 'f', -1, 64))
	}

	if e.err != nil {
		return fmt.Errorf("metrics: %w", e.err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

func workerLabels(wk Worker) []string {
	return []string{"slot", strconv.Itoa(wk.Slot), "pid", strconv.Itoa(wk.PID)}
}

func uintStr(n uint64) string { return strconv.FormatUint(n, 10) }

// encoder writes exposition lines and remembers the first error.
type encoder struct {
	w   *bufio.Writer
	err error
}

// family writes the # HELP and # TYPE lines that introduce a metric family.
// A family with no samples is still announced, which Prometheus accepts.
func (e *encoder) family(name, typ, help string) {
	e.write("# HELP ", name, " ", helpEscaper.Replace(help), "\n")
	e.write("# TYPE ", name, " ", typ, "\n")
}

// sample writes one sample line; labels alternate names and values.
func (e *encoder) sample(name, value string, labels ...string) {
	e.write(name)
	if len(labels) > 0 {
		e.write("{")
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				e.write(",")
			}
			e.write(labels[i], `="`, labelEscaper.Replace(labels[i+1]), `"`)
		}
		e.write("}")
	}
	e.write(" ", value, "\n")
}

func (e *encoder) write(parts ...string) {
	for _, p := range parts {
		if e.err != nil {
			return
		}
		_, e.err = e.w.WriteString(p)
	}
}

// The format escapes backslash and newline in HELP text, and also the double
// quote in label values.
var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// Handler returns an http.Handler that serves the snapshot returned by
// snapshot, which is called once per request, so it must be safe for
// concurrent use. Only GET and HEAD are allowed.
func Handler(snapshot func() Snapshot) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		var buf bytes.Buffer
		if err := Write(&buf, snapshot()); err != nil {
			http.Error(w, "rendering metrics failed", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", ContentType)
		w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
		if r.Method == http.MethodHead {
			return
		}
		w.Write(buf.Bytes())
	})
}
