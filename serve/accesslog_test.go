package serve

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/protocol"
)

// loggedServer serves a respond route and logs to al; every logged request
// is signalled on the returned channel.
func loggedServer(t *testing.T, al *AccessLog) (string, <-chan struct{}) {
	t.Helper()
	h := newHandler(t, []config.Site{{Name: "l", Routes: []config.Route{
		{Prefix: "/", Respond: &config.Respond{Status: 200, Body: "hello"}},
	}}}, Options{})
	logged := make(chan struct{}, 100)
	addr := startServer(t, h, func(r *protocol.Request, w *protocol.ResponseWriter, start time.Time) {
		al.Log(r, w, start)
		logged <- struct{}{}
	})
	return addr, logged
}

func waitLogged(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(testTimeout):
		t.Fatal("no access log call")
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestAccessLogText(t *testing.T) {
	for _, format := range []string{"combined", "text"} {
		t.Run(format, func(t *testing.T) { testAccessLogCombined(t, format) })
	}
}

// testAccessLogCombined checks a line in the combined log format, which
// log.access_format = "combined" (the default) selects.
func testAccessLogCombined(t *testing.T, format string) {
	path := filepath.Join(t.TempDir(), "access.log")
	al, err := OpenAccessLog(path, format, 4242)
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
	addr, logged := loggedServer(t, al)
	get(t, addr, "GET", "/a?b=1", `Referer: http://ref/"x"`, "User-Agent: ua\\1 \xff\"")
	waitLogged(t, logged)

	lines := readLines(t, path)
	if len(lines) != 1 {
		t.Fatalf("lines: %q", lines)
	}
	re := regexp.MustCompile(`^127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] ` +
		`"GET /a\?b=1 HTTP/1\.1" 200 5 "http://ref/\\x22x\\x22" "ua\\x5c1 \\xff\\x22" pid=4242 dur_ms=\d+\.\d{3}$`)
	if !re.MatchString(lines[0]) {
		t.Errorf("line %q does not match %s", lines[0], re)
	}
}

func TestAccessLogJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.json")
	al, err := OpenAccessLog(path, "json", 77)
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	addr, logged := loggedServer(t, al)
	get(t, addr, "GET", "/j/%22q?x=\"", "User-Agent: \"quoted\" \\ \xffbad", "Referer: r")
	waitLogged(t, logged)
	get(t, addr, "HEAD", "/h")
	waitLogged(t, logged)

	lines := readLines(t, path)
	if len(lines) != 2 {
		t.Fatalf("lines: %q", lines)
	}
	var e struct {
		Time     string  `json:"time"`
		Remote   string  `json:"remote"`
		Host     string  `json:"host"`
		Method   string  `json:"method"`
		Path     string  `json:"path"`
		Proto    string  `json:"proto"`
		Status   int     `json:"status"`
		Bytes    int64   `json:"bytes"`
		Duration float64 `json:"duration"`
		PID      int     `json:"pid"`
		Referer  string  `json:"referer"`
		UA       string  `json:"ua"`
	}
	dec := json.NewDecoder(strings.NewReader(lines[0]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("%v: %s", err, lines[0])
	}
	if _, err := time.Parse(time.RFC3339Nano, e.Time); err != nil {
		t.Errorf("time %q: %v", e.Time, err)
	}
	if e.Remote != "127.0.0.1" || e.Host != "example.com" || e.Method != "GET" || e.Path != `/j/%22q?x="` ||
		e.Proto != "HTTP/1.1" || e.Status != 200 || e.Bytes != 5 || e.PID != 77 || e.Referer != "r" ||
		e.UA != "\"quoted\" \\ \u00ffbad" || e.Duration < 0 {
		t.Errorf("entry %+v from %s", e, lines[0])
	}
	if !strings.Contains(lines[0], `\"quoted\" \\ \u00ffbad`) || strings.Contains(lines[0], "\xff") {
		t.Errorf("UA not escaped in %q", lines[0])
	}
	if err := json.Unmarshal([]byte(lines[1]), &e); err != nil || e.Method != "HEAD" || e.Bytes != 0 {
		t.Errorf("HEAD entry %+v (%v)", e, err)
	}
}

func TestAccessLogReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	al, err := OpenAccessLog(path, "text", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	addr, logged := loggedServer(t, al)
	get(t, addr, "GET", "/before")
	waitLogged(t, logged)

	// logrotate: move the file away, then signal.
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	get(t, addr, "GET", "/moved") // still goes to the moved file
	waitLogged(t, logged)
	if err := al.Reopen(); err != nil {
		t.Fatal(err)
	}
	get(t, addr, "GET", "/after")
	waitLogged(t, logged)

	old, cur := readLines(t, rotated), readLines(t, path)
	if len(old) != 2 || !strings.Contains(old[0], "/before") || !strings.Contains(old[1], "/moved") {
		t.Errorf("rotated file: %q", old)
	}
	if len(cur) != 1 || !strings.Contains(cur[0], "/after") {
		t.Errorf("new file: %q", cur)
	}
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}
	if err := al.Reopen(); err == nil {
		t.Error("Reopen after Close succeeded")
	}
}

// TestAccessLogNoInterleave has two AccessLogs on the same file (as two
// worker processes have) write long lines from many goroutines while the
// file is reopened: every line must come out whole.
func TestAccessLogNoInterleave(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	logs := make([]*AccessLog, 2)
	for i := range logs {
		al, err := OpenAccessLog(path, "json", 100+i)
		if err != nil {
			t.Fatal(err)
		}
		defer al.Close()
		logs[i] = al
	}
	const goroutines, per = 8, 200
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			al := logs[g%2]
			e := logEntry{method: []byte("GET"), major: 1, minor: 1, status: 200,
				ua: bytes.Repeat([]byte{byte('a' + g)}, 3000)}
			for i := 0; i < per; i++ {
				e.target = []byte(fmt.Sprintf("/g%d/%d", g, i))
				b := e.appendJSON(nil, time.Now(), time.Millisecond, al.pid)
				al.write(b)
				if i == per/2 {
					if err := al.Reopen(); err != nil {
						t.Error(err)
					}
				}
			}
		}(g)
	}
	wg.Wait()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	n := 0
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d is not whole: %v", n, err)
		}
		n++
	}
	if n != goroutines*per {
		t.Errorf("%d lines, want %d", n, goroutines*per)
	}
}

func TestAccessLogOpenErrors(t *testing.T) {
	if _, err := OpenAccessLog(filepath.Join(t.TempDir(), "x"), "xml", 1); err == nil {
		t.Error("format xml accepted")
	}
	if _, err := OpenAccessLog(filepath.Join(t.TempDir(), "no", "such", "dir"), "text", 1); err == nil {
		t.Error("missing directory accepted")
	}
	al, err := OpenAccessLog("-", "text", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := al.Reopen(); err != nil {
		t.Error(err)
	}
	if err := al.Close(); err != nil {
		t.Error(err)
	}
}
