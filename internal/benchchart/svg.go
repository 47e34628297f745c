package benchchart

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
)

// The chart's geometry, in SVG user units (pixels at 100%).
const (
	width     = 980
	labelEnd  = 212 // right edge of the bar labels
	rpsX      = 222 // the req/s panel
	rpsW      = 430
	p99X      = 730 // the p99 panel, beside it
	p99W      = 190
	rowH      = 16 // one bar's row
	barH      = 12
	groupGap  = 10 // between two tests
	topY      = 100
	ticks     = 5 // about this many grid lines per panel
	valueFont = 10
)

// known gives run.sh's servers the same colour in every chart.
var known = map[string]string{
	"forkd":            "#2b6cb0",
	"nginx":            "#2f9e5b",
	"Go net/http":      "#dd8a1f",
	"fasthttp prefork": "#6b46c1",
}

// palette colours the other servers in the order they first appear.
var palette = []string{"#c53030", "#319795", "#975a16", "#4a5568"}

// Render writes rs as an SVG chart to w: per test a group of bars, one per
// server (labelled, coloured by server, its value at its end), req/s on the
// left panel and p99 milliseconds on the right one, each with its axis and
// grid, a legend and title on top. title is shown under the heading (run.sh's
// "forkd bench — date, CPU..." line; may be empty).
func Render(w io.Writer, title string, rs []Result) error {
	if len(rs) == 0 {
		return ErrNoResults
	}
	gs := groups(rs)
	srv := servers(rs)
	colours := make(map[string]string)
	other := 0
	for _, s := range srv {
		if c, ok := known[s]; ok {
			colours[s] = c
			continue
		}
		colours[s] = palette[other%len(palette)]
		other++
	}
	colour := func(s string) string { return colours[s] }
	var maxRPS, maxP99 float64
	for _, r := range rs {
		maxRPS = math.Max(maxRPS, r.RPS)
		if r.HasP99 {
			maxP99 = math.Max(maxP99, r.P99)
		}
	}
	rpsStep := niceStep(maxRPS, ticks)
	rpsMax := math.Max(rpsStep, math.Ceil(maxRPS/rpsStep)*rpsStep)
	p99Step := niceStep(maxP99, ticks)
	p99Max := math.Max(p99Step, math.Ceil(maxP99/p99Step)*p99Step)

	bottom := topY
	for _, g := range gs {
		bottom += len(g)*rowH + groupGap
	}
	bottom -= groupGap
	height := bottom + 52

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="11">`+"\n",
		width, height, width, height)
	b.WriteString(`<rect width="100%" height="100%" fill="#ffffff"/>` + "\n")
	text(&b, 12, 22, `font-size="15" font-weight="bold"`, "forkd bench: requests per second and p99 latency per test and server")
	if title != "" {
		text(&b, 12, 40, `fill="#4a5568"`, title)
	}
	// Legend.
	x := 12
	for _, s := range srv {
		fmt.Fprintf(&b, `<rect class="legend" x="%d" y="52" width="12" height="12" fill="%s"/>`+"\n", x, colour(s))
		text(&b, x+16, 62, "", s)
		x += 16 + 7*len([]rune(s)) + 20
	}
	text(&b, rpsX, topY-14, `font-weight="bold"`, "requests per second (higher is better)")
	text(&b, p99X, topY-14, `font-weight="bold"`, "p99 latency, ms (lower is better)")
	axis(&b, rpsX, rpsW, rpsStep, rpsMax, bottom)
	axis(&b, p99X, p99W, p99Step, p99Max, bottom)

	y := topY
	for _, g := range gs {
		text(&b, 12, y+barH-2, `font-weight="bold"`, g[0].Test)
		count := make(map[string]int)
		for _, r := range g {
			count[r.Server]++
		}
		for _, r := range g {
			label := r.label(count[r.Server] > 1)
			text(&b, labelEnd, y+barH-2, `text-anchor="end"`, label)
			tip := fmt.Sprintf("%s, %s: %.0f req/s", r.Test, label, r.RPS)
			bar(&b, "rps", r, rpsX, y, float64(rpsW)*r.RPS/rpsMax, colour(r.Server), tip, short(r.RPS))
			if r.HasP99 {
				tip = fmt.Sprintf("%s, %s: p99 %.3f ms", r.Test, label, r.P99)
				bar(&b, "p99", r, p99X, y, float64(p99W)*r.P99/p99Max, colour(r.Server), tip, short(r.P99))
			} else {
				text(&b, p99X+4, y+barH-2, `class="p99-none" fill="#718096"`, "no p99 (h2load)")
			}
			y += rowH
		}
		y += groupGap
	}
	text(&b, 12, height-10, `fill="#4a5568" font-size="10"`,
		"Made by bench/run.sh (internal/benchchart) from the run's table; compare bars only within one chart.")
	b.WriteString("</svg>\n")
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("benchchart: writing the chart: %w", err)
	}
	return nil
}

// axis draws a panel's vertical grid lines from topY to bottom and its
// tick labels under them.
func axis(b *bytes.Buffer, x0, w int, step, max float64, bottom int) {
	for v := 0.0; v <= max+step/2; v += step {
		x := x0 + int(math.Round(float64(w)*v/max))
		colour := "#e2e8f0"
		if v == 0 {
			colour = "#4a5568"
		}
		fmt.Fprintf(b, `<line class="grid" x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s"/>`+"\n", x, topY-6, x, bottom+4, colour)
		text(b, x, bottom+16, `text-anchor="middle" fill="#4a5568"`, short(v))
	}
	fmt.Fprintf(b, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d" stroke="#4a5568"/>`+"\n", x0, bottom+4, x0+w, bottom+4)
}

// bar draws one bar with its tooltip and its value at its end.
func bar(b *bytes.Buffer, class string, r Result, x, y int, w float64, colour, tip, value string) {
	fmt.Fprintf(b, `<rect class="%s" data-test="%s" data-server="%s" data-workers="%s" x="%d" y="%d" width="%.1f" height="%d" fill="%s"><title>`,
		class, attr(r.Test), attr(r.Server), attr(r.Workers), x, y, math.Max(w, 1), barH, colour)
	xml.EscapeText(b, []byte(tip))
	b.WriteString("</title></rect>\n")
	text(b, x+int(math.Ceil(w))+4, y+barH-2, fmt.Sprintf(`font-size="%d"`, valueFont), value)
}

// text writes a text element at x, y with extra attributes and escaped
// content.
func text(b *bytes.Buffer, x, y int, attrs, s string) {
	fmt.Fprintf(b, `<text x="%d" y="%d"`, x, y)
	if attrs != "" {
		b.WriteString(" " + attrs)
	}
	b.WriteString(">")
	xml.EscapeText(b, []byte(s))
	b.WriteString("</text>\n")
}

// attr escapes s for an attribute value in double quotes.
func attr(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
