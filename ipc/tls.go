package ipc

import "golang.org/x/sys/unix"

// TypeTLS (master -> worker) carries TLS material that must not travel in
// the configuration's JSON: the certificates and private keys of the
// worker's generation, sent once right after the worker starts, and the
// session-ticket keys, sent then and again at every rotation (without
// certificates). A worker with TLS listeners serves only once the first
// one has arrived.
const TypeTLS = "tls"

// TicketKeySize is the size of one session-ticket key (tls.Config's).
const TicketKeySize = 32

// TLS is a TypeTLS message's content. Nothing here may be logged.
type TLS struct {
	// Listeners holds the certificates of each TLS listener, by listen
	// address; nil in a rotation, which changes only the ticket keys.
	Listeners []TLSListener `json:"listeners,omitempty"`
	// TicketKeys are the session-ticket keys, the one that encrypts new
	// tickets first; every one of them decrypts.
	TicketKeys [][TicketKeySize]byte `json:"ticket_keys"`
}

// TLSListener is one listener's certificates.
type TLSListener struct {
	Address string    `json:"address"`
	Certs   []TLSCert `json:"certs"`
}

// TLSCert is one certificate chain and its private key, PEM.
type TLSCert struct {
	Cert []byte `json:"cert"`
	Key  []byte `json:"key"`
}

// String keeps the material out of any print of a TLS.
func (*TLS) String() string { return "[tls material]" }

// smallPacket is what a socket's default send buffer surely takes in one
// packet; larger ones (TLS material) make fitSendBuffer grow it.
const smallPacket = 64 << 10

// fitSendBuffer makes the socket's send buffer big enough for one packet of
// n bytes: a seqpacket larger than the buffer fails with EMSGSIZE, and
// Linux's default (wmem_default, about 208 KiB) is less than maxPacket.
// SO_SNDBUFFORCE (root, as the master usually is) may exceed wmem_max;
// SO_SNDBUF is capped by it. If neither suffices, Send reports the error.
func (c *Conn) fitSendBuffer(n int) {
	if n <= smallPacket || n <= c.sndbuf {
		return
	}
	want := n + smallPacket
	_ = c.rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, want) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, want)
		}
		if v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF); err == nil {
			c.sndbuf = v / 2 // the kernel doubles what it is given, for its bookkeeping
		}
	})
}
