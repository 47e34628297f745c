// Package control implements the control socket through which the forkd
// command line talks to a running master: `forkd status` (and `forkd top`,
// which asks for the status once per interval), `forkd reload`, `forkd
// stop` and `forkd scale N`.
//
// The master listens on a unix stream socket with mode 0600. A client
// connects, writes one request as a single line of JSON, and reads one JSON
// response; the master then closes the connection. The protocol carries no
// version number: both ends are the same binary, and unknown JSON fields are
// ignored in both directions.
package control

import (
	"errors"
	"fmt"
	"time"

	"github.com/forkd/forkd/config"
)

// Master states in Status.State.
const (
	StateRunning  = "running"
	StateDraining = "draining"
	StateStopping = "stopping"
	// StateIdle: WINCH stopped every worker; the master keeps the
	// listeners and starts workers again on HUP (forkd reload).
	StateIdle = "idle"
)

// Commands understood by the master.
const (
	CmdStatus = "status" // report the worker table
	CmdReload = "reload" // same as SIGHUP
	CmdStop   = "stop"   // same as SIGTERM: graceful shutdown
	CmdScale  = "scale"  // set the number of workers to Request.N
)

// maxWorkers bounds Request.N for CmdScale, as it bounds the workers key: a
// sanity limit against typos such as "scale 10000".
const maxWorkers = config.MaxWorkers

// A Request is one command sent to the master.
type Request struct {
	Cmd string `json:"cmd"`
	N   int    `json:"n,omitempty"` // worker count, for CmdScale
}

// Validate reports whether r is a command the master understands, with its
// arguments in range. Server calls it before the handler, so a handler only
// ever sees valid requests.
func (r Request) Validate() error {
	switch r.Cmd {
	case CmdStatus, CmdReload, CmdStop:
		return nil
	case CmdScale:
		if r.N < 1 || r.N > maxWorkers {
			// No "scale:" prefix: the command line names the command.
			return fmt.Errorf("worker count %d out of range [1, %d]", r.N, maxWorkers)
		}
		return nil
	case "":
		return errors.New("missing command")
	default:
		return fmt.Errorf("unknown command %q", r.Cmd)
	}
}

// A Response is the master's answer to a Request. OK is false when the
// master refused or failed the command, with the reason in Error. Status is
// set for CmdStatus and, where the master chooses, after other commands.
type Response struct {
	OK     bool    `json:"ok"`
	Error  string  `json:"error,omitempty"`
	Status *Status `json:"status,omitempty"`
}

// Err returns nil when r.OK is set and otherwise an error carrying r.Error.
func (r Response) Err() error {
	if r.OK {
		return nil
	}
	if r.Error == "" {
		return errors.New("master refused the command")
	}
	return errors.New(r.Error)
}

// Status describes a running master and its workers.
type Status struct {
	MasterPID  int       `json:"master_pid"`
	Started    time.Time `json:"started"`
	Generation int       `json:"generation"`
	Config     string    `json:"config"` // path of config.hcl; "" for built-in defaults
	// State is the master's: StateRunning, StateDraining (drain_delay
	// after TERM: health routes answer 503, listeners still open),
	// StateIdle (no workers after WINCH) or StateStopping. Empty from a master that predates it.
	State string `json:"state,omitempty"`
	// DrainEnds is when the listeners close, while State is StateDraining.
	DrainEnds time.Time      `json:"drain_ends,omitzero"`
	Workers   []WorkerStatus `json:"workers"`
	// Reloading is set while a new generation boots; it becomes current
	// only once all its workers are ready.
	Reloading bool `json:"reloading,omitempty"`
	// LastReload is the outcome of the latest reload, if any.
	LastReload *ReloadOutcome `json:"last_reload,omitempty"`
	// Now is the master's clock when it answered: a client that samples
	// the status repeatedly (forkd top) measures ages and intervals on the
	// master's clock, not its own. Zero from a master that predates it.
	Now time.Time `json:"now,omitzero"`
	// Zones are the shared-memory zones: rate_limit blocks and the
	// shared store.
	Zones []ZoneStatus `json:"zones,omitempty"`
	// Upstreams are the proxy upstreams some worker holds down (passive
	// health: max_fails within fail_timeout; each worker judges alone).
	Upstreams []UpstreamStatus `json:"upstreams,omitempty"`
}

// ReloadOutcome is how a reload ended: applied whole, or refused with the
// cause (an invalid configuration, or a worker of the new generation that
// could not boot) while the old configuration kept serving.
type ReloadOutcome struct {
	At    time.Time `json:"at"`
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"`
}

// UpstreamStatus is one upstream that workers hold down, as their last
// heartbeats said.
type UpstreamStatus struct {
	Address string `json:"address"`
	// DownIn is how many of the Of workers that reported hold it down.
	DownIn int `json:"down_in"`
	Of     int `json:"of"`
}

// WorkerStatus is one row of the worker table, from the worker's latest
// heartbeat.
type WorkerStatus struct {
	Slot       int       `json:"slot"`
	PID        int       `json:"pid"`
	Generation int       `json:"generation"`
	Started    time.Time `json:"started"`
	Requests   uint64    `json:"requests"`
	OpenConns  int64     `json:"open_conns"`
	RSS        uint64    `json:"rss"` // resident set size in bytes
	State      string    `json:"state"`
	// Beat is when the master received the heartbeat that Requests,
	// OpenConns and RSS come from (the ready message, when the counters
	// were zero, until the first heartbeat; zero while booting). Two samples
	// of a worker give its request rate over its own heartbeat interval:
	// (Requests₂ − Requests₁) / (Beat₂ − Beat₁).
	Beat time.Time `json:"beat,omitzero"`
}
