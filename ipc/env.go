package ipc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/forkd/forkd/config"
)

// Environment variables a master sets for the worker it executes.
const (
	EnvRole       = "FORKD_ROLE"       // "worker"
	EnvIPCFD      = "FORKD_IPC_FD"     // fd number of the ipc socket
	EnvConfigFD   = "FORKD_CONFIG_FD"  // fd number of the configuration (see ConfigFile)
	EnvListenFDs  = "FORKD_LISTEN_FDS" // "addr=fd,addr=fd" for each listener (see EncodeFDs)
	EnvSlot       = "FORKD_SLOT"
	EnvGeneration = "FORKD_GENERATION"
	EnvDraining   = "FORKD_DRAINING" // "1" when the worker starts while its master drains (see TypeDrain)
	// EnvLoopP is "1" when the master gave the worker a GOMAXPROCS one
	// more than its share of the CPUs, for the event loops
	// (protocol.WorkerProcs): a worker whose requests mostly run on
	// goroutines gives it back (protocol.ProcsOnGoroutines).
	EnvLoopP = "FORKD_LOOP_P"
	// EnvZoneFDs is "name=fd,name=fd" for each shared-memory zone (see
	// AppendZones).
	EnvZoneFDs = "FORKD_ZONE_FDS"
)

// RoleWorker is EnvRole's value in a worker.
const RoleWorker = "worker"

// ErrNotWorker is returned by WorkerEnv when this process is not a worker.
var ErrNotWorker = errors.New("not a forkd worker")

// Inherited is what a worker receives from its master.
type Inherited struct {
	IPC        *os.File
	Config     *os.File
	Listeners  []Listener
	Slot       int
	Generation int
	// Draining is set for a worker started while its master drains: its
	// health routes answer 503 from the first request.
	Draining bool
	// LoopP: GOMAXPROCS includes a P the master added (EnvLoopP).
	LoopP bool
	// Zones are the shared-memory zones (package zone), by name: the
	// rate_limit blocks' and the shared store (ZoneName, StoreZone).
	Zones []Listener
}

// StoreZone is the name of the shared block's zone; ZoneName gives a
// rate_limit block's.
const StoreZone = "shared"

// ZoneName is the name under which a rate_limit block's zone travels.
func ZoneName(rateLimit string) string { return "rate_limit." + rateLimit }

// AppendZones adds the shared-memory zones to what ExtraFiles laid out:
// their files after the others, and EnvZoneFDs naming them.
func AppendZones(files []*os.File, env []string, zones []Listener) ([]*os.File, []string) {
	fds := make([]NamedFD, 0, len(zones))
	for _, z := range zones {
		fds = append(fds, NamedFD{Name: z.Address, FD: 3 + len(files)})
		files = append(files, z.File)
	}
	return files, append(env, EnvZoneFDs+"="+EncodeFDs(fds))
}

// Listener is one inherited listening socket and the address it was bound for.
type Listener struct {
	Address string
	File    *os.File
}

// NamedFD is one entry of a descriptor list passed in the environment.
type NamedFD struct {
	Name string
	FD   int
}

// EncodeFDs writes a descriptor list as "name=fd,name=fd". Names are listen
// addresses: they never contain ',' in forms forkd accepts, and may contain
// '=' only in unix paths, which DecodeFDs allows by splitting on the last '='.
func EncodeFDs(fds []NamedFD) string {
	parts := make([]string, 0, len(fds))
	for _, f := range fds {
		parts = append(parts, f.Name+"="+strconv.Itoa(f.FD))
	}
	return strings.Join(parts, ",")
}

// DecodeFDs reads what EncodeFDs wrote; key names the variable in errors.
func DecodeFDs(key, v string) ([]NamedFD, error) {
	if v == "" {
		return nil, nil
	}
	var out []NamedFD
	for _, p := range strings.Split(v, ",") {
		i := strings.LastIndexByte(p, '=')
		if i < 0 {
			return nil, fmt.Errorf("%s: malformed entry %q", key, p)
		}
		n, err := strconv.Atoi(p[i+1:])
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%s: malformed entry %q", key, p)
		}
		out = append(out, NamedFD{Name: p[:i], FD: n})
	}
	return out, nil
}

// ConfigFile writes cfg, as JSON, into a sealed memory file for workers to
// inherit. A configuration of any size the loader accepts reaches a worker
// this way: nothing is sent over the ipc socket, whose packets are bounded
// by the socket buffer, and one file serves every worker of a generation.
// The seals make the content immutable, so a worker reads exactly what the
// master wrote. The file is close-on-exec; exec.Cmd passes a copy.
func ConfigFile(cfg *config.Config) (*os.File, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode configuration: %w", err)
	}
	fd, err := unix.MemfdCreate("forkd-config", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("configuration memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "forkd-config")
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, fmt.Errorf("write configuration memfd: %w", err)
	}
	seals := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE | unix.F_SEAL_SEAL
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, fmt.Errorf("seal configuration memfd: %w", err)
	}
	return f, nil
}

// ReadConfig reads the configuration a master wrote with ConfigFile. It
// reads from offset 0 with pread, since every worker shares the file offset.
func ReadConfig(f *os.File) (*config.Config, error) {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<40))
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	cfg := new(config.Config)
	if err := json.Unmarshal(b, cfg); err != nil {
		return nil, fmt.Errorf("decode configuration: %w", err)
	}
	return cfg, nil
}

// ExtraFiles lays out the ipc socket, the configuration file and the
// listeners for exec.Cmd.ExtraFiles and returns the matching environment
// entries. Child fd n is ExtraFiles[n-3].
func ExtraFiles(ipcFile, configFile *os.File, lns []Listener, slot, gen int) ([]*os.File, []string) {
	files := []*os.File{ipcFile, configFile}
	fds := make([]NamedFD, 0, len(lns))
	for _, l := range lns {
		fds = append(fds, NamedFD{Name: l.Address, FD: 3 + len(files)})
		files = append(files, l.File)
	}
	env := []string{
		EnvRole + "=" + RoleWorker,
		EnvIPCFD + "=3",
		EnvConfigFD + "=4",
		EnvListenFDs + "=" + EncodeFDs(fds),
		EnvSlot + "=" + strconv.Itoa(slot),
		EnvGeneration + "=" + strconv.Itoa(gen),
	}
	return files, env
}

// IsWorker tells whether the environment says this process is a worker.
func IsWorker() bool { return os.Getenv(EnvRole) == RoleWorker }

// WorkerEnv reads and clears the FORKD_* variables, returning the inherited
// files.
func WorkerEnv() (*Inherited, error) {
	if !IsWorker() {
		return nil, ErrNotWorker
	}
	defer func() {
		for _, k := range []string{EnvRole, EnvIPCFD, EnvConfigFD, EnvListenFDs, EnvSlot, EnvGeneration, EnvDraining, EnvLoopP, EnvZoneFDs} {
			os.Unsetenv(k)
		}
	}()
	in := &Inherited{Draining: os.Getenv(EnvDraining) == "1", LoopP: os.Getenv(EnvLoopP) == "1"}
	var err error
	if in.Slot, err = strconv.Atoi(os.Getenv(EnvSlot)); err != nil {
		return nil, fmt.Errorf("%s: %w", EnvSlot, err)
	}
	if in.Generation, err = strconv.Atoi(os.Getenv(EnvGeneration)); err != nil {
		return nil, fmt.Errorf("%s: %w", EnvGeneration, err)
	}
	fd, err := strconv.Atoi(os.Getenv(EnvIPCFD))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvIPCFD, err)
	}
	cfd, err := strconv.Atoi(os.Getenv(EnvConfigFD))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvConfigFD, err)
	}
	lns, err := DecodeFDs(EnvListenFDs, os.Getenv(EnvListenFDs))
	if err != nil {
		return nil, err
	}
	zones, err := DecodeFDs(EnvZoneFDs, os.Getenv(EnvZoneFDs))
	if err != nil {
		return nil, err
	}
	for _, z := range zones {
		syscall.CloseOnExec(z.FD)
		in.Zones = append(in.Zones, Listener{Address: z.Name, File: os.NewFile(uintptr(z.FD), z.Name)})
	}
	in.IPC = os.NewFile(uintptr(fd), "ipc")
	in.Config = os.NewFile(uintptr(cfd), "forkd-config")
	for _, l := range lns {
		in.Listeners = append(in.Listeners, Listener{Address: l.Name, File: os.NewFile(uintptr(l.FD), l.Name)})
	}
	return in, nil
}
