package worker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/tlsconn"
	"github.com/forkd/forkd/ipc"
)

// tlsState is the worker's TLS: one tls.Config per TLS listener, built
// from the certificates the master sent, and the ticket keys they share.
// The master's messages are read by one goroutine; the configs are safe for
// concurrent use (SetSessionTicketKeys locks).
type tlsState struct {
	mu      sync.Mutex
	configs map[string]*tls.Config // by listen address
}

// errNoTLS is a worker whose master sent no TLS material before the end.
var errNoTLS = errors.New("no TLS certificates from the master")

// awaitTLS reads the master's messages until its first TypeTLS one, which
// the master sends right after starting a worker of a configuration with
// TLS listeners, and builds the listeners' tls.Configs from it.
func (w *runtime) awaitTLS() (*tlsState, error) {
	for {
		m, err := w.conn.Recv()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errNoTLS, err)
		}
		if m.Type != ipc.TypeTLS || m.TLS == nil || m.TLS.Listeners == nil {
			w.handleMaster(m) // a drain sent while we boot
			continue
		}
		return newTLSState(w.cfg, m.TLS)
	}
}

func newTLSState(cfg *config.Config, msg *ipc.TLS) (*tlsState, error) {
	st := &tlsState{configs: make(map[string]*tls.Config)}
	certs := make(map[string][]ipc.TLSCert, len(msg.Listeners))
	for _, l := range msg.Listeners {
		certs[l.Address] = l.Certs
	}
	for _, l := range cfg.Listen {
		if !l.IsTLS() {
			continue
		}
		got := certs[l.Address]
		if len(got) == 0 {
			return nil, fmt.Errorf("listener %s: %w", l.Address, errNoTLS)
		}
		tc := &tls.Config{
			MinVersion: l.TLSMinVersion(),
			NextProtos: l.ProtocolList(), // ALPN, in order
		}
		for i, c := range got {
			pair, err := tls.X509KeyPair(c.Cert, c.Key)
			if err != nil {
				// crypto/tls's message does not include the key.
				return nil, fmt.Errorf("listener %s: certificate %s: %w", l.Address, l.TLS[min(i, len(l.TLS)-1)].Certificate, err)
			}
			tc.Certificates = append(tc.Certificates, pair)
		}
		st.configs[l.Address] = tc
	}
	st.setTicketKeys(msg.TicketKeys)
	return st, nil
}

// setTicketKeys installs the master's session-ticket keys in every config.
func (st *tlsState) setTicketKeys(keys [][ipc.TicketKeySize]byte) {
	if st == nil || len(keys) == 0 {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, tc := range st.configs {
		tc.SetSessionTicketKeys(keys)
	}
}

// serves reports whether address is a TLS listener.
func (st *tlsState) serves(address string) bool {
	if st == nil {
		return false
	}
	_, ok := st.configs[address]
	return ok
}

// wrap returns ln serving TLS when address is a TLS listener.
func (st *tlsState) wrap(address string, ln net.Listener) net.Listener {
	if st == nil {
		return ln
	}
	if tc, ok := st.configs[address]; ok {
		return tlsconn.NewListener(ln, tc)
	}
	return ln
}

// handleMaster handles one message from the master after boot.
func (w *runtime) handleMaster(m *ipc.Message) {
	switch {
	case m.Type == ipc.TypeDrain:
		if !w.draining.Swap(true) {
			w.log.Info("draining: health routes answer 503")
		}
	case m.Type == ipc.TypeTLS && m.TLS != nil && w.tls != nil:
		w.tls.setTicketKeys(m.TLS.TicketKeys)
		w.log.Debug("session ticket keys updated", "keys", len(m.TLS.TicketKeys))
	}
}
