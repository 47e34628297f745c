package benchchart

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
)

// report is a run.sh report in its own words: a title, the results table
// with a row that has no figures, scaling rows of one server, HTTP/2 rows
// with a maximum instead of a p99, and the ratio table after it.
const report = `forkd bench — 2026-12-01T07:23Z, AMD EPYC, 2 CPUs, Linux 6.18
load average before the run: 2.5 2.1 2.0
servers on CPUs 0, 1 workers; wrk on CPUs 1, 1 threads

| test | server | workers | req/s | MiB/s | p50 ms | p99 ms | server CPU µs/req | errors | idle RSS MiB (master / per worker) |
|---|---|---|---:|---:|---:|---:|---:|---:|---|
| plaintext | forkd | 1 | 78417 | 9.7 | 1.613 | 3.306 | 10.67 | 0 | 8.6 / 8.2 |
| plaintext | Go net/http | 1 (GOMAXPROCS=1) | 43759 | 4.8 | 5.789 | 11.522 | 22.90 | 0 | 7.8 / — |
| plaintext | nginx | 1 | 76740 | 11.8 | 1.633 | 3.382 | 11.32 | 0 | 6.7 / 10.8 |
| plaintext | fasthttp prefork | | did not start | | | | | | |
| static4k | forkd | 1 | 55661 | 229.9 | 4.412 | 7.527 | 17.95 | 0 | 8.6 / 9.2 |
| static4k | nginx | 1 | 35609 | 147.8 | 7.042 | 9.536 | 28.09 | 0 | 6.7 / 10.8 |
| scaling | forkd | 1 | 140729 | 17.4 | 1.568 | 2.763 | 9 | 0 | 9.1 / 8.3 |
| scaling | forkd | 2 | 138787 | 17.2 | 1.439 | 25.264 | 9 | 0 | 9.1 / 8.1 |
| h2c | forkd | 1 | 7243 | 0.3 | 83.350 (mean) | 399.470 (max) | 150.42 | 0 | 9.2 / 10.0 |
| h2c | nginx | 1 | 33360 | 2.5 | 18.380 (mean) | 552.520 (max) | 33.26 | 0 | 8.1 / 14.1 |

| forkd ÷ peer | req/s | p99 | server CPU per request |
|---|---:|---:|---:|
| plaintext ÷ nginx | 1.02 | 0.98 | 0.94 |
`

func TestParse(t *testing.T) {
	title, rs, err := Parse(strings.NewReader(report))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(title, "forkd bench — 2026-12-01T07:23Z") {
		t.Errorf("title %q", title)
	}
	if len(rs) != 9 {
		t.Fatalf("%d results, want 9 (the row without figures left out): %+v", len(rs), rs)
	}
	if r := rs[1]; r.Test != "plaintext" || r.Server != "Go net/http" || r.RPS != 43759 || !r.HasP99 || r.P99 != 11.522 {
		t.Errorf("row 2: %+v", r)
	}
	if r := rs[7]; r.Test != "h2c" || r.HasP99 {
		t.Errorf("an h2load row has a p99: %+v", r)
	}
	if _, _, err := Parse(strings.NewReader("no table here\n")); !errors.Is(err, ErrNoResults) {
		t.Errorf("a report without a table: %v, want ErrNoResults", err)
	}
}

// svgBar is what the test reads back from the chart.
type svgBar struct {
	Class   string `xml:"class,attr"`
	Test    string `xml:"data-test,attr"`
	Server  string `xml:"data-server,attr"`
	Workers string `xml:"data-workers,attr"`
	Width   string `xml:"width,attr"`
}

// TestRender: the chart is well-formed XML with one req/s bar per server
// and test, a p99 bar beside each row that has a p99, and the texts a
// reader needs (axis labels, legend, values).
func TestRender(t *testing.T) {
	title, rs, err := Parse(strings.NewReader(report))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := Render(&b, title, rs); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	var bars []svgBar
	var texts []string
	root := ""
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, b.String())
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = el.Name.Space + " " + el.Name.Local
			}
			if el.Name.Local == "rect" {
				var r svgBar
				if err := dec.DecodeElement(&r, &el); err != nil {
					t.Fatal(err)
				}
				if r.Class == "rps" || r.Class == "p99" {
					bars = append(bars, r)
				}
			}
		case xml.CharData:
			if s := strings.TrimSpace(string(el)); s != "" {
				texts = append(texts, s)
			}
		}
	}
	if root != "http://www.w3.org/2000/svg svg" {
		t.Errorf("root element %q, want svg in the SVG namespace", root)
	}
	rps := make(map[string]int)
	p99 := make(map[string]int)
	widest := 0.0
	for _, r := range bars {
		key := r.Test + "/" + r.Server + "/" + r.Workers
		switch r.Class {
		case "rps":
			rps[key]++
			w, err := strconv.ParseFloat(r.Width, 64)
			if err != nil {
				t.Errorf("bar width %q: %v", r.Width, err)
			}
			widest = max(widest, w)
		case "p99":
			p99[key]++
		}
	}
	if len(rps) != len(rs) {
		t.Errorf("%d req/s bars, want one per row (%d): %v", len(rps), len(rs), rps)
	}
	for _, r := range rs {
		key := r.Test + "/" + r.Server + "/" + r.Workers
		if rps[key] != 1 {
			t.Errorf("%s: %d req/s bars, want 1", key, rps[key])
		}
		want := 0
		if r.HasP99 {
			want = 1
		}
		if p99[key] != want {
			t.Errorf("%s: %d p99 bars, want %d", key, p99[key], want)
		}
	}
	if widest <= 0 || widest > rpsW {
		t.Errorf("the widest bar is %v wide, want within the panel (%d)", widest, rpsW)
	}
	all := strings.Join(texts, "\n")
	for _, want := range []string{
		"requests per second (higher is better)", "p99 latency, ms (lower is better)",
		"Go net/http", "forkd (2 workers)", "78k", "141k", "3.3", "150k", "no p99 (h2load)", "2026-12-01T07:23Z",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("the chart lacks the text %q", want)
		}
	}
}

func TestNiceStep(t *testing.T) {
	for _, c := range []struct{ max, want float64 }{
		{140729, 50000}, {100, 20}, {3.3, 1}, {0, 1}, {9, 2}, {552, 200},
	} {
		if got := niceStep(c.max, ticks); got != c.want {
			t.Errorf("niceStep(%v) = %v, want %v", c.max, got, c.want)
		}
	}
}
