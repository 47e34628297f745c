package ipc

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Environment variables a master sets for the worker it executes.
const (
	EnvRole       = "FORKD_ROLE"       // "worker"
	EnvIPCFD      = "FORKD_IPC_FD"     // fd number of the ipc socket
	EnvListenFDs  = "FORKD_LISTEN_FDS" // "addr=fd,addr=fd" for each listener
	EnvSlot       = "FORKD_SLOT"
	EnvGeneration = "FORKD_GENERATION"
)

// RoleWorker is EnvRole's value in a worker.
const RoleWorker = "worker"

// ErrNotWorker is returned by WorkerEnv when this process is not a worker.
var ErrNotWorker = errors.New("not a forkd worker")

// Inherited is what a worker receives from its master.
type Inherited struct {
	IPC        *os.File
	Listeners  []Listener
	Slot       int
	Generation int
}

// Listener is one inherited listening socket and the address it was bound for.
type Listener struct {
	Address string
	File    *os.File
}

// ExtraFiles lays out the ipc socket and listeners for exec.Cmd.ExtraFiles and
// returns the matching environment entries. Child fd n is ExtraFiles[n-3].
func ExtraFiles(ipcFile *os.File, lns []Listener, slot, gen int) ([]*os.File, []string) {
	files := []*os.File{ipcFile}
	parts := make([]string, 0, len(lns))
	for _, l := range lns {
		parts = append(parts, l.Address+"="+strconv.Itoa(3+len(files)))
		files = append(files, l.File)
	}
	env := []string{
		EnvRole + "=" + RoleWorker,
		EnvIPCFD + "=3",
		EnvListenFDs + "=" + strings.Join(parts, ","),
		EnvSlot + "=" + strconv.Itoa(slot),
		EnvGeneration + "=" + strconv.Itoa(gen),
	}
	return files, env
}

// IsWorker tells whether the environment says this process is a worker.
func IsWorker() bool { return os.Getenv(EnvRole) == RoleWorker }

// WorkerEnv reads and clears the FORKD_* variables, returning the inherited
// files. Addresses never contain '=' or ',' in forms forkd accepts except unix
// paths; the split is on the last '=' so unix paths with '=' survive.
func WorkerEnv() (*Inherited, error) {
	if !IsWorker() {
		return nil, ErrNotWorker
	}
	defer func() {
		for _, k := range []string{EnvRole, EnvIPCFD, EnvListenFDs, EnvSlot, EnvGeneration} {
			os.Unsetenv(k)
		}
	}()
	in := &Inherited{}
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
	in.IPC = os.NewFile(uintptr(fd), "ipc")
	if v := os.Getenv(EnvListenFDs); v != "" {
		for _, p := range strings.Split(v, ",") {
			i := strings.LastIndexByte(p, '=')
			if i < 0 {
				return nil, fmt.Errorf("%s: malformed entry %q", EnvListenFDs, p)
			}
			n, err := strconv.Atoi(p[i+1:])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", EnvListenFDs, err)
			}
			in.Listeners = append(in.Listeners, Listener{Address: p[:i], File: os.NewFile(uintptr(n), p[:i])})
		}
	}
	return in, nil
}
