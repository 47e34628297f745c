package top

import (
	"fmt"
	"io"
	"strings"
)

// The few escape sequences the interactive view writes, all of them here:
// the alternate screen (so that the shell's screen comes back on exit) with
// the cursor hidden, and paint's redraw. Size and raw mode come from
// golang.org/x/term.
const (
	enterScreen = "\x1b[?1049h\x1b[?25l"
	leaveScreen = "\x1b[?25h\x1b[?1049l"
)

// paint redraws the screen with text: the cursor goes home, each line is
// written and the rest of it erased, then everything below is erased.
// Raw mode does no output processing, so lines end in CR LF, and the last
// line has no line end, so that a frame as high as the screen does not
// scroll it.
func paint(w io.Writer, text string) error {
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	var b strings.Builder
	b.WriteString("\x1b[H")
	b.WriteString(strings.Join(lines, "\x1b[K\r\n"))
	b.WriteString("\x1b[K\x1b[J")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("top: drawing: %w", err)
	}
	return nil
}
