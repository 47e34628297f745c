package top

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/forkd/forkd/internal/control"
)

// A Frame is one screen of `forkd top`.
type Frame struct {
	// Status is the master's latest answer; nil when Err is set, or
	// before the first answer.
	Status *control.Status
	// Raw is the same status object as the master sent it: fields that
	// Status has no type for (a newer master's, such as rate-limit zones)
	// are shown as sections of their own. May be nil.
	Raw json.RawMessage
	// Rates holds the request rates derived from the answers so far.
	Rates *Rates
	// Sort is one of SortOrders.
	Sort string
	// Now is the client's clock, used when the master sent none.
	Now time.Time
	// Width and Height bound the frame in columns and lines (a terminal's
	// size); zero means no bound.
	Width, Height int
	// Keys, when set, shows the keys an interactive view reads.
	Keys bool
	// Err, when set, is why there is no status: the master is not
	// reachable.
	Err error
}

// Render writes f to w as plain text lines, without escape codes.
func Render(w io.Writer, f Frame) error {
	lines := f.lines()
	if f.Height > 0 && len(lines) > f.Height {
		more := len(lines) - f.Height + 1
		lines = append(lines[:f.Height-1], fmt.Sprintf("… %d more lines (a larger window shows them)", more))
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(cut(printable(l), f.Width))
		b.WriteByte('\n')
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("top: writing frame: %w", err)
	}
	return nil
}

// printable replaces control characters (which a master's error text might
// hold) with spaces, so that a frame never carries an escape sequence.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
}

// cut shortens s to at most width runes (no bound when width <= 0).
func cut(s string, width int) string {
	if width <= 0 || utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width])
}

func (f Frame) lines() []string {
	now := f.Now
	if f.Status != nil && !f.Status.Now.IsZero() {
		now = f.Status.Now
	}
	head := "forkd top  " + now.UTC().Format("2006-01-02 15:04:05Z")
	if f.Err != nil {
		return []string{head, "", "master not reachable: " + f.Err.Error(), "(retrying)"}
	}
	s := f.Status
	if s == nil {
		return []string{head, "", "waiting for the master's first answer"}
	}
	rates := f.Rates
	if rates == nil {
		rates = NewRates()
	}
	out := []string{head + fmt.Sprintf("  master %d  %s  generation %d  up %s",
		s.MasterPID, masterState(s, now), s.Generation, control.FormatAge(s.Started, now))}
	cfg := s.Config
	if cfg == "" {
		cfg = "(built-in defaults)"
	}
	out = append(out, "config: "+cfg)
	reload := "last reload: none"
	if r := s.LastReload; r != nil {
		if r.OK {
			reload = "last reload: applied " + control.FormatAge(r.At, now) + " ago"
		} else {
			reload = "last reload: FAILED " + control.FormatAge(r.At, now) + " ago: " + r.Error
		}
	}
	if s.Reloading {
		reload = "reload in progress (new generation booting); " + reload
	}
	out = append(out, reload)

	var current, old []control.WorkerStatus
	var total float64
	var conns int64
	var rss uint64
	for _, w := range s.Workers {
		if w.Generation < s.Generation {
			old = append(old, w)
		} else {
			current = append(current, w)
		}
		if v, ok := rates.Rate(w.PID); ok {
			total += v
		}
		conns += w.OpenConns
		rss += w.RSS
	}
	summary := fmt.Sprintf("workers: %d", len(current))
	if len(old) > 0 {
		summary += fmt.Sprintf(", %d of older generations draining", len(old))
	}
	summary += fmt.Sprintf("  total: %s req/s  %d conns  RSS %s", formatRate(total), conns, control.FormatBytes(rss))
	out = append(out, summary)
	sortLine := "sort: " + f.Sort
	if f.Keys {
		sortLine += "  (s: next sort, q: quit)"
	}
	out = append(out, sortLine)

	sortWorkers(current, f.Sort, rates)
	sortWorkers(old, f.Sort, rates)
	out = append(out, "")
	out = append(out, workerTable(current, rates, now, false)...)
	if len(old) > 0 {
		out = append(out, "", "draining (older generations):")
		out = append(out, workerTable(old, rates, now, true)...)
	}
	out = append(out, extraSections(f.Raw)...)
	return out
}

// masterState is the master's state word, with what an operator watches
// for: a reload in progress, the time left to a drain.
func masterState(s *control.Status, now time.Time) string {
	st := s.State
	if st == "" {
		st = control.StateRunning
	}
	if st == control.StateDraining && !s.DrainEnds.IsZero() {
		left := s.DrainEnds.Sub(now)
		st += " (listeners close in " + max(left, 0).Round(100*time.Millisecond).String() + ")"
	}
	if s.Reloading {
		st += ", reloading"
	}
	return st
}

// workerTable renders the worker rows under one header line.
func workerTable(ws []control.WorkerStatus, rates *Rates, now time.Time, draining bool) []string {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
	fmt.Fprint(tw, "SLOT\tPID\tGEN\tAGE\tREQ/S\tREQUESTS\tCONNS\tRSS\tSTATE\n")
	for _, w := range ws {
		r := "-"
		if v, ok := rates.Rate(w.PID); ok {
			r = formatRate(v)
		}
		state := w.State
		switch {
		case draining && (state == "stopping" || state == ""):
			state = "draining"
		case state == "":
			state = "-"
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%d\t%d\t%s\t%s\n",
			w.Slot, w.PID, w.Generation, control.FormatAge(w.Started, now), r,
			w.Requests, w.OpenConns, control.FormatBytes(w.RSS), state)
	}
	tw.Flush()
	return strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
}

// knownKeys are the status fields the frame shows itself; extraSections
// shows the others.
var knownKeys = []string{"master_pid", "started", "generation", "config", "state",
	"drain_ends", "workers", "reloading", "last_reload", "now"}

// maxCell bounds a cell of an extra section in runes.
const maxCell = 40

// extraSections renders the fields of the raw status object that the frame
// does not know: a list of objects as a table (columns in the order the
// first object names its fields), anything else on one line. A master newer
// than this client thus shows its new tables (rate-limit zones, upstream
// health) without a change here.
func extraSections(raw json.RawMessage) []string {
	keys, vals, err := objectFields(raw)
	if err != nil {
		return nil
	}
	var out []string
	for _, k := range keys {
		if slices.Contains(knownKeys, k) {
			continue
		}
		v := vals[k]
		var rows []json.RawMessage
		if json.Unmarshal(v, &rows) != nil {
			out = append(out, "", k+": "+cell(v))
			continue
		}
		if len(rows) == 0 {
			continue
		}
		var cols []string
		cells := make([]map[string]json.RawMessage, 0, len(rows))
		for _, row := range rows {
			rk, rv, err := objectFields(row)
			if err != nil {
				rk, rv = []string{"value"}, map[string]json.RawMessage{"value": row}
			}
			for _, c := range rk {
				if !slices.Contains(cols, c) {
					cols = append(cols, c)
				}
			}
			cells = append(cells, rv)
		}
		var b bytes.Buffer
		tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, strings.ToUpper(strings.Join(cols, "\t")))
		for _, rv := range cells {
			line := make([]string, len(cols))
			for i, c := range cols {
				line[i] = "-"
				if v, ok := rv[c]; ok {
					line[i] = cell(v)
				}
			}
			fmt.Fprintln(tw, strings.Join(line, "\t"))
		}
		tw.Flush()
		out = append(out, "", k+":")
		out = append(out, strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")...)
	}
	return out
}

// objectFields decodes a JSON object, keeping the order of its fields.
func objectFields(raw json.RawMessage) ([]string, map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	t, err := dec.Token()
	if err != nil {
		return nil, nil, fmt.Errorf("top: %w", err)
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return nil, nil, fmt.Errorf("top: not a JSON object")
	}
	var keys []string
	vals := make(map[string]json.RawMessage)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("top: %w", err)
		}
		k, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, fmt.Errorf("top: %w", err)
		}
		if _, dup := vals[k]; !dup {
			keys = append(keys, k)
		}
		vals[k] = v
	}
	return keys, vals, nil
}

// cell renders one JSON value for a table: strings unquoted, null as "-",
// numbers and the rest as JSON, cut to maxCell runes.
func cell(v json.RawMessage) string {
	var s string
	switch {
	case json.Unmarshal(v, &s) == nil:
	case string(v) == "null":
		s = "-"
	default:
		var b bytes.Buffer
		if json.Compact(&b, v) == nil {
			s = b.String()
		} else {
			s = string(v)
		}
	}
	s = printable(s)
	if utf8.RuneCountInString(s) > maxCell {
		s = string([]rune(s)[:maxCell-1]) + "…"
	}
	if s == "" {
		s = strconv.Quote(s)
	}
	return s
}
