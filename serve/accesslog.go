package serve

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/forkd/forkd/internal/lograte"
	"github.com/forkd/forkd/protocol"
)

const (
	// accessLogMaxField bounds each request-supplied field in a line.
	accessLogMaxField = 4096
	// accessLogMaxPooled is the largest line buffer kept for reuse.
	accessLogMaxPooled = 64 << 10
)

// AccessLog writes one line per request to a file opened with O_APPEND.
// Each line goes out in a single write(2), so the lines of several worker
// processes appending to the same file never interleave. It is safe for
// concurrent use.
type AccessLog struct {
	path   string
	json   bool
	pid    int
	stderr bool
	file   atomic.Pointer[os.File]
	mu     sync.Mutex // serialises Reopen and Close
	bufs   sync.Pool  // *[]byte

	// Logger, if set, hears of failed writes (a full disk), at most once
	// per errEvery, with the count of lines lost since.
	Logger  hclog.Logger
	errRate *lograte.Limiter
	lost    atomic.Uint64
}

// errEvery is how often a failing access log may say so.
const errEvery = 10 * time.Second

// OpenAccessLog opens path ("-" = stderr) in the given format: "combined"
// (the combined log format with pid and duration appended; "text" and ""
// mean the same) or "json" (one object per line).
func OpenAccessLog(path, format string, pid int) (*AccessLog, error) {
	a := &AccessLog{path: path, pid: pid, errRate: lograte.New(errEvery)}
	switch format {
	case "", "combined", "text":
	case "json":
		a.json = true
	default:
		return nil, fmt.Errorf("access log: unknown format %q", format)
	}
	a.bufs.New = func() any { b := make([]byte, 0, 512); return &b }
	switch path {
	case "":
		return nil, errors.New("access log: empty path")
	case "-":
		a.stderr = true
		a.file.Store(os.Stderr)
		return a, nil
	}
	f, err := openLogFile(path)
	if err != nil {
		return nil, err
	}
	a.file.Store(f)
	return a, nil
}

// openLogFile opens the shared log file for appending.
func openLogFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	return f, nil
}

// Log writes the line for one request; it has protocol.LogFunc's signature.
func (a *AccessLog) Log(r *protocol.Request, w *protocol.ResponseWriter, start time.Time) {
	dur := time.Since(start)
	bp := a.bufs.Get().(*[]byte)
	var e logEntry
	e.fill(r, w)
	var b []byte
	if a.json {
		b = e.appendJSON((*bp)[:0], start, dur, a.pid)
	} else {
		b = e.appendText((*bp)[:0], start, dur, a.pid)
	}
	a.write(b)
	if cap(b) <= accessLogMaxPooled {
		*bp = b[:0]
		a.bufs.Put(bp)
	}
}

// write writes one line with one write(2). A write racing with Reopen that
// finds the old file closed is retried on the new one.
func (a *AccessLog) write(b []byte) {
	f := a.file.Load()
	for f != nil {
		_, err := f.Write(b)
		if !errors.Is(err, os.ErrClosed) {
			if err != nil {
				a.writeFailed(err)
			}
			return
		}
		next := a.file.Load()
		if next == f {
			return
		}
		f = next
	}
}

// writeFailed counts a lost line and says so, rate-limited: the request
// itself was answered, only its log line is gone.
func (a *AccessLog) writeFailed(err error) {
	a.lost.Add(1)
	if a.Logger == nil {
		return
	}
	if ok, _ := a.errRate.Allow(time.Now()); ok {
		a.Logger.Error("access log write failed; lines are lost until it recovers",
			"path", a.path, "error", err, "lines_lost", a.lost.Swap(0))
	}
}

// Reopen reopens the file (after logrotate moved it; USR1).
func (a *AccessLog) Reopen() error {
	if a.stderr {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.file.Load() == nil {
		return errors.New("access log: closed")
	}
	f, err := openLogFile(a.path)
	if err != nil {
		return err
	}
	if old := a.file.Swap(f); old != nil {
		return old.Close()
	}
	return nil
}

// Close closes the file.
func (a *AccessLog) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.file.Swap(nil)
	if f == nil || a.stderr {
		return nil
	}
	return f.Close()
}

// logEntry holds the fields of one line.
type logEntry struct {
	remote  net.Addr
	host    []byte
	method  []byte
	target  []byte
	major   int
	minor   int
	status  int
	bytes   int64
	referer []byte
	ua      []byte
	id      []byte // request_id's, or empty
}

func (e *logEntry) fill(r *protocol.Request, w *protocol.ResponseWriter) {
	if r != nil {
		e.remote = r.RemoteAddr
		e.host = r.Host
		e.method = r.Method
		e.target = r.Target
		e.major, e.minor = r.ProtoMajor, r.ProtoMinor
		e.referer = r.Header.Get("Referer")
		e.ua = r.Header.Get("User-Agent")
		e.id = r.ID
	}
	if w != nil {
		e.status = w.Status()
		e.bytes = w.BytesWritten()
	}
}

// appendText appends the combined-format line.
func (e *logEntry) appendText(b []byte, start time.Time, dur time.Duration, pid int) []byte {
	b = appendRemote(b, e.remote)
	b = append(b, " - - ["...)
	b = start.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, "] \""...)
	if len(e.method) == 0 && len(e.target) == 0 {
		b = append(b, '-')
	} else {
		b = appendTextEscaped(b, e.method)
		b = append(b, ' ')
		b = appendTextEscaped(b, e.target)
		b = append(b, ' ')
		b = appendProto(b, e.major, e.minor)
	}
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, e.bytes, 10)
	b = append(b, " \""...)
	b = appendTextOrDash(b, e.referer)
	b = append(b, "\" \""...)
	b = appendTextOrDash(b, e.ua)
	b = append(b, "\" pid="...)
	b = strconv.AppendInt(b, int64(pid), 10)
	b = append(b, " dur_ms="...)
	b = strconv.AppendFloat(b, float64(dur.Nanoseconds())/1e6, 'f', 3, 64)
	if len(e.id) > 0 {
		b = append(b, " request_id="...)
		b = appendTextEscaped(b, e.id)
	}
	return append(b, '\n')
}

// appendJSON appends the JSON object line.
func (e *logEntry) appendJSON(b []byte, start time.Time, dur time.Duration, pid int) []byte {
	b = append(b, `{"time":"`...)
	b = start.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, `","remote":"`...)
	b = appendRemote(b, e.remote)
	b = append(b, `","host":"`...)
	b = appendJSONEscaped(b, e.host)
	b = append(b, `","method":"`...)
	b = appendJSONEscaped(b, e.method)
	b = append(b, `","path":"`...)
	b = appendJSONEscaped(b, e.target)
	b = append(b, `","proto":"`...)
	b = appendProto(b, e.major, e.minor)
	b = append(b, `","status":`...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, e.bytes, 10)
	b = append(b, `,"duration":`...)
	b = strconv.AppendFloat(b, dur.Seconds(), 'f', 6, 64)
	b = append(b, `,"pid":`...)
	b = strconv.AppendInt(b, int64(pid), 10)
	b = append(b, `,"referer":"`...)
	b = appendJSONEscaped(b, e.referer)
	b = append(b, `","ua":"`...)
	b = appendJSONEscaped(b, e.ua)
	if len(e.id) > 0 {
		b = append(b, `","request_id":"`...)
		b = appendJSONEscaped(b, e.id)
	}
	return append(b, "\"}\n"...)
}

// appendRemote appends the client address without its port.
func appendRemote(b []byte, a net.Addr) []byte {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap().AppendTo(b)
	case *net.UnixAddr:
		return append(b, "unix"...)
	case nil:
		return append(b, '-')
	}
	return appendTextEscaped(b, []byte(a.String()))
}

// appendProto appends "HTTP/x.y", or "-" when the version was not parsed.
func appendProto(b []byte, major, minor int) []byte {
	if major == 0 && minor == 0 {
		return append(b, '-')
	}
	b = append(b, "HTTP/"...)
	b = strconv.AppendInt(b, int64(major), 10)
	b = append(b, '.')
	return strconv.AppendInt(b, int64(minor), 10)
}

func appendTextOrDash(b, s []byte) []byte {
	if len(s) == 0 {
		return append(b, '-')
	}
	return appendTextEscaped(b, s)
}

const lowerHex = "0123456789abcdef"

// appendTextEscaped appends s for a text line: printable ASCII but '"' and
// '\' as is, every other byte as \xHH.
func appendTextEscaped(b, s []byte) []byte {
	cut := len(s) > accessLogMaxField
	if cut {
		s = s[:accessLogMaxField]
	}
	for _, c := range s {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			b = append(b, '\\', 'x', lowerHex[c>>4], lowerHex[c&15])
		} else {
			b = append(b, c)
		}
	}
	if cut {
		b = append(b, "..."...)
	}
	return b
}

// appendJSONEscaped appends s as the inside of a JSON string (RFC 8259
// section 7), escaping every byte outside printable ASCII.
func appendJSONEscaped(b, s []byte) []byte {
	cut := len(s) > accessLogMaxField
	if cut {
		s = s[:accessLogMaxField]
	}
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c >= 0x7f:
			b = append(b, '\\', 'u', '0', '0', lowerHex[c>>4], lowerHex[c&15])
		default:
			b = append(b, c)
		}
	}
	if cut {
		b = append(b, "..."...)
	}
	return b
}
