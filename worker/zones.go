package worker

import (
	"fmt"
	"strings"

	"github.com/forkd/forkd/internal/zone"
	"github.com/forkd/forkd/ipc"
)

// zones are the shared-memory zones the master handed over, mapped.
type zones struct {
	limiters map[string]*zone.Limiter // by rate_limit block name
	store    *zone.Store              // the shared block's; nil without one
}

// openZones maps the zones in files (ipc.Inherited.Zones); it takes
// ownership of the files. A zone that cannot be mapped fails the boot: a
// limit that held per worker only would be a silent factor of N.
func openZones(files []ipc.Listener) (*zones, error) {
	z := &zones{limiters: make(map[string]*zone.Limiter, len(files))}
	for i, f := range files {
		var err error
		if name, ok := strings.CutPrefix(f.Address, ipc.ZoneName("")); ok {
			var l *zone.Limiter
			if l, err = zone.OpenLimiter(f.File); err == nil {
				z.limiters[name] = l
			}
		} else if f.Address == ipc.StoreZone {
			z.store, err = zone.OpenStore(f.File)
		} else {
			f.File.Close()
		}
		if err != nil {
			for _, g := range files[i+1:] {
				g.File.Close()
			}
			z.close()
			return nil, fmt.Errorf("zone %s: %w", f.Address, err)
		}
	}
	return z, nil
}

// close unmaps every zone of this worker.
func (z *zones) close() {
	for _, l := range z.limiters {
		l.Close()
	}
	if z.store != nil {
		z.store.Close()
	}
}
