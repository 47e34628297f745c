package master

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/control"
	"github.com/forkd/forkd/internal/zone"
	"github.com/forkd/forkd/ipc"
)

// envUpgradeZones is "name=fd,..." of the zones an old master hands to the
// new one on USR2 (ipc.EncodeFDs; names as ipc.ZoneName and
// ipc.StoreZone).
const envUpgradeZones = "FORKD_UPGRADE_ZONES"

// zoneSet is the shared-memory zones of one generation's configuration:
// a limiter per rate_limit block and the shared store. The master creates
// them before the generation's workers start and hands each worker its
// own copy of every file; a zone outlives the master's copy while any
// worker maps it. A zone a reload keeps is in the old and the new set.
type zoneSet struct {
	limiters map[string]*zone.Limiter // by rate_limit name
	store    *zone.Store
}

// makeZones returns the zones cfg needs: those of have (the current set)
// and of adopted (handed over by an old master) whose Spec is unchanged,
// and new ones for the rest. On error it closes what it made.
func makeZones(cfg *config.Config, have *zoneSet, adopted map[string]*os.File) (*zoneSet, error) {
	zs := &zoneSet{limiters: make(map[string]*zone.Limiter, len(cfg.RateLimits))}
	fail := func(err error) (*zoneSet, error) {
		zs.closeExcept(have)
		return nil, err
	}
	for _, b := range cfg.RateLimits {
		spec := b.ZoneSpec()
		if l := have.limiter(b.Name); l != nil && l.Fingerprint() == spec.Fingerprint() {
			zs.limiters[b.Name] = l
			continue
		}
		if f := adopted[ipc.ZoneName(b.Name)]; f != nil {
			delete(adopted, ipc.ZoneName(b.Name))
			if l, err := zone.OpenLimiter(f); err == nil && l.Fingerprint() == spec.Fingerprint() {
				zs.limiters[b.Name] = l
				continue
			} else if err == nil {
				l.Close()
			}
		}
		l, err := zone.NewLimiter(spec)
		if err != nil {
			return fail(fmt.Errorf("rate_limit %q: %w", b.Name, err))
		}
		zs.limiters[b.Name] = l
	}
	if cfg.Shared != nil {
		spec := cfg.Shared.ZoneSpec()
		if have != nil && have.store != nil && have.store.Fingerprint() == spec.Fingerprint() {
			zs.store = have.store
		} else if f := adopted[ipc.StoreZone]; f != nil {
			delete(adopted, ipc.StoreZone)
			if s, err := zone.OpenStore(f); err == nil && s.Fingerprint() == spec.Fingerprint() {
				zs.store = s
			} else if err == nil {
				s.Close()
			}
		}
		if zs.store == nil {
			s, err := zone.NewStore(spec)
			if err != nil {
				return fail(fmt.Errorf("shared: %w", err))
			}
			zs.store = s
		}
	}
	return zs, nil
}

// limiter returns the limiter of the rate_limit block name, or nil.
func (zs *zoneSet) limiter(name string) *zone.Limiter {
	if zs == nil {
		return nil
	}
	return zs.limiters[name]
}

// files lists the zones' files for a worker or a new master, by the names
// ipc.ZoneName and ipc.StoreZone give them.
func (zs *zoneSet) files() []ipc.Listener {
	if zs == nil {
		return nil
	}
	out := make([]ipc.Listener, 0, len(zs.limiters)+1)
	for name, l := range zs.limiters {
		out = append(out, ipc.Listener{Address: ipc.ZoneName(name), File: l.File()})
	}
	if zs.store != nil {
		out = append(out, ipc.Listener{Address: ipc.StoreZone, File: zs.store.File()})
	}
	slices.SortFunc(out, func(a, b ipc.Listener) int { return strings.Compare(a.Address, b.Address) })
	return out
}

// closeExcept closes the master's mapping of every zone of zs that keep
// does not hold too. Workers that map a zone keep it alive until they
// exit.
func (zs *zoneSet) closeExcept(keep *zoneSet) {
	if zs == nil {
		return
	}
	for name, l := range zs.limiters {
		if keep.limiter(name) != l {
			l.Close()
		}
	}
	if zs.store != nil && (keep == nil || keep.store != zs.store) {
		zs.store.Close()
	}
}

// release frees the store locks a reaped worker held (zone.Store.Release)
// and returns how many there were.
func (zs *zoneSet) release(pid int) int {
	if zs == nil || zs.store == nil {
		return 0
	}
	return zs.store.Release(pid)
}

// storeOrNil is zs's store; nil for none.
func (zs *zoneSet) storeOrNil() *zone.Store {
	if zs == nil {
		return nil
	}
	return zs.store
}

// zoneStats reports every zone's counters for status and metrics.
func (zs *zoneSet) stats() []control.ZoneStatus {
	if zs == nil {
		return nil
	}
	out := make([]control.ZoneStatus, 0, len(zs.limiters)+1)
	for name, l := range zs.limiters {
		st := l.Stats()
		out = append(out, control.ZoneStatus{Name: name, Kind: "rate_limit", Entries: st.Entries, Capacity: st.Capacity,
			Evictions: st.Evictions, Allowed: st.Allowed, Limited: st.Limited})
	}
	if zs.store != nil {
		st := zs.store.Stats()
		out = append(out, control.ZoneStatus{Name: ipc.StoreZone, Kind: "shared", Entries: st.Entries, Capacity: st.Capacity,
			Evictions: st.Evictions, Allowed: st.Allowed, Limited: st.Limited})
	}
	slices.SortFunc(out, func(a, b control.ZoneStatus) int { return strings.Compare(a.Kind+a.Name, b.Kind+b.Name) })
	return out
}

// adoptZones takes the zones an old master handed over on USR2; New
// keeps those whose block is unchanged (makeZones) and closes the rest.
func adoptZones() (map[string]*os.File, error) {
	v, ok := os.LookupEnv(envUpgradeZones)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(envUpgradeZones)
	fds, err := ipc.DecodeFDs(envUpgradeZones, v)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*os.File, len(fds))
	for _, e := range fds {
		syscall.CloseOnExec(e.FD)
		out[e.Name] = os.NewFile(uintptr(e.FD), e.Name)
	}
	return out, nil
}

// openZones makes the zones of the starting configuration, keeping those
// an old master handed over (USR2) whose block is unchanged.
func (m *Master) openZones() error {
	adopted, err := adoptZones()
	if err != nil {
		return err
	}
	m.zones, err = makeZones(m.cfg, nil, adopted)
	dropped := len(adopted)
	for _, f := range adopted {
		f.Close() // blocks the new configuration changed or dropped
	}
	if err != nil {
		return err
	}
	if adopted != nil {
		m.log.Info("binary upgrade: took over shared-memory zones", "dropped", dropped)
	}
	return nil
}
