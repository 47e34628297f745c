// Package benchchart draws the results of bench/run.sh as a self-contained
// SVG chart: one group of horizontal bars per test, one bar per server, the
// request rate on the left and the p99 latency beside it on the right.
//
// Its input is the markdown report run.sh prints (and writes with -o): the
// first table whose header names test, server, workers, req/s and p99 ms.
// The package lives in forkd's main module, not in bench/'s, so that CI's
// `go test ./...` tests it.
package benchchart

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// A Result is one row of run.sh's table.
type Result struct {
	Test, Server, Workers string
	// RPS is completed requests per second.
	RPS float64
	// P99 is the 99th percentile latency in milliseconds; HasP99 is unset
	// where the row has none (h2load's rows give the maximum instead).
	P99    float64
	HasP99 bool
}

// label is the bar's name: the server, and its workers when the same
// server appears more than once in one test (the scaling rows).
func (r Result) label(dup bool) string {
	switch {
	case !dup || r.Workers == "":
	case r.Workers == "1":
		return r.Server + " (1 worker)"
	default:
		return r.Server + " (" + r.Workers + " workers)"
	}
	return r.Server
}

// ErrNoResults is returned by Parse for a report without a results table
// or without a row with figures.
var ErrNoResults = errors.New("benchchart: no results table with figures")

// Parse reads run.sh's markdown report and returns its title (the line that
// starts with "forkd bench", if any) and the rows of its first results
// table that have figures; rows without (not built, did not start, wrk
// failed) are left out.
func Parse(r io.Reader) (string, []Result, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var title string
	var col map[string]int
	var out []Result
	inTable := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if title == "" && col == nil && strings.HasPrefix(line, "forkd bench") {
			title = line
		}
		if !strings.HasPrefix(line, "|") {
			if inTable {
				break // the first table is over
			}
			continue
		}
		cells := splitRow(line)
		if col == nil {
			col = header(cells)
			continue
		}
		inTable = true
		if strings.HasPrefix(cells[0], "---") || strings.HasPrefix(cells[0], ":--") {
			continue
		}
		get := func(name string) string {
			if i, ok := col[name]; ok && i < len(cells) {
				return cells[i]
			}
			return ""
		}
		rps, err := strconv.ParseFloat(get("req/s"), 64)
		if err != nil {
			continue
		}
		res := Result{Test: get("test"), Server: get("server"), Workers: get("workers"), RPS: rps}
		if p, err := strconv.ParseFloat(get("p99 ms"), 64); err == nil {
			res.P99, res.HasP99 = p, true
		}
		out = append(out, res)
	}
	if err := sc.Err(); err != nil {
		return "", nil, fmt.Errorf("benchchart: reading the report: %w", err)
	}
	if len(out) == 0 {
		return "", nil, ErrNoResults
	}
	return title, out, nil
}

// splitRow splits "| a | b |" into its trimmed cells.
func splitRow(line string) []string {
	line = strings.TrimSuffix(strings.TrimPrefix(line, "|"), "|")
	cells := strings.Split(line, "|")
	for i := range cells {
		cells[i] = strings.TrimSpace(cells[i])
	}
	return cells
}

// header maps the column names of a results table to their index, or
// returns nil for a table that is not one (the ratio table).
func header(cells []string) map[string]int {
	col := make(map[string]int)
	for i, c := range cells {
		col[strings.ToLower(c)] = i
	}
	for _, need := range []string{"test", "server", "req/s"} {
		if _, ok := col[need]; !ok {
			return nil
		}
	}
	return col
}

// niceStep returns a round tick step (1, 2 or 5 times a power of ten) that
// cuts max into about n parts.
func niceStep(max float64, n int) float64 {
	if max <= 0 {
		return 1
	}
	raw := max / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// short formats a tick or a value: 12.5k, 130k, 3.2, 0.45.
func short(v float64) string {
	switch {
	case v >= 1e6:
		return trim(strconv.FormatFloat(v/1e6, 'f', 1, 64)) + "M"
	case v >= 1e4:
		return trim(strconv.FormatFloat(v/1e3, 'f', 0, 64)) + "k"
	case v >= 1e3:
		return trim(strconv.FormatFloat(v/1e3, 'f', 1, 64)) + "k"
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return trim(strconv.FormatFloat(v, 'f', 1, 64))
	default:
		return trim(strconv.FormatFloat(v, 'f', 2, 64))
	}
}

func trim(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// groups orders the results by test, in the order the tests first appear,
// keeping each test's rows in their order.
func groups(rs []Result) [][]Result {
	var order []string
	by := make(map[string][]Result)
	for _, r := range rs {
		if _, ok := by[r.Test]; !ok {
			order = append(order, r.Test)
		}
		by[r.Test] = append(by[r.Test], r)
	}
	out := make([][]Result, 0, len(order))
	for _, t := range order {
		out = append(out, by[t])
	}
	return out
}

// servers lists the servers in the order they first appear: the legend's
// order and colours.
func servers(rs []Result) []string {
	var out []string
	for _, r := range rs {
		if !slices.Contains(out, r.Server) {
			out = append(out, r.Server)
		}
	}
	return out
}
