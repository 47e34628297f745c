// Package procname names the running process for ps, top and pgrep.
//
// Linux keeps two names: the command line (argv, which `ps -f` shows and
// which a master sets for each worker it executes) and the short command
// name, comm, at most 15 bytes, which `ps`, `top` and `pgrep` show by
// default. Set changes comm; it writes /proc/self/comm, which names the
// main thread (the one whose id is the process id) whatever thread the
// caller runs on, where prctl(PR_SET_NAME) would rename only the calling
// thread.
package procname

import (
	"fmt"
	"os"
)

// MaxLen is the longest comm the kernel keeps (TASK_COMM_LEN less its NUL).
const MaxLen = 15

// Set sets the process's short name, truncated to MaxLen bytes.
func Set(name string) error {
	if len(name) > MaxLen {
		name = name[:MaxLen]
	}
	if err := os.WriteFile("/proc/self/comm", []byte(name), 0); err != nil {
		return fmt.Errorf("set process name: %w", err)
	}
	return nil
}

// Get returns the process's short name.
func Get() (string, error) {
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		return "", fmt.Errorf("get process name: %w", err)
	}
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	return string(b), nil
}
