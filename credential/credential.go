// Package credential owns the signing credential of the appliance: the key
// (a signer chain holding it), the certificate chain naming it and the x5u
// where that chain is published (with its PASSporT builder), kept together
// so that they change as one.
//
// A Holder is read once per call: the fast path and the HTTP API Load the
// credential when they build a PASSporT and use that one value for the
// signing input (x5u), the signature (Signer) and the Identity header, so a
// call in flight when a renewal switches finishes with the credential it
// started with, and every call after the switch carries the new x5u and
// key. Who switches (certmgr, after the new certificate is validated and
// published) keeps the old credential's signer open until its calls are
// done; see docs/KEYS.md, "A renewal".
//
// # Concurrency
//
// Load and Swap are single atomic pointer operations; a Credential is
// immutable once stored.
package credential

import (
	"crypto/x509"
	"errors"
	"sync/atomic"

	"github.com/shakenline/shakenline/audit"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/passport"
)

// Credential is one key + certificate + x5u.
type Credential struct {
	Signer      hsm.Dispatcher      // signs with the key of Chain[0]
	Builder     *passport.Builder   // holds the x5u
	Chain       []*x509.Certificate // leaf first
	Fingerprint string              // audit.Fingerprint of the leaf
	// Close, when set, releases the signer (its sessions, its software
	// keys); the one who retires the credential calls it once no call
	// uses it any more.
	Close func()
}

// New checks the parts and fills Fingerprint.
func New(signer hsm.Dispatcher, b *passport.Builder, chain []*x509.Certificate) (*Credential, error) {
	if signer == nil || b == nil || len(chain) == 0 {
		return nil, errors.New("credential: a signer, a builder and a certificate are required")
	}
	return &Credential{Signer: signer, Builder: b, Chain: chain, Fingerprint: audit.Fingerprint(chain[0])}, nil
}

// Leaf is the certificate of the key.
func (c *Credential) Leaf() *x509.Certificate { return c.Chain[0] }

// X5U is where the chain is published.
func (c *Credential) X5U() string { return c.Builder.X5U() }

// Holder holds the credential in use.
type Holder struct{ p atomic.Pointer[Credential] }

// NewHolder returns a Holder holding c.
func NewHolder(c *Credential) *Holder {
	h := &Holder{}
	h.p.Store(c)
	return h
}

// Load returns the credential in use.
func (h *Holder) Load() *Credential { return h.p.Load() }

// Swap makes c the credential in use and returns the previous one.
func (h *Holder) Swap(c *Credential) *Credential { return h.p.Swap(c) }
