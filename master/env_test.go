package master

import (
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/ipc"
)

// TestWorkerEnvGOMAXPROCS: a worker gets one P more than its share of the
// CPUs, for its event loops, and is told so (a worker whose requests run on
// goroutines gives it back); a GOMAXPROCS the operator chose is left alone.
func TestWorkerEnvGOMAXPROCS(t *testing.T) {
	cfg := &config.Config{Workers: 1}
	t.Setenv("GOMAXPROCS", "") // restored after the test
	os.Unsetenv("GOMAXPROCS")
	env := workerEnv(cfg)
	want := "GOMAXPROCS=" + strconv.Itoa(runtime.NumCPU()+1)
	if !slices.Contains(env, want) || !slices.Contains(env, ipc.EnvLoopP+"=1") {
		t.Fatalf("want %s and %s=1 in %q", want, ipc.EnvLoopP, env)
	}
	t.Setenv("GOMAXPROCS", "3")
	env = workerEnv(cfg)
	if !slices.Contains(env, "GOMAXPROCS=3") || slices.Contains(env, ipc.EnvLoopP+"=1") {
		t.Fatalf("the operator's GOMAXPROCS=3 changed: %q", env)
	}
}
