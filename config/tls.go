package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// TLS versions a listen block's min_version may name.
const (
	TLSVersion12      = "1.2"
	TLSVersion13      = "1.3"
	DefaultMinVersion = TLSVersion12
)

// Redirect defaults.
const DefaultRedirectStatus = 301

// TLSCert is one tls block of a listen block: a certificate chain (leaf
// first) and its private key, both PEM files.
//
// The files are read when the configuration is loaded and validated, by
// the master, before workers start and drop privileges: CertPEM and KeyPEM
// hold their contents, so that a key readable only by root still serves
// when workers run as another user. Neither travels in the configuration's
// JSON (workers get them over their ipc socket), and KeyPEM never prints.
type TLSCert struct {
	Certificate string `json:"certificate"`
	Key         string `json:"key"`

	CertPEM []byte `json:"-"`
	KeyPEM  Secret `json:"-"`
}

// Secret is private key material: it formats and marshals as "[redacted]",
// so that it cannot reach a log or a status by accident.
type Secret []byte

// String returns "[redacted]".
func (Secret) String() string { return "[redacted]" }

// GoString returns "[redacted]".
func (Secret) GoString() string { return "[redacted]" }

// Format writes "[redacted]" whatever the verb.
func (Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, "[redacted]") }

// MarshalJSON writes "[redacted]".
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"[redacted]"`), nil }

// Redirect answers every request with a redirection to Location, a
// template whose placeholders (see Placeholder) are expanded for each
// request: "https://{host}{uri}".
type Redirect struct {
	Status   int    `json:"status"`
	Location string `json:"location"`
}

// IsTLS reports whether the listener terminates TLS.
func (l Listen) IsTLS() bool { return len(l.TLS) > 0 }

// TLSMinVersion is the listener's min_version as a crypto/tls constant.
func (l Listen) TLSMinVersion() uint16 {
	if l.MinVersion == TLSVersion13 {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// HasTLS reports whether any listener terminates TLS.
func (c *Config) HasTLS() bool {
	for _, l := range c.Listen {
		if l.IsTLS() {
			return true
		}
	}
	return false
}

var (
	tlsSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "certificate", Required: true}, {Name: "key", Required: true}},
	}
	redirectSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "status"}, {Name: "location", Required: true}},
	}
)

// listenTLS decodes a listen block's min_version and tls blocks.
func (d *decoder) listenTLS(a hcl.Attributes, blocks hcl.Blocks, key string, l *Listen) {
	d.string(a["min_version"], key+".min_version", &l.MinVersion)
	for i, b := range blocks.OfType("tls") {
		tkey := fmt.Sprintf("%s.tls[%d]", key, i)
		d.pos[tkey] = b.DefRange
		ta := d.content(b.Body, tlsSchema).Attributes
		d.required(ta, tkey, "certificate", "key")
		var t TLSCert
		d.string(ta["certificate"], tkey+".certificate", &t.Certificate)
		d.string(ta["key"], tkey+".key", &t.Key)
		l.TLS = append(l.TLS, t)
	}
}

func (d *decoder) redirect(b *hcl.Block, key string) *Redirect {
	r := &Redirect{Status: DefaultRedirectStatus}
	a := d.content(b.Body, redirectSchema).Attributes
	d.required(a, key, "location")
	d.int(a["status"], key+".status", &r.Status)
	d.string(a["location"], key+".location", &r.Location)
	return r
}

// listenTLS checks a listener's TLS settings and reads its certificate and
// key files into l (see TLSCert). A file that is missing, unreadable or
// not PEM, and a key that does not match its certificate, are errors; a
// certificate outside its validity period is a warning.
func (v *validator) listenTLS(key string, l *Listen) {
	if l.MinVersion != "" && l.MinVersion != TLSVersion12 && l.MinVersion != TLSVersion13 {
		v.errorf(key+".min_version", "Invalid min_version", "The TLS version %q is not \"1.2\" or \"1.3\".", l.MinVersion)
	}
	if l.MinVersion != "" && !l.IsTLS() {
		v.errorf(key+".min_version", "Invalid min_version", "min_version applies only to a listener with tls blocks.")
	}
	for i := range l.TLS {
		v.tlsCert(fmt.Sprintf("%s.tls[%d]", key, i), &l.TLS[i])
	}
}

func (v *validator) tlsCert(key string, t *TLSCert) {
	ckey, kkey := key+".certificate", key+".key"
	if v.skip[ckey] || v.skip[kkey] || v.noHost {
		return
	}
	certPEM, err := os.ReadFile(t.Certificate)
	if err != nil {
		v.errorErr(ckey, "Cannot read certificate", err)
	}
	keyPEM, kerr := os.ReadFile(t.Key)
	if kerr != nil {
		v.errorErr(kkey, "Cannot read key", kerr)
	}
	if err != nil || kerr != nil {
		return
	}
	chain := firstCertificate(certPEM)
	if chain == nil {
		v.errorf(ckey, "Invalid certificate", "The file %s holds no PEM certificate that parses.", t.Certificate)
		return
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		// Do not quote crypto/tls's message: it may describe the key.
		v.errorf(kkey, "Invalid key", "The key in %s does not match the certificate in %s, or is not a PEM private key.", t.Key, t.Certificate)
		return
	}
	now := time.Now()
	switch {
	case now.After(chain.NotAfter):
		v.warnf(ckey, "Expired certificate", "The certificate in %s expired on %s; clients will refuse it.",
			t.Certificate, chain.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(chain.NotBefore):
		v.warnf(ckey, "Certificate not yet valid", "The certificate in %s is valid only from %s.",
			t.Certificate, chain.NotBefore.UTC().Format(time.RFC3339))
	}
	t.CertPEM, t.KeyPEM = certPEM, keyPEM
}

// firstCertificate parses the first certificate (the leaf) of a PEM chain.
func firstCertificate(pemBytes []byte) *x509.Certificate {
	for rest := pemBytes; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil
		}
		if block.Type == "CERTIFICATE" {
			leaf, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil
			}
			return leaf
		}
	}
}

func (v *validator) redirect(key string, r *Redirect) {
	switch r.Status {
	case 301, 302, 303, 307, 308:
	default:
		v.errorf(key+".status", "Invalid redirect status", "The status %d is not 301, 302, 303, 307 or 308.", r.Status)
	}
	lkey := key + ".location"
	switch {
	case r.Location == "":
		v.errorf(lkey, "Invalid location", "The location must not be empty.")
	case strings.ContainsAny(r.Location, "\r\n\x00"):
		v.errorf(lkey, "Invalid location", "The location contains CR, LF or NUL.")
	}
	if _, err := ParseTemplate(r.Location); err != nil {
		v.errorErr(lkey, "Invalid location", err)
	}
}

// warnf records a warning: the configuration stays valid, and Parse returns
// it in Config.Warnings.
func (v *validator) warnf(key, summary, format string, args ...any) {
	v.diags = append(v.diags, &hcl.Diagnostic{
		Severity: hcl.DiagWarning,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  v.rangeOf(key),
	})
}

// warningsOf formats the warnings among diags, one line each, as Error
// formats errors.
func warningsOf(diags hcl.Diagnostics) []string {
	var out []string
	for _, d := range diags {
		if d.Severity == hcl.DiagWarning {
			s := formatDiag(d)
			if d.Subject == nil {
				s = "warning: " + s
			}
			out = append(out, s)
		}
	}
	return out
}
