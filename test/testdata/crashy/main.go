// Command crashy is an embedding program for the fault tests:
//
//   - its workers exit right after boot while the file named by
//     CRASHY_SWITCH exists (crash loops);
//   - its OnWorkerStart hook fails when the configuration has a site named
//     "hook-fails" (a reload whose workers cannot boot);
//   - its OnWorkerStart hook takes slowBoot when the configuration has a
//     site named "slow-boot" (a reload that outlasts a fixed 5 s wait);
//   - GET /grow?mb=N allocates N MiB and keeps it (memory recycling);
//   - GET /orphan starts a shell that leaves an orphan behind (PID 1 reaping);
//   - GET /pid answers the worker's pid, anything else "alive".
package main

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/forkd/forkd"
)

// slowBoot is how long a worker of a "slow-boot" configuration takes to
// start.
const slowBoot = 6 * time.Second

var (
	mu   sync.Mutex
	kept [][]byte
)

func main() {
	forkd.Main(forkd.HandlerFunc(func(w *forkd.ResponseWriter, r *forkd.Request) {
		switch string(r.Path) {
		case "/grow":
			mb, _ := strconv.Atoi(strings.TrimPrefix(string(r.Query), "mb="))
			b := make([]byte, mb<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1 // touch every page, so it counts in RSS
			}
			mu.Lock()
			kept = append(kept, b)
			mu.Unlock()
			w.WriteString("grown " + strconv.Itoa(mb) + " MiB in " + strconv.Itoa(os.Getpid()) + "\n")
		case "/orphan":
			// The shell exits at once; its child lives on, reparented to
			// the nearest reaper, and becomes a zombie when it ends.
			if err := exec.Command("sh", "-c", "sleep 0.2 &").Run(); err != nil {
				w.WriteString("error " + err.Error() + "\n")
				return
			}
			w.WriteString("orphaned\n")
		case "/pid":
			w.WriteString(strconv.Itoa(os.Getpid()) + "\n")
		default:
			w.WriteString("alive\n")
		}
	}), forkd.OnWorkerStart(func(w forkd.Worker) error {
		for _, s := range w.Config.Sites {
			switch s.Name {
			case "hook-fails":
				return errors.New("hook refuses site hook-fails")
			case "slow-boot":
				w.Logger.Info("slow boot", "takes", slowBoot.String())
				time.Sleep(slowBoot) // an application's slow start, such as warming a cache
			}
		}
		if _, err := os.Stat(os.Getenv("CRASHY_SWITCH")); err == nil {
			w.Logger.Error("crash switch is on; exiting")
			os.Exit(1)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}))
}
