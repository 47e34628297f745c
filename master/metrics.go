package master

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/forkd/forkd/internal/metrics"
)

// serveMetrics starts the optional Prometheus listener. The HTTP server runs
// on its own goroutines; every scrape asks the loop for a snapshot, so the
// loop stays the only owner of the worker table.
func (m *Master) serveMetrics() error {
	if m.cfg.Metrics == nil || m.cfg.Metrics.Address == "" {
		return nil
	}
	ln, err := m.metricsListener()
	if err != nil {
		return fmt.Errorf("metrics listener %s: %w", m.cfg.Metrics.Address, err)
	}
	path := m.cfg.Metrics.Path
	if path == "" {
		path = "/metrics"
	}
	mux := http.NewServeMux()
	mux.Handle(path, metrics.Handler(m.snapshot))
	m.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := m.metricsSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.bgErr <- fmt.Errorf("metrics: %w", err)
		}
	}()
	m.log.Info("serving metrics", "address", m.cfg.Metrics.Address, "path", path)
	return nil
}

// metricsListener returns the metrics socket: the one an old master handed
// over on USR2 when it is for the same address, else a new one. The master
// keeps an inheritable copy to hand to its own successor.
func (m *Master) metricsListener() (net.Listener, error) {
	var f *os.File
	if in := m.inheritedMetrics; in != nil {
		m.inheritedMetrics = nil
		if in.address == m.cfg.Metrics.Address {
			f = in.file
		} else {
			in.file.Close()
		}
	}
	if f == nil {
		network, addr := m.cfg.Metrics.Network()
		ln, err := net.Listen(network, addr)
		if err != nil {
			return nil, err
		}
		lf, err := ln.(interface{ File() (*os.File, error) }).File()
		ln.Close()
		if err != nil {
			return nil, err
		}
		f = lf
	}
	f, err := inheritable(f)
	if err != nil {
		return nil, err
	}
	ln, err := net.FileListener(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	m.metricsFile = f
	return ln, nil
}

func (m *Master) stopMetrics() {
	if m.inheritedMetrics != nil {
		m.inheritedMetrics.file.Close()
		m.inheritedMetrics = nil
	}
	if m.metricsFile != nil {
		m.metricsFile.Close()
		m.metricsFile = nil
	}
	if m.metricsSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = m.metricsSrv.Shutdown(ctx)
	}
}

// snapshot is called from scrape goroutines; the loop answers.
func (m *Master) snapshot() metrics.Snapshot {
	ch := make(chan metrics.Snapshot, 1)
	select {
	case m.snaps <- ch:
	case <-time.After(5 * time.Second):
		return metrics.Snapshot{}
	}
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Second):
		return metrics.Snapshot{}
	}
}

// buildSnapshot runs in the loop.
func (m *Master) buildSnapshot() metrics.Snapshot {
	s := metrics.Snapshot{
		Restarts:       make(map[string]uint64),
		Reloads:        m.stats.reloads + m.stats.reloadFailures,
		ReloadFailures: m.stats.reloadFailures,
		Generation:     m.gen,
		Started:        m.started,
	}
	s.Retired = m.stats.retired
	s.RetiredH2 = m.stats.retiredH2
	for c, v := range m.stats.restarts {
		if v > 0 {
			s.Restarts[restartCause(c).String()] = v
		}
	}
	for _, z := range m.zones.stats() {
		s.Zones = append(s.Zones, metrics.Zone(z))
	}
	for _, w := range m.workers {
		s.Workers = append(s.Workers, metrics.Worker{
			Slot: w.slot, PID: w.pid, RSS: w.beat.RSS, Requests: w.beat.Requests, OpenConns: w.beat.OpenConns,
			Status: w.beat.Status, H2Status: w.beat.H2Status, H2OpenConns: w.beat.H2OpenConns,
		})
	}
	return s
}
