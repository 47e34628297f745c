// Scaling the workers with TTIN and TTOU.

package test

import (
	"syscall"
	"testing"
	"time"
)

func TestTTINTTOU(t *testing.T) {
	s := start(t, opts{workers: 2})
	s.signal(syscall.SIGTTIN)
	s.waitLog(`scaling.*workers=3`, 5*time.Second)
	eventually(t, 5*time.Second, "3 workers", func() bool { return len(s.workers()) == 3 })
	// Standard signals are not queued: send one at a time.
	s.signal(syscall.SIGTTOU)
	s.waitLog(`scaling.*workers=2`, 5*time.Second)
	s.signal(syscall.SIGTTOU)
	s.waitLog(`scaling.*workers=1`, 5*time.Second)
	eventually(t, 5*time.Second, "1 worker", func() bool { return len(s.workers()) == 1 })
	s.signal(syscall.SIGTTOU) // never below one
	s.waitLog(`scaling.*workers=1`, 5*time.Second)
	if code, _, err := get(s.addr, "/"); err != nil || code != 200 {
		t.Fatalf("GET: %d %v", code, err)
	}
	if n := len(s.workers()); n != 1 {
		t.Fatalf("%d workers after TTOU below one, want 1", n)
	}
}
