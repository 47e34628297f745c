package config

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// ReadUsers returns the users of a basic_auth block, those written inline and
// those of its htpasswd file together (inline ones win), name -> bcrypt
// hash. Workers call it when they build their routes; validation has
// checked the file already.
func (b *BasicAuth) ReadUsers() (map[string]string, error) {
	users := make(map[string]string, len(b.Users))
	if b.Htpasswd != "" {
		fromFile, err := ReadHtpasswd(b.Htpasswd)
		if err != nil {
			return nil, err
		}
		users = fromFile
	}
	for u, h := range b.Users {
		users[u] = h
	}
	return users, nil
}

// ReadHtpasswd reads an htpasswd file of bcrypt entries ("user:$2y$..."),
// one a line; blank lines and lines starting with '#' are skipped. An
// entry of another kind (MD5 "$apr1$", SHA "{SHA}", crypt) is an error
// naming its line: those hashes are too cheap to guess.
func ReadHtpasswd(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("htpasswd: %w", err)
	}
	users := make(map[string]string)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("htpasswd %s:%d: not \"user:hash\"", path, n)
		}
		if err := checkBcrypt(hash); err != nil {
			return nil, fmt.Errorf("htpasswd %s:%d: user %q: %w", path, n, user, err)
		}
		if _, dup := users[user]; dup {
			return nil, fmt.Errorf("htpasswd %s:%d: user %q is listed twice", path, n, user)
		}
		users[user] = hash
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("htpasswd %s: %w", path, err)
	}
	return users, nil
}

// checkBcrypt checks that hash is a bcrypt hash ("$2a$", "$2b$", "$2y$").
func checkBcrypt(hash string) error {
	if _, err := bcrypt.Cost([]byte(hash)); err != nil || !strings.HasPrefix(hash, "$2") {
		return fmt.Errorf("the hash is not bcrypt (\"$2y$10$...\", as htpasswd -B makes); only bcrypt hashes are accepted")
	}
	return nil
}

// Prefixes returns Allow and Deny parsed. The entries of a validated
// configuration all parse; others are left out.
func (a Access) Prefixes() (allow, deny []netip.Prefix) {
	return Listen{Trusted: a.Allow}.TrustedPrefixes(), Listen{Trusted: a.Deny}.TrustedPrefixes()
}

// access checks allow, deny and basic_auth of a site or route.
func (v *validator) access(key string, a *Access) {
	for _, list := range []struct {
		name string
		nets []string
	}{{"allow", a.Allow}, {"deny", a.Deny}} {
		for i, s := range list.nets {
			if _, err := parsePrefix(s); err != nil {
				v.errorErr(fmt.Sprintf("%s.%s[%d]", key, list.name, i), "Invalid "+list.name+" network", err)
			}
		}
	}
	if id := a.RequestID; id != "" && (!isToken(id) || isFramingField(id) || isHopField(id)) {
		v.errorf(key+".request_id", "Invalid request_id", "request_id must name a header field such as \"X-Request-Id\"; got %q.", id)
	}
	v.rateLimitRefs(key, a.RateLimit)
	b := a.BasicAuth
	if b == nil {
		return
	}
	bkey := key + ".basic_auth"
	if b.Realm == "" || strings.ContainsAny(b.Realm, "\"\\") || strings.ContainsFunc(b.Realm, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		v.errorf(bkey+".realm", "Invalid realm", "The realm must not be empty, nor hold quotes, backslashes or control characters; got %q.", b.Realm)
	}
	if len(b.Users) == 0 && b.Htpasswd == "" {
		v.errorf(bkey, "Missing users", "basic_auth needs users, an htpasswd file, or both.")
	}
	names := make([]string, 0, len(b.Users))
	for u := range b.Users {
		names = append(names, u)
	}
	sort.Strings(names)
	for _, u := range names {
		ukey := fmt.Sprintf("%s.users[%q]", bkey, u)
		if u == "" || strings.ContainsAny(u, ":") || strings.ContainsFunc(u, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			v.errorf(ukey, "Invalid user", "The user name %q must not be empty, nor hold ':' or control characters.", u)
			continue
		}
		if err := checkBcrypt(b.Users[u]); err != nil {
			v.errorErr(ukey, "Invalid password hash", fmt.Errorf("user %q: %w", u, err))
		}
	}
	if b.Htpasswd != "" && !v.noHost {
		if _, err := ReadHtpasswd(b.Htpasswd); err != nil {
			v.errorErr(bkey+".htpasswd", "Invalid htpasswd file", err)
		}
	}
}
