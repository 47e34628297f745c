// Command crashy is an embedding program for the crash-loop test: its
// workers exit right after boot while the file named by CRASHY_SWITCH
// exists.
package main

import (
	"errors"
	"os"

	"github.com/forkd/forkd"
)

func main() {
	forkd.Main(forkd.HandlerFunc(func(w *forkd.ResponseWriter, r *forkd.Request) {
		w.WriteString("alive\n")
	}), forkd.OnWorkerStart(func(w forkd.Worker) error {
		if _, err := os.Stat(os.Getenv("CRASHY_SWITCH")); err == nil {
			w.Logger.Error("crash switch is on; exiting")
			os.Exit(1)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}))
}
