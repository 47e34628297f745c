package logging

import (
	"sync"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := Limiter{Every: 10 * time.Second}
	t0 := time.Unix(1000, 0)
	if ok, n := l.Allow(t0); !ok || n != 0 {
		t.Fatalf("first line: %v %d", ok, n)
	}
	for i := 0; i < 5; i++ {
		if ok, _ := l.Allow(t0.Add(time.Duration(i) * time.Second)); ok {
			t.Fatalf("line %d inside the interval passed", i)
		}
	}
	if ok, n := l.Allow(t0.Add(10 * time.Second)); !ok || n != 5 {
		t.Fatalf("after the interval: %v, %d held back; want true, 5", ok, n)
	}
	// Concurrent callers: exactly one passes per interval.
	var wg sync.WaitGroup
	var mu sync.Mutex
	passed := 0
	t1 := t0.Add(time.Minute)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, _ := l.Allow(t1); ok {
				mu.Lock()
				passed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if passed != 1 {
		t.Fatalf("%d concurrent lines passed, want 1", passed)
	}
}
