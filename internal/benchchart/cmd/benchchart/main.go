// Command benchchart turns a bench/run.sh report (its markdown table) into
// an SVG chart of req/s and p99 per test and server.
//
// Usage:
//
//	benchchart [-o chart.svg] [report.md]
//
// It reads the report from the file, or from standard input, and writes the
// chart to -o, or to standard output. bench/run.sh runs it after every run.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/forkd/forkd/internal/benchchart"
)

func main() {
	out := flag.String("o", "", "write the chart to `file` (default: standard output)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: benchchart [-o chart.svg] [report.md]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := run(*out, flag.Args()); err != nil {
		fmt.Fprintf(os.Stderr, "benchchart: %v\n", err)
		os.Exit(1)
	}
}

func run(out string, args []string) error {
	var in io.Reader = os.Stdin
	switch len(args) {
	case 0:
	case 1:
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	default:
		return fmt.Errorf("one report at most, got %d", len(args))
	}
	title, rs, err := benchchart.Parse(in)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := benchchart.Render(&b, title, rs); err != nil {
		return err
	}
	if out == "" {
		_, err := os.Stdout.Write(b.Bytes())
		return err
	}
	// Write beside and rename, so that a reader never sees half a chart.
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}
