package test

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runInstall runs contrib/install.sh -b <the test binary> with env added to
// this process's environment and returns what it printed.
func runInstall(t *testing.T, env ...string) string {
	t.Helper()
	cmd := exec.Command("sh", "../contrib/install.sh", "-b", binary)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("install.sh %v: %v\n%s", env, err, out)
	}
	return string(out)
}

// unitValue returns the value of the last key= line of a unit file.
func unitValue(t *testing.T, unit, key string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^`+key+`=(.*)$`).FindAllStringSubmatch(unit, -1)
	if m == nil {
		t.Fatalf("the unit has no %s=", key)
	}
	return m[len(m)-1][1]
}

// readFile returns a file's contents or fails the test.
func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// replaceAll replaces every old in s by new, and fails if there is none:
// the test must notice when a file it rewrites changed.
func replaceAll(t *testing.T, s, from, to string) string {
	t.Helper()
	if !strings.Contains(s, from) {
		t.Fatalf("%q not found in:\n%s", from, s)
	}
	return strings.ReplaceAll(s, from, to)
}

// TestInstallHelp: -h prints the usage on stdout and succeeds; an unknown
// flag prints it on stderr and fails with 2.
func TestInstallHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("sh", "../contrib/install.sh", "-h")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || !strings.HasPrefix(stdout.String(), "usage: ") || stderr.Len() != 0 {
		t.Fatalf("install.sh -h: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
	}
	stdout.Reset()
	cmd = exec.Command("sh", "../contrib/install.sh", "-x")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), "usage: ") || stdout.Len() != 0 {
		t.Fatalf("install.sh -x: %v, want exit 2 and the usage on stderr\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
	}
}

// TestInstallDestdir runs contrib/install.sh into a temporary DESTDIR with
// PREFIX=/usr, as a package build does, and checks every file it put there,
// that systemd accepts the units (systemd-analyze verify) and scores them
// as before (systemd-analyze security), that forkd.socket listens where the
// configuration does, and that a reinstall keeps an operator's
// configuration.
func TestInstallDestdir(t *testing.T) {
	dest := t.TempDir()
	runInstall(t, "DESTDIR="+dest, "PREFIX=/usr")

	// Every file, and nothing else, with its mode.
	want := map[string]os.FileMode{
		"usr/bin/forkd":                        0o755,
		"usr/lib/systemd/system/forkd.service": 0o644,
		"usr/lib/systemd/system/forkd.socket":  0o644,
		"usr/lib/sysusers.d/forkd.conf":        0o644,
		"etc/logrotate.d/forkd":                0o644,
		"etc/forkd/config.hcl":                 0o644,
		"usr/share/doc/forkd/README.md":        0o644,
		"usr/share/doc/forkd/LICENSE":          0o644,
	}
	docs, err := filepath.Glob("../docs/*.md")
	if err != nil || len(docs) == 0 {
		t.Fatalf("no docs/*.md: %v", err)
	}
	for _, d := range docs {
		want["usr/share/doc/forkd/docs/"+filepath.Base(d)] = 0o644
	}
	var got []string
	err = filepath.WalkDir(dest, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dest, path)
		got = append(got, rel)
		mode, ok := want[rel]
		if !ok {
			t.Errorf("unexpected file %s", rel)
			return nil
		}
		st, err := os.Lstat(path)
		if err != nil {
			return err
		}
		if st.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", rel, st.Mode(), mode)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		sort.Strings(got)
		t.Errorf("installed %d files, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	if readFile(t, filepath.Join(dest, "usr/bin/forkd")) != readFile(t, binary) {
		t.Error("the installed binary is not the one given with -b")
	}
	for inst, src := range map[string]string{
		"usr/lib/sysusers.d/forkd.conf":      "../contrib/sysusers/forkd.conf",
		"etc/logrotate.d/forkd":              "../contrib/logrotate/forkd",
		"etc/forkd/config.hcl":               "../contrib/config.hcl",
		"usr/share/doc/forkd/README.md":      "../README.md",
		"usr/share/doc/forkd/LICENSE":        "../LICENSE",
		"usr/share/doc/forkd/docs/DESIGN.md": "../docs/DESIGN.md",
	} {
		if readFile(t, filepath.Join(dest, inst)) != readFile(t, src) {
			t.Errorf("%s differs from %s", inst, src)
		}
	}

	// The units run the installed binary on the installed configuration
	// and name installed documentation.
	unitDir := filepath.Join(dest, "usr/lib/systemd/system")
	service := readFile(t, filepath.Join(unitDir, "forkd.service"))
	if v := unitValue(t, service, "ExecStart"); v != "/usr/bin/forkd -c /etc/forkd/config.hcl" {
		t.Errorf("ExecStart=%s, want the installed binary and configuration", v)
	}
	for _, m := range regexp.MustCompile(`(?m)^Documentation=file://(.*)$`).FindAllStringSubmatch(service, -1) {
		if _, err := os.Stat(filepath.Join(dest, m[1])); err != nil {
			t.Errorf("Documentation= names a file that was not installed: %v", err)
		}
	}
	socket := readFile(t, filepath.Join(unitDir, "forkd.socket"))
	for name, unit := range map[string]string{"forkd.service": service, "forkd.socket": socket} {
		for _, line := range strings.Split(unit, "\n") {
			if !strings.HasPrefix(line, "#") && strings.Contains(line, "/usr/local/") {
				t.Errorf("%s still names /usr/local: %s", name, line)
			}
		}
	}

	// forkd.socket and the configuration agree on the one address.
	cfg := readFile(t, filepath.Join(dest, "etc/forkd/config.hcl"))
	addrs := regexp.MustCompile(`(?m)^\s*address\s*=\s*"([^"]*)"`).FindAllStringSubmatch(cfg, -1)
	if len(addrs) != 1 || unitValue(t, socket, "ListenStream") != addrs[0][1] {
		t.Errorf("forkd.socket listens on %s, the configuration on %v", unitValue(t, socket, "ListenStream"), addrs)
	}

	// systemd-analyze checks that ExecStart's binary exists on this
	// machine: verify copies of the units that run the one in DESTDIR.
	check := t.TempDir()
	for name, unit := range map[string]string{"forkd.service": service, "forkd.socket": socket} {
		unit = strings.ReplaceAll(unit, "=/usr/bin/forkd ", "="+dest+"/usr/bin/forkd ")
		if err := os.WriteFile(filepath.Join(check, name), []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	analyze := func(args ...string) (string, error) {
		cmd := exec.Command("systemd-analyze", args...)
		cmd.Env = append(os.Environ(), "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := analyze("verify", filepath.Join(check, "forkd.service"), filepath.Join(check, "forkd.socket")); err != nil || out != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The exposure score of the shipped unit (0 to 10, lower is safer) must
	// not grow: raise the threshold only for a reason written in the unit.
	out, err := analyze("security", "--offline=true", "--threshold=28", filepath.Join(check, "forkd.service"))
	score := regexp.MustCompile(`Overall exposure level for forkd.service: (\d+\.\d+)`).FindStringSubmatch(out)
	if err != nil || score == nil {
		t.Errorf("systemd-analyze security: %v, want an exposure level of 2.8 or less\n%s", err, out)
	} else {
		t.Logf("systemd-analyze security forkd.service: exposure level %s", score[1])
	}

	// A reinstall keeps an operator's configuration.
	path := filepath.Join(dest, "etc/forkd/config.hcl")
	if err := os.WriteFile(path, []byte("workers = 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runInstall(t, "DESTDIR="+dest, "PREFIX=/usr")
	if b := readFile(t, path); b != "workers = 3\n" {
		t.Errorf("a reinstall replaced the configuration: %q", b)
	}

	// Any other PREFIX (the default, /usr/local) is the administrator's:
	// units and sysusers.d file go to /etc.
	local := t.TempDir()
	runInstall(t, "DESTDIR="+local, "PREFIX=")
	service = readFile(t, filepath.Join(local, "etc/systemd/system/forkd.service"))
	if v := unitValue(t, service, "ExecStart"); v != "/usr/local/bin/forkd -c /etc/forkd/config.hcl" {
		t.Errorf("with the default PREFIX, ExecStart=%s", v)
	}
	for _, f := range []string{"usr/local/bin/forkd", "etc/systemd/system/forkd.socket", "etc/sysusers.d/forkd.conf",
		"usr/local/share/doc/forkd/README.md"} {
		if _, err := os.Stat(filepath.Join(local, f)); err != nil {
			t.Errorf("with the default PREFIX: %v", err)
		}
	}
}

// TestInstallService installs on this machine, as an operator's `sudo
// contrib/install.sh` does but with every path in a temporary root, then
// runs the installed configuration the way the installed unit does: as
// root, under the unit's capability bounding set, NoNewPrivileges and
// UMask, in the directories systemd would create (the paths rewritten into
// the temporary root, the address a free loopback port). The workers run as
// forkd, the user install.sh created; the access log is written; a reload
// is accepted; and the installed logrotate file rotates the log, after which
// the workers write to a new file.
func TestInstallService(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (CI runs as root)")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatal("setpriv (util-linux) is required")
	}
	logrotate, err := exec.LookPath("logrotate")
	if err != nil {
		t.Fatal("logrotate is required")
	}
	root := t.TempDir()
	// The workers, as forkd, exec the binary and open the access log in
	// here.
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// No DESTDIR: install.sh creates the forkd user and group on this
	// machine (systemd-sysusers on the installed sysusers.d file) and
	// /var/log/forkd, and does so again, without error, on a second run;
	// everything else goes into the temporary root.
	env := []string{"DESTDIR=", "PREFIX=" + root + "/usr", "SYSCONFDIR=" + root + "/etc",
		"UNITDIR=" + root + "/units", "SYSUSERSDIR=" + root + "/sysusers.d", "DOCDIR=" + root + "/doc"}
	runInstall(t, env...)
	runInstall(t, env...)
	u, err := user.Lookup("forkd")
	if err != nil {
		t.Fatalf("install.sh did not create the user: %v", err)
	}
	g, err := user.LookupGroup("forkd")
	if err != nil {
		t.Fatalf("install.sh did not create the group: %v", err)
	}
	if u.Gid != g.Gid {
		t.Errorf("forkd's primary group is %s, want forkd (%s)", u.Gid, g.Gid)
	}

	// What RuntimeDirectory= and LogsDirectory= make, as root, mode 0755.
	for _, d := range []string{"run/forkd", "var/log/forkd"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := &server{t: t, dir: root, exited: make(chan struct{}), logs: newLogWatcher()}
	s.addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := readFile(t, filepath.Join(root, "etc/forkd/config.hcl"))
	cfg = replaceAll(t, cfg, `"0.0.0.0:80"`, `"`+s.addr+`"`)
	cfg = replaceAll(t, cfg, `"/run/forkd/`, `"`+root+`/run/forkd/`)
	cfg = replaceAll(t, cfg, `"/var/log/forkd/`, `"`+root+`/var/log/forkd/`)
	s.cfg = filepath.Join(root, "config.hcl")
	if err := os.WriteFile(s.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "usr/bin/forkd")
	if out, err := exec.Command(bin, "-t", "-c", s.cfg).CombinedOutput(); err != nil {
		t.Fatalf("forkd -t on the installed configuration: %v\n%s", err, out)
	}

	// The unit's sandbox, as far as it concerns files and users.
	unit := readFile(t, filepath.Join(root, "units/forkd.service"))
	if v := unitValue(t, unit, "User"); v != "root" {
		t.Fatalf("the unit runs the master as %s, want root", v)
	}
	bounding := "-all"
	for _, c := range strings.Fields(unitValue(t, unit, "CapabilityBoundingSet")) {
		bounding += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	script := "umask " + unitValue(t, unit, "UMask") + " && exec " + setpriv + " --bounding-set=" + bounding
	if unitValue(t, unit, "NoNewPrivileges") == "yes" {
		script += " --no-new-privs"
	}
	script += ` "$@"`
	// sh and setpriv exec: the master keeps the pid the harness watches.
	s.cmd = exec.Command("sh", "-c", script, "sh", bin, "-c", s.cfg)
	s.cmd.Dir = root
	s.run()
	s.waitLog(`all workers ready.*generation=1`, 15*time.Second)

	if code, body, err := get(s.addr, "/healthz"); err != nil || code != 200 || body != "ok\n" {
		t.Fatalf("GET /healthz: %d %q %v", code, body, err)
	}
	// The master is root; every worker is forkd, with no other group.
	status := func(pid int) string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	ids := func(st, key, id string) bool {
		return regexp.MustCompile(`(?m)^` + key + `:\t` + id + `\t` + id + `\t` + id + `\t` + id + `$`).MatchString(st)
	}
	if st := status(s.cmd.Process.Pid); !ids(st, "Uid", "0") {
		t.Errorf("the master is not root:\n%s", st)
	}
	workers := s.workers()
	if len(workers) == 0 {
		t.Fatal("no workers")
	}
	for _, pid := range workers {
		st := status(pid)
		if !ids(st, "Uid", u.Uid) || !ids(st, "Gid", g.Gid) || !regexp.MustCompile(`(?m)^Groups:\s*$`).MatchString(st) {
			t.Errorf("worker %d does not run as forkd (uid %s, gid %s) alone:\n%s", pid, u.Uid, g.Gid, st)
		}
	}

	// The access log: created by the master, handed to forkd, written by
	// the workers.
	access := filepath.Join(root, "var/log/forkd/access.log")
	logged := func(path, line string) bool {
		b, _ := os.ReadFile(path)
		return strings.Contains(string(b), line)
	}
	eventually(t, 10*time.Second, "the request in the access log", func() bool {
		return logged(access, `"GET /healthz HTTP/1.1" 200 3`)
	})
	owned := func(path string) {
		t.Helper()
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if sys.Uid != 0 || fmt.Sprint(sys.Gid) != g.Gid || st.Mode().Perm() != 0o660 {
			t.Errorf("%s: owner %d:%d mode %v, want root:forkd 0660", path, sys.Uid, sys.Gid, st.Mode().Perm())
		}
	}
	owned(access)

	// The control socket next to the pidfile, as root.
	if out, err := exec.Command(bin, "status", "-c", s.cfg).CombinedOutput(); err != nil {
		t.Errorf("forkd status: %v\n%s", err, out)
	}
	// systemctl reload: the master opens the access log the workers own.
	s.signal(syscall.SIGHUP)
	if m := s.waitLog(`reload complete|reload refused.*`, 30*time.Second); m[0] != "reload complete" {
		t.Fatalf("the reload was refused: %s", m[0])
	}

	// The installed logrotate file, its paths in the temporary root:
	// rename, then USR1 to the master named by the pidfile.
	rotate := readFile(t, filepath.Join(root, "etc/logrotate.d/forkd"))
	rotate = replaceAll(t, rotate, "/var/log/forkd/", root+"/var/log/forkd/")
	rotate = replaceAll(t, rotate, "/run/forkd/forkd.pid", root+"/run/forkd/forkd.pid")
	conf := filepath.Join(root, "logrotate.conf")
	if err := os.WriteFile(conf, []byte(rotate), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(logrotate, "-f", "-s", filepath.Join(root, "logrotate.state"), conf).CombinedOutput(); err != nil || len(out) != 0 {
		t.Fatalf("logrotate: %v\n%s", err, out)
	}
	s.waitLog(`log files reopened:.*role=master`, 10*time.Second)
	if !logged(access+".1", `"GET /healthz HTTP/1.1"`) {
		t.Errorf("access.log.1 lacks the request before the rotation")
	}
	// A worker that has not reopened yet still writes to access.log.1:
	// ask until one line reaches the new file.
	eventually(t, 10*time.Second, "a request in the new access log", func() bool {
		if code, _, err := get(s.addr, "/after-rotation"); err != nil || code != 200 {
			t.Fatalf("GET after the rotation: %d %v", code, err)
		}
		return logged(access, `"GET /after-rotation HTTP/1.1" 200`)
	})
	owned(access)

	// systemctl stop.
	s.signal(syscall.SIGTERM)
	if code := s.waitExit(30 * time.Second); code != 0 {
		t.Fatalf("master exit %d", code)
	}
	// No warning, but the one about this machine's open file limit
	// (the unit raises it: LimitNOFILE=).
	for _, line := range strings.Split(s.logs.String(), "\n") {
		if regexp.MustCompile(`\[(WARN|ERROR)\]`).MatchString(line) && !strings.Contains(line, "RLIMIT_NOFILE") {
			t.Errorf("the master or a worker warned: %s", line)
		}
	}
}
