package master

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Task limits. Every process and thread counts against the service's
// cgroup pids.max (systemd's TasksMax) and, for a user other than root,
// against RLIMIT_NPROC. A fork that hits a limit fails and is retried with
// back-off; but a Go runtime that cannot create a thread aborts the whole
// process, so the master keeps its own threads few and made in advance,
// and refuses to scale up into a limit.
const (
	masterProcs     = 2  // GOMAXPROCS of the master: it mostly waits
	masterThreads   = 8  // threads the master makes at start and keeps
	defaultPerTask  = 16 // tasks a worker is assumed to need when none runs yet
	perWorkerMargin = 2
)

// fixThreads makes the master's threads up front: Go keeps an idle thread
// for reuse, so a master that later finds the task limit reached by its
// workers does not need to create one.
func fixThreads() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(min(runtime.NumCPU(), masterProcs))
	}
	var ready, release sync.WaitGroup
	ready.Add(masterThreads)
	release.Add(1)
	for range masterThreads {
		go func() {
			runtime.LockOSThread() // each holds a thread of its own until released
			ready.Done()
			release.Wait()
			runtime.UnlockOSThread()
		}()
	}
	ready.Wait()
	release.Done()
}

// canGrow tells whether n more workers fit under the task limits; when they
// do not, it says why.
func (m *Master) canGrow(n int) (bool, string) {
	room, limit, ok := taskRoom()
	if !ok {
		return true, ""
	}
	need := n * m.tasksPerWorker()
	if need <= room {
		return true, ""
	}
	return false, limit + " leaves room for " + strconv.Itoa(room) + " more tasks; " +
		strconv.Itoa(n) + " more worker(s) need about " + strconv.Itoa(need)
}

// tasksPerWorker is how many tasks (threads) a worker uses: the most any
// running worker has, plus a margin.
func (m *Master) tasksPerWorker() int {
	most := 0
	for pid := range m.workers {
		if n := procThreads(pid); n > most {
			most = n
		}
	}
	if most == 0 {
		return defaultPerTask
	}
	return most + perWorkerMargin
}

// taskRoom returns how many more tasks may be created before a limit
// applies, and which limit that is; ok is false when none applies.
func taskRoom() (room int, limit string, ok bool) {
	room = -1
	if r, ok := cgroupPidsRoom(); ok {
		room, limit = r, "the cgroup's pids.max (TasksMax)"
	}
	var rl unix.Rlimit
	if os.Geteuid() != 0 && unix.Getrlimit(unix.RLIMIT_NPROC, &rl) == nil && rl.Cur != unix.RLIM_INFINITY {
		r := int(rl.Cur) - userTasks(os.Getuid())
		if room < 0 || r < room {
			room, limit = r, "RLIMIT_NPROC ("+strconv.FormatUint(rl.Cur, 10)+")"
		}
	}
	if room < 0 && limit == "" {
		return 0, "", false
	}
	return max(room, 0), limit, true
}

// cgroupPidsRoom reads pids.max and pids.current of this process's cgroup
// (v2) and of its ancestors, and returns the smallest room.
func cgroupPidsRoom() (int, bool) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	var rel string
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			rel = p
		}
	}
	if rel == "" {
		return 0, false
	}
	room, found := 0, false
	for dir := filepath.Join("/sys/fs/cgroup", rel); strings.HasPrefix(dir, "/sys/fs/cgroup"); dir = filepath.Dir(dir) {
		maxb, err1 := os.ReadFile(filepath.Join(dir, "pids.max"))
		curb, err2 := os.ReadFile(filepath.Join(dir, "pids.current"))
		if err1 == nil && err2 == nil {
			mx, err1 := strconv.Atoi(strings.TrimSpace(string(maxb)))
			cur, err2 := strconv.Atoi(strings.TrimSpace(string(curb)))
			if err1 == nil && err2 == nil && (!found || mx-cur < room) { // "max" fails Atoi: no limit here
				room, found = mx-cur, true
			}
		}
		if dir == "/sys/fs/cgroup" {
			break
		}
	}
	return room, found
}

// userTasks counts the tasks (threads of every process) whose real user is
// uid, as RLIMIT_NPROC does.
func userTasks(uid int) int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	want := []byte(strconv.Itoa(uid))
	total := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		real, threads := statusFields(filepath.Join("/proc", e.Name(), "status"))
		if bytes.Equal(real, want) {
			total += threads
		}
	}
	return total
}

func procThreads(pid int) int {
	_, n := statusFields("/proc/" + strconv.Itoa(pid) + "/status")
	return n
}

// statusFields reads the real uid and the thread count from a
// /proc/pid/status file.
func statusFields(path string) (realUID []byte, threads int) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		if v, ok := bytes.CutPrefix(line, []byte("Uid:")); ok {
			if fs := bytes.Fields(v); len(fs) > 0 {
				realUID = append([]byte(nil), fs[0]...)
			}
		} else if v, ok := bytes.CutPrefix(line, []byte("Threads:")); ok {
			threads, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
			break
		}
	}
	return realUID, threads
}
