package master

import (
	"testing"
	"time"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/ipc"
)

// TestTicketKeys: a worker gets its generation's certificates and the
// ticket keys right after it starts; every hour a new key is sent to every
// worker, and keys older than a day are dropped.
func TestTicketKeys(t *testing.T) {
	cfg := testConfig(1)
	cfg.Listen = append(cfg.Listen, config.Listen{Address: "127.0.0.1:8443",
		TLS: []config.TLSCert{{Certificate: "/c.pem", Key: "/c.key", CertPEM: []byte("CERT"), KeyPEM: config.Secret("KEY")}}})
	m, f := newTestMaster(t, cfg)
	mine, theirs, err := ipc.Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	peer, err := ipc.FromFile(theirs)
	theirs.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	w := &worker{pid: 7, conn: mine}
	m.workers[7] = w

	m.sendTLS(w, cfg)
	msg, err := peer.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if msg.Type != ipc.TypeTLS || msg.TLS == nil || len(msg.TLS.Listeners) != 1 || len(msg.TLS.TicketKeys) != 1 {
		t.Fatalf("boot message: %+v", msg)
	}
	l := msg.TLS.Listeners[0]
	if l.Address != "127.0.0.1:8443" || len(l.Certs) != 1 || string(l.Certs[0].Cert) != "CERT" || string(l.Certs[0].Key) != "KEY" {
		t.Fatalf("certificates: %+v", l)
	}
	first := msg.TLS.TicketKeys[0]
	if d := m.nextDeadline(f.now); d > time.Second {
		t.Errorf("next deadline in %v", d)
	}
	m.rotateTickets(f.now) // not due
	f.advance(ticketRotation - time.Second)
	if d := m.ticketDeadline(f.now.Add(time.Hour)); d.Sub(f.now) != time.Second {
		t.Errorf("rotation due in %v, want 1s", d.Sub(f.now))
	}
	f.advance(time.Second)
	m.rotateTickets(f.now)
	msg, err = peer.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if msg.Type != ipc.TypeTLS || msg.TLS.Listeners != nil || len(msg.TLS.TicketKeys) != 2 ||
		msg.TLS.TicketKeys[1] != first || msg.TLS.TicketKeys[0] == first {
		t.Fatalf("rotation: %d keys, listeners %v", len(msg.TLS.TicketKeys), msg.TLS.Listeners)
	}
	for i := 0; i < 30; i++ {
		f.advance(ticketRotation)
		m.rotateTickets(f.now)
		if msg, err = peer.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	keys := msg.TLS.TicketKeys
	if len(keys) != maxTicketKeys || maxTicketKeys != 25 {
		t.Errorf("%d keys after 31 rotations, want %d", len(keys), maxTicketKeys)
	}
	for _, k := range keys {
		if k == first {
			t.Error("a key older than a day is still accepted")
		}
	}
	// A plain configuration sends nothing.
	m.sendTLS(w, testConfig(1))
	if mine.Pending() || peer.Pending() {
		t.Error("a message was sent for a configuration without TLS")
	}
}
