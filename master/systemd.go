// systemd: readiness and the watchdog (sd_notify), socket activation.

package master

import (
	"net"
	"slices"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/sdnotify"
)

// setupSystemd takes socket-activated listeners (when LISTEN_PID is ours)
// and the notification socket. Activated sockets are matched to listen
// blocks by address and kept for the master's life, across reloads.
func (m *Master) setupSystemd() error {
	m.sd = sdnotify.New()
	files, err := sdnotify.ListenFDs()
	if err != nil {
		return err
	}
	for _, f := range files {
		f, err := inheritable(f)
		if err != nil {
			return err
		}
		addr, err := sdnotify.SocketAddr(f)
		if err != nil {
			f.Close()
			return err
		}
		key := addr
		for _, l := range m.cfg.Listen {
			if sameAddress(l.Address, addr) {
				key = l.Address
				break
			}
		}
		if key == addr && !slices.ContainsFunc(m.cfg.Listen, func(l config.Listen) bool { return l.Address == addr }) {
			m.extra = append(m.extra, addr)
			m.log.Warn("socket from systemd matches no listen block; serving it anyway", "address", addr)
		}
		m.listeners[key] = &listener{address: key, file: f, activated: true}
		m.log.Info("using socket from systemd", "address", key)
	}
	return nil
}

// sameAddress tells whether a configured address names the socket systemd
// reports as actual (wildcards "", "0.0.0.0" and "::" match either form).
func sameAddress(configured, actual string) bool {
	if configured == actual {
		return true
	}
	ch, cp, err1 := net.SplitHostPort(configured)
	ah, ap, err2 := net.SplitHostPort(actual)
	if err1 != nil || err2 != nil || cp != ap {
		return false
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return wild(ch) && wild(ah)
}

// watchdog returns the channel that ticks when systemd's watchdog wants a
// ping (nil when it doesn't). The ping comes from the loop itself, so a
// wedged loop stops pinging and systemd restarts the service.
func (m *Master) watchdog() (<-chan time.Time, func()) {
	d, ok := m.sd.WatchdogInterval()
	if !ok {
		return nil, func() {}
	}
	t := time.NewTicker(d)
	return t.C, t.Stop
}
