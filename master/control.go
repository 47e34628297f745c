// The control socket: the master answers status, reload, stop and scale.

package master

import (
	"errors"
	"net"
	"sort"
	"time"

	"github.com/forkd/forkd/internal/control"
)

// ctlReq is one control-socket command waiting for the loop's answer.
type ctlReq struct {
	req   control.Request
	reply chan control.Response
}

// listenControl opens the control socket when the configuration names one.
func (m *Master) listenControl() error {
	path := m.cfg.ControlSocketPath()
	if path == "" {
		return nil
	}
	if m.ctlSrv == nil { // not inherited from an old master
		srv, err := control.Listen(path)
		if err != nil {
			return err
		}
		m.ctlSrv = srv
	}
	m.serveControl(m.ctlSrv)
	return nil
}

// serveControl answers srv's requests from the loop until srv closes.
func (m *Master) serveControl(srv *control.Server) {
	go func() {
		err := srv.Serve(func(req control.Request) control.Response {
			r := ctlReq{req: req, reply: make(chan control.Response, 1)}
			select {
			case m.ctl <- r:
			case <-time.After(5 * time.Second):
				return control.Response{Error: "master busy"}
			}
			// A reload is answered when the new generation is ready or
			// refused, which its worker_timeout bounds: wait for it as
			// long as the loop runs. Anything else is answered at once.
			var late <-chan time.Time
			if req.Cmd != control.CmdReload {
				t := time.NewTimer(5 * time.Second)
				defer t.Stop()
				late = t.C
			}
			select {
			case resp := <-r.reply:
				return resp
			case <-late:
				return control.Response{Error: "master did not answer"}
			case <-m.stopped:
				return control.Response{Error: "the master stopped"}
			}
		})
		if err != nil && !errors.Is(err, net.ErrClosed) {
			m.bgErr <- err
		}
	}()
}

// handleControl runs one control command in the loop.
func (m *Master) handleControl(r ctlReq) {
	var resp control.Response
	switch r.req.Cmd {
	case control.CmdStatus:
		resp = control.Response{OK: true, Status: m.status()}
	case control.CmdReload:
		m.log.Info("reload requested over the control socket")
		// The answer comes when the new generation serves or is refused.
		m.reload(r.reply)
		return
	case control.CmdStop:
		m.log.Info("stop requested over the control socket")
		m.shutdown(stopping)
		// With the master's pid: `forkd stop` waits for that process to
		// go, not for the control socket, which a USR2 successor shares.
		resp = control.Response{OK: true, Status: m.status()}
	case control.CmdScale:
		if m.phase != running {
			resp = control.Response{Error: "the master is stopping"}
			break
		}
		if r.req.N > m.want {
			if ok, why := m.canGrow(r.req.N - m.want); !ok {
				m.log.Warn("not scaling up: a task limit would be reached", "workers", m.want, "wanted", r.req.N, "reason", why)
				resp = control.Response{Error: "not scaling up: " + why}
				break
			}
		}
		m.want = r.req.N
		m.log.Info("scaling", "workers", m.want)
		resp = control.Response{OK: true}
	default:
		resp = control.Response{Error: "unknown command"}
	}
	r.reply <- resp
}

func (m *Master) status() *control.Status {
	st := &control.Status{MasterPID: m.pid, Started: m.started, Generation: m.gen, Config: m.cfg.Path,
		Reloading: m.pending != nil, LastReload: m.lastReload, Now: m.env.now()}
	switch m.phase {
	case running:
		st.State = control.StateRunning
		if m.winched {
			// Not "running" with no workers and requests hanging.
			st.State = control.StateIdle
		}
	case draining:
		st.State, st.DrainEnds = control.StateDraining, m.drainEnd
	default:
		st.State = control.StateStopping
	}
	for _, w := range m.workers {
		st.Workers = append(st.Workers, control.WorkerStatus{
			Slot: w.slot, PID: w.pid, Generation: w.gen, Started: w.started,
			Requests: w.beat.Requests, OpenConns: w.beat.OpenConns, RSS: w.beat.RSS,
			State: w.state(), Beat: w.lastBeat,
		})
	}
	sort.Slice(st.Workers, func(i, j int) bool {
		a, b := st.Workers[i], st.Workers[j]
		if a.Slot != b.Slot {
			return a.Slot < b.Slot
		}
		return a.Generation > b.Generation
	})
	st.Zones = m.zones.stats()
	st.Upstreams = upstreamsDown(m.workers)
	return st
}

func (w *worker) state() string {
	switch {
	case w.stopping:
		return "stopping"
	case w.retiring != stopNone:
		return "retiring"
	case w.txn != nil && w.ready:
		return "ready (new generation)"
	case w.ready:
		return "ready"
	default:
		return "booting"
	}
}

// upstreamsDown sums the upstreams the workers' last heartbeats hold down:
// each worker judges an upstream's health alone (max_fails).
func upstreamsDown(workers map[int]*worker) []control.UpstreamStatus {
	down := map[string]int{}
	for _, w := range workers {
		for _, a := range w.beat.UpstreamsDown {
			down[a]++
		}
	}
	out := make([]control.UpstreamStatus, 0, len(down))
	for a, n := range down {
		out = append(out, control.UpstreamStatus{Address: a, DownIn: n, Of: len(workers)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out
}
