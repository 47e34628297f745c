package serve

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/forkd/forkd/config"
	"github.com/forkd/forkd/internal/httplex"
	"github.com/forkd/forkd/protocol"
	"golang.org/x/crypto/bcrypt"
)

// authCacheSize bounds how many verified credentials a basic_auth block
// remembers in each worker.
const authCacheSize = 1024

// maxCredentials bounds the decoded "user:password" of an Authorization
// field; longer ones are refused without a bcrypt comparison.
const maxCredentials = 512

// basicAuth answers 401 with a challenge unless the request carries the
// user and password of one of its users (RFC 7617).
//
// bcrypt is slow on purpose: a comparison at cost 10 takes tens of
// milliseconds, which would hold up every other connection of an event
// loop. So, as Caddy does, each worker remembers the credentials it has
// verified, keyed by a hash of "user:password" under a random key of its
// own (the passwords themselves are never kept): a client that sends them
// again passes with one SHA-256, on the loop. Only a comparison moves the
// connection off the loop first (WillBlock). Failed attempts are not
// remembered, so each costs its own comparison (a deliberate choice: a
// cache of failures would let a guesser go faster); an unknown user is
// compared against a user's hash, so that the time taken does not tell
// which users exist. The cache is bounded (authCacheSize per block; when
// full, one entry is forgotten). Nothing here logs the Authorization
// field.
type basicAuth struct {
	*authUsers
	next routeHandler
}

// authUsers is one basic_auth block's users and the credentials verified
// with them; the routes that share the block (a site's) share it.
type authUsers struct {
	challenge string // the WWW-Authenticate value
	users     map[string][]byte
	dummy     []byte // compared for unknown users
	key       [32]byte

	mu       sync.RWMutex
	verified map[[sha256.Size]byte]struct{}
}

// noUsersHash is a bcrypt hash (cost 10) compared when a block has no
// users at all (an empty htpasswd file), so that a refusal takes the time
// of a comparison all the same.
const noUsersHash = "$2a$10$HF6Y.9G5AmEyaTwSxmIaIe7rgsalSEorsYWrdmZokXz39.cDIdBU2"

func newAuthUsers(b *config.BasicAuth) (*authUsers, error) {
	users, err := b.ReadUsers()
	if err != nil {
		return nil, err
	}
	a := &authUsers{
		challenge: fmt.Sprintf("Basic realm=%q, charset=\"UTF-8\"", b.Realm),
		users:     make(map[string][]byte, len(users)),
		dummy:     []byte(noUsersHash),
		verified:  make(map[[sha256.Size]byte]struct{}),
	}
	// An unknown user is compared against a user's hash: the same cost,
	// so the time taken does not tell which users exist.
	for _, u := range slices.Sorted(maps.Keys(users)) {
		a.users[u] = []byte(users[u])
		a.dummy = a.users[u]
	}
	if _, err := rand.Read(a.key[:]); err != nil {
		return nil, fmt.Errorf("basic_auth: %w", err)
	}
	return a, nil
}

func (a *basicAuth) serveRoute(w *protocol.ResponseWriter, r *protocol.Request, p *reqPath) {
	if a.admits(w, r) {
		a.next.serveRoute(w, r, p)
		return
	}
	w.Header().Set("WWW-Authenticate", a.challenge)
	writeError(w, 401)
}

// admits reports whether r carries a user's credentials.
func (a *authUsers) admits(w *protocol.ResponseWriter, r *protocol.Request) bool {
	v := bytes.TrimSpace(r.Header.Get("Authorization"))
	if len(v) < 6 || !httplex.EqualFold(v[:6], "basic ") {
		return false
	}
	enc := bytes.TrimLeft(v[6:], " ")
	var in [sha256.Size + maxCredentials]byte
	if base64.StdEncoding.DecodedLen(len(enc)) > maxCredentials {
		return false
	}
	copy(in[:], a.key[:])
	n, err := base64.StdEncoding.Decode(in[sha256.Size:], enc)
	if err != nil {
		return false
	}
	cred := in[sha256.Size : sha256.Size+n]
	i := bytes.IndexByte(cred, ':')
	if i < 0 {
		return false
	}
	sum := sha256.Sum256(in[:sha256.Size+n])
	a.mu.RLock()
	_, ok := a.verified[sum]
	a.mu.RUnlock()
	if ok {
		return true
	}
	w.WillBlock() // a bcrypt comparison: off the event loop
	hash, known := a.users[string(cred[:i])]
	if !known {
		_ = bcrypt.CompareHashAndPassword(a.dummy, cred[i+1:])
		return false
	}
	if bcrypt.CompareHashAndPassword(hash, cred[i+1:]) != nil {
		return false
	}
	a.mu.Lock()
	if len(a.verified) >= authCacheSize {
		for k := range a.verified { // forget one, any
			delete(a.verified, k)
			break
		}
	}
	a.verified[sum] = struct{}{}
	a.mu.Unlock()
	return true
}
