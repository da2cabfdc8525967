package interop

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	_ "embed"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/shakenline/shakenline/internal/netns"
	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/labsti"
	"github.com/shakenline/shakenline/tnauth"
)

// buildPKI makes the policy administrators, the CAs, every carrier's
// STI-PA account (its certificates for the proxies come later, through
// ACME: startGovernance) and the credentials the runner pre-signs with,
// and writes certificates, keys, credentials and trust stores.
func buildPKI(cfg Config, res *Result) ([]*carrierHost, map[Jurisdiction]*Authority, error) {
	now := time.Now()
	auths := map[Jurisdiction]*Authority{}
	pas := map[Jurisdiction]*PolicyAdministrator{}
	need := map[Jurisdiction]bool{}
	for _, c := range cfg.Carriers {
		need[c.CA] = true
		for _, t := range c.Trusts {
			need[t] = true
		}
	}
	for j := range need {
		name, prefix, caName := string(j)+" STI-PA", string(j), string(j)+" STI-CA"
		if j == Global {
			name, prefix, caName = "Global Policy Administrator (G-PA)", "G", "Global CA (G-CA)"
		}
		pa, err := NewPolicyAdministrator(name, j, prefix)
		if err != nil {
			return nil, nil, err
		}
		a, err := NewAuthority(caName, pa, fmt.Sprintf("http://%s:%d/crl/%s", coreAddr, portHTTP, strings.ToLower(string(j))))
		if err != nil {
			return nil, nil, err
		}
		pas[j], auths[j] = pa, a
	}
	trustDir := filepath.Join(cfg.WorkDir, "trust")
	if err := os.MkdirAll(trustDir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("interop: %w", err)
	}
	for j, a := range auths {
		if err := labpki.WriteCerts(filepath.Join(trustDir, string(j)+".pem"), a.Root.Cert); err != nil {
			return nil, nil, err
		}
	}
	var hosts []*carrierHost
	for i, c := range cfg.Carriers {
		h := &carrierHost{Carrier: c, idx: i + 1, dir: filepath.Join(cfg.WorkDir, c.Name)}
		if err := os.MkdirAll(h.dir, 0o755); err != nil {
			return nil, nil, fmt.Errorf("interop: %w", err)
		}
		a, pa := auths[c.CA], pas[c.CA]
		account, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, fmt.Errorf("interop: %w", err)
		}
		spc := pa.AssignSPC()
		tl := tnauth.List{SPCs: []string{spc}}
		if c.TNRange {
			tl = tnauth.List{}
			for _, s := range TNRanges(c) {
				tl.Ranges = append(tl.Ranges, tnauth.Range{Start: s, Count: 100})
			}
		}
		// The carrier's account at its STI-PA: its proxies obtain their
		// certificates from its CA through ACME with tokens from there.
		h.spc, h.tn = spc, tl
		h.account = labsti.Account{UserID: c.Name, Password: randomHex(16), ID: spc, SPC: spc, TNAuthList: tl}
		if err := h.account.WriteCredentials(filepath.Join(h.dir, "sti-pa.json")); err != nil {
			return nil, nil, err
		}
		tok, err := pa.Token(tl, &account.PublicKey, now, time.Hour)
		if err != nil {
			return nil, nil, err
		}
		// The credentials below are the runner's own: what another STI-AS of
		// the carrier puts on the wire in the pre-signed cases (and the
		// expired and revoked certificates).
		issue := func(kind string, nb, na time.Time) (*Credential, error) {
			cr, err := a.Issue(tok, &account.PublicKey, now, nb, na)
			if err != nil {
				return nil, fmt.Errorf("interop: %s certificate for %s: %w", kind, c.Name, err)
			}
			res.Governance = append(res.Governance, IssueRecord{Carrier: c.Name, PA: pa.Name, CA: a.Name, SPC: spc,
				TNAuthList: describeTN(cr.TN), Kind: kind, NotAfter: na})
			return cr, nil
		}
		if h.cred, err = issue("current", now.Add(-time.Hour), now.Add(90*24*time.Hour)); err != nil {
			return nil, nil, err
		}
		if h.expired, err = issue("expired", now.Add(-60*24*time.Hour), now.Add(-24*time.Hour)); err != nil {
			return nil, nil, err
		}
		if h.revoke, err = issue("revoked", now.Add(-time.Hour), now.Add(90*24*time.Hour)); err != nil {
			return nil, nil, err
		}
		a.Revoke(h.revoke.Chain[0])
		if err := labpki.WriteCerts(filepath.Join(h.dir, "sp.pem"), h.cred.Chain...); err != nil {
			return nil, nil, err
		}
		if err := labpki.WriteKey(filepath.Join(h.dir, "sp.key"), h.cred.Key); err != nil {
			return nil, nil, err
		}
		hosts = append(hosts, h)
	}
	return hosts, auths, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

func describeTN(l tnauth.List) string {
	var parts []string
	for _, s := range l.SPCs {
		parts = append(parts, "SPC "+s)
	}
	for _, r := range l.Ranges {
		parts = append(parts, fmt.Sprintf("+%s..+%d", r.Start, mustUint(r.Start)+uint64(r.Count)-1))
	}
	for _, t := range l.TNs {
		parts = append(parts, "+"+t)
	}
	return strings.Join(parts, ", ")
}

func mustUint(s string) uint64 {
	n, _ := new(big.Int).SetString(s, 10)
	if n == nil {
		return 0
	}
	return n.Uint64()
}

// serveFiles serves files over http on addr inside ns until stop; with
// dir set, /acme/<side>/<name>.pem is served from dir/<side>/<name>.pem
// too (what the proxies publish there: acme publish.dir).
func serveFiles(ns *netns.NS, addr netip.AddrPort, files map[string][]byte, ctype, dir string) (stop func(), err error) {
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", addr.String())
		return err
	}); err != nil {
		return nil, fmt.Errorf("interop: http %s: %w", addr, err)
	}
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, ok := files[r.URL.Path]
			if !ok && dir != "" && strings.HasPrefix(r.URL.Path, "/acme/") && strings.HasSuffix(r.URL.Path, ".pem") &&
				!strings.Contains(r.URL.Path, "..") {
				var err error
				b, err = os.ReadFile(filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(r.URL.Path, "/acme/"))))
				ok = err == nil
			}
			if !ok {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", ctype)
			w.Header().Set("Cache-Control", "max-age=3600")
			_, _ = w.Write(b)
		}),
	}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }, nil
}
