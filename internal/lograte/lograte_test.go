package lograte

import (
	"sync"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := New(time.Second)
	t0 := time.Unix(1_000_000, 0)
	if ok, n := l.Allow(t0); !ok || n != 0 {
		t.Fatalf("first event: %v %d", ok, n)
	}
	for i := 1; i <= 5; i++ {
		if ok, _ := l.Allow(t0.Add(time.Duration(i) * 100 * time.Millisecond)); ok {
			t.Fatalf("event %d within the interval was let through", i)
		}
	}
	if ok, n := l.Allow(t0.Add(time.Second)); !ok || n != 5 {
		t.Fatalf("after the interval: %v, %d suppressed, want 5", ok, n)
	}
	if ok, n := l.Allow(t0.Add(3 * time.Second)); !ok || n != 0 {
		t.Fatalf("later: %v %d", ok, n)
	}
	if a := testing.AllocsPerRun(100, func() { l.Allow(t0) }); a != 0 {
		t.Fatalf("%v allocations", a)
	}
}

// TestLimiterConcurrent: of many simultaneous events exactly one is let
// through, and the next one logged counts all the others.
func TestLimiterConcurrent(t *testing.T) {
	l := New(time.Hour)
	now := time.Unix(1_000_000, 0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	passed := 0
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, _ := l.Allow(now); ok {
				mu.Lock()
				passed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if passed != 1 {
		t.Fatalf("%d events let through, want 1", passed)
	}
	if ok, n := l.Allow(now.Add(time.Hour)); !ok || n != 63 {
		t.Fatalf("next: %v, %d suppressed, want 63", ok, n)
	}
}
