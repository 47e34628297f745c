package ipc

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
