package top

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/forkd/forkd/internal/control"
)

// MinInterval is the shortest refresh interval Run accepts: a status answer
// is cheap, but a loop of them is not free for the master.
const MinInterval = 100 * time.Millisecond

// warmCap bounds how long the first frame of a non-interactive run waits
// for every worker's rate: two heartbeats (one a second) and a margin.
const warmCap = 3 * time.Second

// Options configures Run.
type Options struct {
	// Socket is the master's control socket.
	Socket string
	// Interval is the time between two frames, at least MinInterval.
	Interval time.Duration
	// Frames is how many frames to print before returning; 0 means until
	// q, a signal or the context ends.
	Frames int
	// Sort is the initial sort order (default SortSlot).
	Sort string
	// Stdin and Stdout are the terminal, when both are one and Frames is 0;
	// otherwise Stdout receives plain frames and Stdin is not read.
	Stdin  *os.File
	Stdout io.Writer
}

// ErrUnreachable wraps the error of a run with Frames set whose master did
// not answer.
var ErrUnreachable = errors.New("master not reachable")

// sampler asks the master for its status and feeds the rates.
type sampler struct {
	socket  string
	timeout time.Duration
	rates   *Rates
	status  *control.Status
	raw     json.RawMessage
}

// answer is one status answer, or why there is none.
type answer struct {
	status *control.Status
	raw    json.RawMessage
	err    error
}

// fetch asks the master for its status; it touches nothing of s but its
// constant fields, so it may run on another goroutine.
func (s *sampler) fetch() answer {
	resp, raw, err := control.CallStatus(s.socket, s.timeout)
	if err == nil {
		err = resp.Err()
	}
	if err == nil && resp.Status == nil {
		err = errors.New("the master answered without a status")
	}
	if err != nil {
		return answer{err: err}
	}
	return answer{status: resp.Status, raw: raw}
}

// apply takes an answer as the latest and returns its error.
func (s *sampler) apply(a answer) error {
	s.status, s.raw = a.status, a.raw
	if a.err == nil {
		s.rates.Update(a.status)
	}
	return a.err
}

func (s *sampler) sample() error { return s.apply(s.fetch()) }

func (s *sampler) frame(sort string, err error) Frame {
	return Frame{Status: s.status, Raw: s.raw, Rates: s.rates, Sort: sort, Now: time.Now(), Err: err}
}

// Run shows the master's frames until the context ends, q is pressed or
// Frames frames are printed. On a terminal (Stdout and Stdin both one, and
// Frames 0) it redraws one screen in place and reads keys in raw mode; the
// terminal is restored when Run returns. Otherwise it prints plain frames,
// one after the other, the first once every worker has a rate (at least
// one interval after the first sample).
func Run(ctx context.Context, o Options) error {
	if o.Interval < MinInterval {
		return fmt.Errorf("top: interval %v is below %v", o.Interval, MinInterval)
	}
	if o.Sort == "" {
		o.Sort = SortSlot
	}
	s := &sampler{socket: o.Socket, timeout: max(o.Interval, control.DefaultTimeout/2), rates: NewRates()}
	if f, ok := o.Stdout.(*os.File); ok && o.Frames == 0 && o.Stdin != nil &&
		term.IsTerminal(int(f.Fd())) && term.IsTerminal(int(o.Stdin.Fd())) {
		return interactive(ctx, o, s, f)
	}
	return plain(ctx, o, s)
}

// wait sleeps for d or until ctx ends, and reports whether ctx is still
// live.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func plain(ctx context.Context, o Options, s *sampler) error {
	err := s.sample()
	if err == nil {
		// A rate needs two heartbeats of each worker: sample until every
		// worker has one, within warmCap.
		until := time.Now().Add(max(o.Interval, warmCap))
		for first := true; first || (!s.rates.Complete(s.status) && time.Now().Before(until)); first = false {
			if !wait(ctx, o.Interval) {
				return nil
			}
			if err = s.sample(); err != nil {
				break
			}
		}
	}
	for n := 1; ; n++ {
		if err != nil && o.Frames > 0 {
			return fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		if n > 1 {
			// Frames are separated by a blank line; each starts with
			// "forkd top" and the time.
			fmt.Fprintln(o.Stdout)
		}
		if rerr := Render(o.Stdout, s.frame(o.Sort, err)); rerr != nil {
			return rerr
		}
		if o.Frames > 0 && n >= o.Frames {
			return nil
		}
		if !wait(ctx, o.Interval) {
			return nil
		}
		err = s.sample()
	}
}

func interactive(ctx context.Context, o Options, s *sampler, out *os.File) error {
	in := int(o.Stdin.Fd())
	old, err := term.MakeRaw(in)
	if err != nil {
		return fmt.Errorf("top: terminal raw mode: %w", err)
	}
	defer term.Restore(in, old)
	io.WriteString(out, enterScreen)
	defer io.WriteString(out, leaveScreen)

	keys := make(chan byte, 8)
	go func() {
		var b [16]byte
		for {
			n, err := o.Stdin.Read(b[:])
			for _, c := range b[:n] {
				keys <- c
			}
			if err != nil {
				close(keys)
				return
			}
		}
	}()
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	// The master is asked on a goroutine of its own, so that keys are
	// read even while a master that does not answer holds a request.
	answers := make(chan answer)
	done := make(chan struct{})
	defer close(done)
	go func() {
		tick := time.NewTicker(o.Interval)
		defer tick.Stop()
		for {
			select {
			case answers <- s.fetch():
			case <-done:
				return
			}
			select {
			case <-tick.C:
			case <-done:
				return
			}
		}
	}()

	sort := o.Sort
	err = nil // and no status: the frame says it waits for the first answer
	for {
		f := s.frame(sort, err)
		f.Keys = true
		f.Width, f.Height, _ = term.GetSize(int(out.Fd()))
		var b strings.Builder
		Render(&b, f)
		if perr := paint(out, b.String()); perr != nil {
			return perr
		}
		select {
		case <-ctx.Done():
			return nil
		case <-winch:
		case c, ok := <-keys:
			switch {
			case !ok, c == 'q', c == 'Q', c == 3 /* ^C */, c == 4 /* ^D */ :
				return nil
			case c == 's', c == 'S':
				sort = NextSort(sort)
			}
		case a := <-answers:
			err = s.apply(a)
		}
	}
}
