package control

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"
)

// FormatStatus writes s to w as a human-readable report: the master's pid,
// uptime, generation and configuration file, then a table with one row per
// worker. Ages are measured to now.
func FormatStatus(w io.Writer, s *Status, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	config := s.Config
	if config == "" {
		config = "(built-in defaults)"
	}
	fmt.Fprintf(tw, "master pid:\t%d\n", s.MasterPID)
	fmt.Fprintf(tw, "uptime:\t%s\n", FormatAge(s.Started, now))
	fmt.Fprintf(tw, "generation:\t%d\n", s.Generation)
	fmt.Fprintf(tw, "config:\t%s\n", config)
	switch s.State {
	case "":
	case StateDraining:
		left := "now"
		if d := s.DrainEnds.Sub(now); d > 0 {
			left = "in " + d.Round(100*time.Millisecond).String()
		}
		fmt.Fprintf(tw, "state:\tdraining (health routes answer 503; listeners close %s)\n", left)
	case StateIdle:
		fmt.Fprintf(tw, "state:\tidle (WINCH stopped every worker; HUP or a reload starts them again)\n")
	default:
		fmt.Fprintf(tw, "state:\t%s\n", s.State)
	}
	if s.Reloading {
		fmt.Fprintf(tw, "reload:\tin progress (new generation booting)\n")
	}
	if r := s.LastReload; r != nil {
		if r.OK {
			fmt.Fprintf(tw, "last reload:\tapplied %s ago\n", FormatAge(r.At, now))
		} else {
			fmt.Fprintf(tw, "last reload:\tFAILED %s ago: %s\n", FormatAge(r.At, now), r.Error)
		}
	}
	fmt.Fprintf(tw, "workers:\t%d\n", len(s.Workers))
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("control: writing status: %w", err)
	}
	if len(s.Workers) == 0 {
		return formatTables(w, s)
	}

	tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprint(tw, "\nSLOT\tPID\tGEN\tAGE\tREQUESTS\tCONNS\tRSS\tSTATE\n")
	for _, ws := range s.Workers {
		state := ws.State
		if state == "" {
			state = "-"
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%d\t%d\t%s\t%s\n",
			ws.Slot, ws.PID, ws.Generation, FormatAge(ws.Started, now),
			ws.Requests, ws.OpenConns, FormatBytes(ws.RSS), state)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("control: writing status: %w", err)
	}
	return formatTables(w, s)
}

// formatTables writes the tables after the workers': zones, and the
// upstreams some worker holds down.
func formatTables(w io.Writer, s *Status) error {
	if err := formatZones(w, s.Zones); err != nil {
		return err
	}
	if len(s.Upstreams) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprint(tw, "\nUPSTREAM\tDOWN IN\n")
	for _, u := range s.Upstreams {
		fmt.Fprintf(tw, "%s\t%d of %d workers\n", u.Address, u.DownIn, u.Of)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("control: writing status: %w", err)
	}
	return nil
}

// FormatAge returns the time from start to now in a short form such as
// "42s", "3m12s", "5h07m" or "2d03h", precise enough for a status table.
// A zero start, or one after now, yields "-".
func FormatAge(start, now time.Time) string {
	if start.IsZero() || now.Before(start) {
		return "-"
	}
	d := now.Sub(start)
	sec := int64(d / time.Second)
	switch {
	case sec < 60:
		return strconv.FormatInt(sec, 10) + "s"
	case sec < 3600:
		return fmt.Sprintf("%dm%02ds", sec/60, sec%60)
	case sec < 86400:
		return fmt.Sprintf("%dh%02dm", sec/3600, sec%3600/60)
	default:
		return fmt.Sprintf("%dd%02dh", sec/86400, sec%86400/3600)
	}
}

// FormatBytes returns n in binary units with one decimal, such as "512B",
// "9.8MiB" or "1.2GiB".
func FormatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + "B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
