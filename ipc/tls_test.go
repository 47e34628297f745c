package ipc

import (
	"fmt"
	"strings"
	"testing"
)

// TestTLSMessage: certificates, keys and ticket keys cross the socket
// intact, and a printed message shows none of them.
func TestTLSMessage(t *testing.T) {
	mine, peer := pair(t)
	// Bigger than the default socket send buffer once in JSON (base64).
	key := strings.Repeat("SECRET-KEY-", 25000)
	var tk [TicketKeySize]byte
	copy(tk[:], "ticket-key-0123456789abcdefghijk")
	msg := &Message{Type: TypeTLS, TLS: &TLS{
		Listeners:  []TLSListener{{Address: "127.0.0.1:443", Certs: []TLSCert{{Cert: []byte("CERT"), Key: []byte(key)}}}},
		TicketKeys: [][TicketKeySize]byte{tk},
	}}
	if s := fmt.Sprintf("%v %+v", msg, *msg); strings.Contains(s, "SECRET") || strings.Contains(s, "ticket-key") {
		t.Errorf("printed: %s", s)
	}
	if err := mine.Send(msg); err != nil {
		t.Fatal(err)
	}
	got, err := peer.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got.Type != TypeTLS || got.TLS == nil || len(got.TLS.Listeners) != 1 || got.TLS.TicketKeys[0] != tk {
		t.Fatalf("got %+v", got)
	}
	c := got.TLS.Listeners[0].Certs[0]
	if got.TLS.Listeners[0].Address != "127.0.0.1:443" || string(c.Cert) != "CERT" || string(c.Key) != key {
		t.Errorf("certificate or key changed in transit")
	}
}
