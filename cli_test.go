package forkd

import (
	"os"
	"testing"

	"github.com/forkd/forkd/config"
)

// TestBuiltinConfigListens: with no file and no test hook, the built-in
// configuration listens on config.DefaultAddress.
func TestBuiltinConfigListens(t *testing.T) {
	t.Setenv(testAddressEnv, "")
	cfg, err := builtinConfig(&options{defaultConfig: config.Default})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Listen) != 1 || cfg.Listen[0].Address != "127.0.0.1:8080" || cfg.Path != "" {
		t.Fatalf("built-in listeners %+v, path %q", cfg.Listen, cfg.Path)
	}
}

// TestConfigFileOnlyWhenAsked: an embedding program ignores a config.hcl in
// its working directory; WithConfigFile (the daemon) reads it.
func TestConfigFileOnlyWhenAsked(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := os.WriteFile(config.DefaultFile, []byte("workers = 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(&options{defaultConfig: config.Default}, "", true)
	if err != nil || cfg.Path != "" {
		t.Fatalf("embedder: config %v, err %v; want the built-in configuration", cfg, err)
	}
	cfg, err = loadConfig(&options{defaultConfig: config.Default, configFile: config.DefaultFile}, "", true)
	if err != nil || cfg.Workers != 3 {
		t.Fatalf("daemon: config %+v, err %v; want ./config.hcl", cfg, err)
	}
}

// TestCommandLineUsage: flags go before or after a control command; a
// command line forkd cannot parse exits 2.
func TestCommandLineUsage(t *testing.T) {
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	stderr := os.Stderr
	os.Stderr = devnull
	defer func() { os.Stderr = stderr }()
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"bogus"}, exitUsage},
		{[]string{"scale"}, exitUsage},
		{[]string{"scale", "zero"}, exitUsage},
		{[]string{"-nope"}, exitUsage},
		{[]string{"status", "extra"}, exitUsage},
		// No control socket in the built-in configuration: a failure, not
		// a usage error, whichever side of the command the flag is on.
		{[]string{"-json", "status"}, 1},
		{[]string{"status", "-json"}, 1},
	} {
		if got := runCommand(&options{name: "forkd", defaultConfig: config.Default, args: c.args}); got != c.want {
			t.Errorf("forkd %v: exit %d, want %d", c.args, got, c.want)
		}
	}
}
