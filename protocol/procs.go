package protocol

// The scheduling policy of a process that serves with event loops: how many
// Ps (GOMAXPROCS) it runs with, and how its loops wait. It is decided here,
// once; forkd's master (WorkerProcs, for each worker's GOMAXPROCS) and its
// workers (ProcsOnGoroutines, when their requests run on goroutines) read
// it, and startLoops lays the loops out by it (loopLayout).
//
// With GOMAXPROCS of 2 or more there is one loop per P but one, and each
// waits in epoll_wait itself, in the kernel (direct), like an nginx worker:
// a connection is accepted, read and answered on one thread with no
// hand-off, and only such a waiter can take a listener's wake-ups one at a
// time (EPOLLEXCLUSIVE; see accept.go). A goroutine asleep in a system call
// keeps its P, though, and the runtime hands that P to other goroutines only
// after a delay (sysmon's, 20 µs to 10 ms): the P left over (the loop P)
// runs everything that is not on a loop (handlers that left, timers, the
// runtime's poller) at once. So a worker gets one P more than its share of
// the CPUs.
//
// With GOMAXPROCS=1 there is one loop, and it waits in the runtime's poller
// (polled), its epoll nested in the poller's, so that the one P is free
// whenever the loop waits; Serve then accepts for it (serveAcceptor).
//
// A process whose requests mostly run on goroutines (an application that is
// not LoopSafe, a proxy route behind error_pages or compress) gives the loop
// P back: goroutines sharing the CPUs with one thread more than there are
// CPUs have a longer latency tail (on one CPU, p99 about 2.6x for a net/http
// application, 1.3x for a proxy whose exchanges ran on goroutines). A proxy
// whose exchanges run on the loops (serve.ProxyOnLoop) keeps it: on a CPU
// share of one, giving it back left a polled loop and Serve's acceptor,
// whose wait in epoll_wait holds the only P until sysmon takes it (three
// sysmon wake-ups a connection), and churned connections served 14% fewer
// requests a second; the keep-alive exchange measured the same either way
// (bench/README.md, the third wave's fifth session).

// WorkerProcs returns the GOMAXPROCS of each of workers processes that share
// cpus CPUs and serve with event loops: one P per CPU of its share, rounded
// up, plus the loop P.
func WorkerProcs(cpus, workers int) int {
	share := (cpus + workers - 1) / max(workers, 1)
	return max(share, 1) + 1
}

// ProcsOnGoroutines returns the GOMAXPROCS of a process given WorkerProcs's
// procs whose requests mostly run on goroutines: the loop P given back.
func ProcsOnGoroutines(procs int) int { return max(procs-1, 1) }

// loopLayout returns how many event loops a process with procs Ps runs, and
// whether they wait in epoll_wait themselves (direct) or in the runtime's
// poller.
func loopLayout(procs int) (loops int, direct bool) {
	if procs >= 2 {
		return procs - 1, true
	}
	return 1, false
}
