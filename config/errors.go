package config

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Error is the error Load, Parse and Validate return for a configuration
// that is wrong. It holds every problem found, not just the first; get it
// with errors.As.
type Error struct {
	// Diags are the problems, in file order. Each has a Subject naming the
	// file, line and column, except those found by Validate on a
	// configuration built in code, whose Summary starts with the key path
	// instead ("listen[0].address: ...").
	Diags hcl.Diagnostics
}

// Error returns one line per problem: "file:line:col: summary; detail".
func (e *Error) Error() string {
	var b strings.Builder
	for i, d := range e.Diags {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(formatDiag(d))
	}
	return b.String()
}

func formatDiag(d *hcl.Diagnostic) string {
	var b strings.Builder
	if s := d.Subject; s != nil {
		fmt.Fprintf(&b, "%s:%d:%d: ", s.Filename, s.Start.Line, s.Start.Column)
	}
	b.WriteString(oneLine(d.Summary))
	if d.Detail != "" {
		b.WriteString("; ")
		b.WriteString(oneLine(d.Detail))
	}
	return b.String()
}

// oneLine keeps a diagnostic on its line, as Error promises.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// errorOf returns nil when diags hold no error, else an *Error with only the
// errors (HCL warnings are dropped), sorted by position.
func errorOf(diags hcl.Diagnostics) error {
	var errs hcl.Diagnostics
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			errs = append(errs, d)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := errs[i].Subject, errs[j].Subject
		switch {
		case a == nil || b == nil:
			return a != nil && b == nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		case a.Start.Line != b.Start.Line:
			return a.Start.Line < b.Start.Line
		default:
			return a.Start.Column < b.Start.Column
		}
	})
	return &Error{Diags: errs}
}
