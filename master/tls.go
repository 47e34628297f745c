package master

import (
	"crypto/rand"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/ipc"
)

// Session-ticket key rotation: a new key every ticketRotation; the older
// ones keep decrypting tickets for ticketLifetime, so a client resumes for
// a day whichever worker it reaches.
const (
	ticketRotation = time.Hour
	ticketLifetime = 24 * time.Hour
	maxTicketKeys  = int(ticketLifetime/ticketRotation) + 1
)

// ticketKeys are the session-ticket keys every worker shares. The master's
// loop owns them; they live in its memory only.
type ticketKeys struct {
	keys [][ipc.TicketKeySize]byte // newest first: it encrypts new tickets
	next time.Time                 // when the next key is due
}

func newTicketKey() [ipc.TicketKeySize]byte {
	var k [ipc.TicketKeySize]byte
	_, _ = rand.Read(k[:]) // crypto/rand.Read never fails on Linux
	return k
}

// ticketKeys returns the current keys, made on first use.
func (m *Master) ticketKeys(now time.Time) [][ipc.TicketKeySize]byte {
	if m.tickets == nil {
		m.tickets = &ticketKeys{keys: [][ipc.TicketKeySize]byte{newTicketKey()}, next: now.Add(ticketRotation)}
	}
	return m.tickets.keys
}

// sendTLS gives a worker just started the certificates of its
// configuration and the ticket keys. The message waits in the worker's
// socket until it reads it, before it serves.
func (m *Master) sendTLS(w *worker, cfg *config.Config) {
	if w.conn == nil || !cfg.HasTLS() {
		return
	}
	msg := &ipc.TLS{TicketKeys: m.ticketKeys(m.env.now()), Listeners: []ipc.TLSListener{}}
	for _, l := range cfg.Listen {
		if !l.IsTLS() {
			continue
		}
		tl := ipc.TLSListener{Address: l.Address}
		for _, c := range l.TLS {
			tl.Certs = append(tl.Certs, ipc.TLSCert{Cert: c.CertPEM, Key: c.KeyPEM})
		}
		msg.Listeners = append(msg.Listeners, tl)
	}
	if err := w.conn.Send(&ipc.Message{Type: ipc.TypeTLS, TLS: msg}); err != nil {
		// The worker cannot serve without it: replace it now rather than
		// let it wait for worker_timeout.
		m.log.Error("cannot send TLS certificates to worker; killing it", "worker_pid", w.pid, "error", err)
		m.kill(w, killIPC)
	}
}

// rotateTickets adds a new session-ticket key when one is due, drops those
// older than ticketLifetime, and sends the set to every worker.
func (m *Master) rotateTickets(now time.Time) {
	t := m.tickets
	if t == nil || now.Before(t.next) {
		return
	}
	t.keys = append([][ipc.TicketKeySize]byte{newTicketKey()}, t.keys...)
	if len(t.keys) > maxTicketKeys {
		t.keys = t.keys[:maxTicketKeys]
	}
	t.next = now.Add(ticketRotation)
	msg := &ipc.Message{Type: ipc.TypeTLS, TLS: &ipc.TLS{TicketKeys: t.keys}}
	for _, w := range m.workers {
		if w.conn != nil {
			_ = w.conn.Send(msg) // a worker that is gone is reaped as usual
		}
	}
	m.log.Info("session ticket key rotated", "keys", len(t.keys))
}

// ticketDeadline moves next earlier when the ticket rotation is due first.
func (m *Master) ticketDeadline(next time.Time) time.Time {
	if m.tickets != nil && m.tickets.next.Before(next) {
		return m.tickets.next
	}
	return next
}

// logWarnings logs what the configuration check found that does not stop
// it (an expired certificate).
func (m *Master) logWarnings(cfg *config.Config) {
	for _, w := range cfg.Warnings {
		m.log.Warn("configuration warning", "warning", w)
	}
}
