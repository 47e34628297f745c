package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestContribInstall runs contrib/install.sh into a temporary DESTDIR, as a
// packager would, and checks what it put where: the binary the unit runs,
// the units pointing at it, logrotate, and a configuration forkd accepts,
// which a second run leaves alone.
func TestContribInstall(t *testing.T) {
	dest := t.TempDir()
	install := func() {
		t.Helper()
		cmd := exec.Command("sh", "../contrib/install.sh", "-b", binary)
		cmd.Env = append(os.Environ(), "DESTDIR="+dest, "PREFIX=/usr")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("install.sh: %v\n%s", err, out)
		}
	}
	install()
	bin := filepath.Join(dest, "usr/bin/forkd")
	for path, mode := range map[string]os.FileMode{
		bin:                                0o755,
		"etc/systemd/system/forkd.service": 0o644,
		"etc/systemd/system/forkd.socket":  0o644,
		"etc/logrotate.d/forkd":            0o644,
		"etc/forkd/config.hcl":             0o644,
	} {
		if !filepath.IsAbs(path) {
			path = filepath.Join(dest, path)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", path, st.Mode().Perm(), mode)
		}
	}
	unit, err := os.ReadFile(filepath.Join(dest, "etc/systemd/system/forkd.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart=/usr/bin/forkd -c /etc/forkd/config.hcl\n") || strings.Contains(string(unit), "/usr/local/") {
		t.Errorf("the unit does not run the installed binary:\n%s", unit)
	}
	cfg := filepath.Join(dest, "etc/forkd/config.hcl")
	if out, err := exec.Command(bin, "-t", "-c", cfg).CombinedOutput(); err != nil {
		t.Fatalf("forkd -t on the installed configuration: %v\n%s", err, out)
	}
	// An operator's configuration survives a reinstall.
	if err := os.WriteFile(cfg, []byte("workers = 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	install()
	if b, _ := os.ReadFile(cfg); string(b) != "workers = 3\n" {
		t.Errorf("a reinstall replaced the configuration: %q", b)
	}
}
