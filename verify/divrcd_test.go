package verify

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shakenline/shakenline/hsm/signertest"
	"github.com/shakenline/shakenline/labpki"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/rcd"
	"github.com/shakenline/shakenline/tnauth"
)

// The forwarded call: 12155550100 called 12025550101, who forwarded to
// 12155550123 (and, in the two-link chain, through 12025550102).
const (
	fwCaller = "12155550100"
	fwFirst  = "12025550101"
	fwSecond = "12025550102"
	fwTarget = "12155550123"
)

// forwarder is the diverting carrier: its own certificate from the lab's
// intermediate (SPC form unless ranges are given).
type forwarder struct {
	key *ecdsa.PrivateKey
	x5u string
}

func newForwarder(t *testing.T, l *lab, path string, tn tnauth.List) forwarder {
	t.Helper()
	now := time.Now()
	spc := "5678"
	if !tn.Empty() {
		spc = ""
	}
	cert, key, err := l.h.Intermediate.IssueSP(spc, tn, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return forwarder{key: key, x5u: l.serve(path, labpki.EncodeCerts(cert, l.h.Intermediate.Cert), "max-age=300")}
}

func (f forwarder) div(t *testing.T, orig, div, dest string, iat time.Time) string {
	t.Helper()
	b, err := passport.NewBuilderPPT(f.x5u, passport.PPTDiv)
	if err != nil {
		t.Fatal(err)
	}
	v, err := passport.SignDiv(context.Background(), signertest.CryptoSigner{Key: f.key}, b,
		&passport.DivClaims{Orig: []byte(orig), Dest: [][]byte{[]byte(dest)}, Div: []byte(div), IAT: iat.Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func shakenTo(t *testing.T, l *lab, dest string, iat time.Time) string {
	c := claims(fwCaller, iat)
	c.Dest = [][]byte{[]byte(dest)}
	return sign(t, l.h.SPKey, l.url("/sp.pem"), c)
}

// TestDivChain: a forwarded call verifies when div PASSporTs link the
// shaken PASSporT's dest to the called number, link by link; without
// them, or with a broken link, it fails.
func TestDivChain(t *testing.T) {
	l := newLab(t)
	now := time.Now()
	fw := newForwarder(t, l, "/fw.pem", tnauth.List{})
	ranged := newForwarder(t, l, "/ranged.pem", tnauth.List{Ranges: []tnauth.Range{{Start: "13125550100", Count: 10}}})
	foreign, err := labpki.NewHierarchy("XX", labpki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	alien := forwarder{key: foreign.SPKey, x5u: l.serve("/alien.pem", labpki.EncodeCerts(foreign.SP, foreign.Intermediate.Cert), "")}
	in := Input{OrigTN: fwCaller, DestTNs: []string{fwTarget}}
	cases := []struct {
		name  string
		ids   func() []string
		chain int
		err   error
	}{
		{"shaken only: the defect div exists for", func() []string { return []string{shakenTo(t, l, fwFirst, now)} }, -1, ErrDestMismatch},
		{"one div", func() []string {
			return []string{shakenTo(t, l, fwFirst, now), fw.div(t, fwCaller, fwFirst, fwTarget, now)}
		}, 1, nil},
		{"div before shaken", func() []string {
			return []string{fw.div(t, fwCaller, fwFirst, fwTarget, now), shakenTo(t, l, fwFirst, now)}
		}, 1, nil},
		{"two divs, out of order", func() []string {
			return []string{shakenTo(t, l, fwFirst, now), fw.div(t, fwCaller, fwSecond, fwTarget, now), fw.div(t, fwCaller, fwFirst, fwSecond, now)}
		}, 2, nil},
		{"shaken reaching the target already", func() []string {
			return []string{shakenTo(t, l, fwTarget, now), fw.div(t, fwCaller, "19999999999", fwTarget, now)}
		}, 0, nil},
		{"div with another orig", func() []string {
			return []string{shakenTo(t, l, fwFirst, now), fw.div(t, "12155550199", fwFirst, fwTarget, now)}
		}, -1, ErrDivChain},
		{"div from a target the shaken did not reach", func() []string {
			return []string{shakenTo(t, l, fwFirst, now), fw.div(t, fwCaller, fwSecond, fwTarget, now)}
		}, -1, ErrDivChain},
		{"div to another number", func() []string {
			return []string{shakenTo(t, l, fwFirst, now), fw.div(t, fwCaller, fwFirst, "12155550999", now)}
		}, -1, ErrDivChain},
		{"div signed outside the trust store", func() []string {
			return []string{shakenTo(t, l, fwFirst, now), alien.div(t, fwCaller, fwFirst, fwTarget, now)}
		}, -1, ErrUntrusted},
		{"div certificate not covering the div number", func() []string {
			return []string{shakenTo(t, l, fwFirst, now), ranged.div(t, fwCaller, fwFirst, fwTarget, now)}
		}, -1, ErrTNNotAuthorized},
		{"stale div", func() []string {
			return []string{shakenTo(t, l, fwFirst, now), fw.div(t, fwCaller, fwFirst, fwTarget, now.Add(-2*time.Minute))}
		}, -1, ErrStale},
		{"div with a bad signature", func() []string {
			d := fw.div(t, fwCaller, fwFirst, fwTarget, now)
			i := strings.LastIndexByte(d[:strings.IndexByte(d, ';')], '.') + 3
			return []string{shakenTo(t, l, fwFirst, now), d[:i] + string('A'+(d[i]-'A'+1)%26) + d[i+1:]}
		}, -1, ErrDivChain},
		{"chain longer than the limit", func() []string {
			ids := []string{shakenTo(t, l, fwFirst, now)}
			prev := fwFirst
			for i := range MaxDivChain + 1 {
				next := fmt.Sprint(13125550200 + i)
				if i == MaxDivChain {
					next = fwTarget
				}
				ids = append(ids, fw.div(t, fwCaller, prev, next, now))
				prev = next
			}
			return ids
		}, -1, ErrDivChain},
	}
	v := l.verifier(func(c *Config) { c.DisableReplay = true })
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := in
			in.Identity, in.Time = c.ids(), now
			divPassed, shakenPassed := mDivPassed.Get(), mShakenPassed.Get()
			r := v.Verify(context.Background(), in)
			if c.err == nil {
				if r.Verstat != Passed || r.DivChain != c.chain || r.Attest != "A" {
					t.Fatalf("got %+v, want passed with a chain of %d", r, c.chain)
				}
				// shakenline_verify_passports_total{ppt,result}: the shaken
				// PASSporT and each link of the chain.
				if d, s := mDivPassed.Get()-divPassed, mShakenPassed.Get()-shakenPassed; d != uint64(c.chain) || s != 1 {
					t.Errorf(`passports_total{result="passed"}: div +%d, shaken +%d; want +%d, +1`, d, s, c.chain)
				}
				return
			}
			if r.Verstat != Failed || r.Code != 438 || !errors.Is(r.Err, ErrDestMismatch) || !errors.Is(r.Err, c.err) {
				t.Fatalf("got %+v (%v), want 438 for %v", r, r.Err, c.err)
			}
		})
	}
}

// brand serves a logo and a jCard on the lab server; logo is what it
// serves now.
type brand struct {
	logo  atomic.Value
	fetch atomic.Int64
}

func newBrand(l *lab) *brand {
	b := &brand{}
	b.logo.Store("PNG-v1")
	l.mux.HandleFunc("/logo.png", func(w http.ResponseWriter, r *http.Request) {
		b.fetch.Add(1)
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(b.logo.Load().(string)))
	})
	return b
}

// TestRichCallData: the rcd of a verified call is shown when its linked
// content matches its rcdi digests, in the shaken PASSporT or an rcd one;
// a logo that changed after signing fails the rcd, never the call.
func TestRichCallData(t *testing.T) {
	l := newLab(t)
	now := time.Now()
	br := newBrand(l)
	logo := l.url("/logo.png")
	rc, err := rcd.Compile(rcd.Config{Nam: "Example Bank", Icn: logo, Crn: "Fraud alert"})
	if err != nil {
		t.Fatal(err)
	}
	cf := NewContentFetcher(ContentConfig{AllowHTTP: true, AllowPrivate: true})
	if err := rc.Resolve(context.Background(), cf.Fetch); err != nil {
		t.Fatal(err)
	}
	inShaken := func() string {
		c := claims(fwCaller, now)
		c.RCD = rc.Passport()
		return sign(t, l.h.SPKey, l.url("/sp.pem"), c)
	}
	separate := func() []string {
		c := claims(fwCaller, now)
		b, _ := passport.NewBuilderPPT(l.url("/sp.pem"), passport.PPTRCD)
		c.RCD = rc.Passport()
		v, err := passport.SignRCD(context.Background(), signertest.CryptoSigner{Key: l.h.SPKey}, b, c)
		if err != nil {
			t.Fatal(err)
		}
		c.RCD = nil
		return []string{sign(t, l.h.SPKey, l.url("/sp.pem"), c), v}
	}
	v := l.verifier(func(c *Config) { c.DisableReplay = true })
	want := rcd.Display{Name: "Example Bank", CRN: "Fraud alert", Icon: logo}
	shown, integrity, rcdPassed := mRCDShown.Get(), mRCDIntegrity.Get(), mRCDPassed.Get()
	for _, ids := range [][]string{{inShaken()}, separate()} {
		r := v.Verify(context.Background(), Input{Identity: ids, OrigTN: fwCaller, DestTNs: []string{"12025550199"}, Time: now})
		if r.Verstat != Passed || r.RCD == nil || *r.RCD != want || r.RCDErr != nil {
			t.Fatalf("got %+v (rcd %+v)", r, r.RCD)
		}
	}
	if s, p := mRCDShown.Get()-shown, mRCDPassed.Get()-rcdPassed; s != 2 || p != 1 {
		t.Errorf(`rcd_total{result="shown"} +%d, passports_total{ppt="rcd",result="passed"} +%d; want +2, +1`, s, p)
	}
	// The logo changes after signing: the call passes, its rcd does not.
	br.logo.Store("PNG-v2")
	for _, ids := range [][]string{{inShaken()}, separate()} {
		r := v.Verify(context.Background(), Input{Identity: ids, Time: now})
		if r.Verstat != Passed || r.RCD != nil || !errors.Is(r.RCDErr, rcd.ErrIntegrity) {
			t.Fatalf("changed logo: %+v", r)
		}
	}
	if n := mRCDIntegrity.Get() - integrity; n != 2 {
		t.Errorf(`rcd_total{result="integrity-failed"} +%d, want +2`, n)
	}
	// A failed call shows no rcd.
	c := claims(fwCaller, now)
	c.RCD = rc.Passport()
	r := v.Verify(context.Background(), Input{Identity: []string{sign(t, l.h.SPKey, l.url("/sp.pem"), c)}, OrigTN: "12155550999", Time: now})
	if r.Verstat != Failed || r.RCD != nil {
		t.Fatalf("failed call: %+v", r)
	}
}

// TestContentCache: linked content is cached for its Cache-Control
// lifetime within the entry and byte limits, and fetched once per URL.
func TestContentCache(t *testing.T) {
	l := newLab(t)
	var hits atomic.Int64
	for i := range 4 {
		l.mux.HandleFunc(fmt.Sprintf("/c%d", i), func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			w.Header().Set("Cache-Control", "max-age=60")
			_, _ = w.Write([]byte(strings.Repeat("x", 100)))
		})
	}
	v := l.verifier(func(c *Config) { c.ContentCacheSize = 2; c.ContentCacheBytes = 1 << 20; c.MaxContentBytes = 150 })
	for range 3 {
		if _, err := v.content(context.Background(), l.url("/c0")); err != nil {
			t.Fatal(err)
		}
	}
	if hits.Load() != 1 {
		t.Errorf("%d fetches of one URL, want 1", hits.Load())
	}
	for i := 1; i < 4; i++ {
		_, _ = v.content(context.Background(), l.url(fmt.Sprintf("/c%d", i)))
	}
	if n, b := v.ContentCacheLen(); n != 2 || b != 200 {
		t.Errorf("cache holds %d entries, %d bytes; want 2, 200", n, b)
	}
	l.mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(strings.Repeat("x", 151))) })
	if _, err := v.content(context.Background(), l.url("/big")); !errors.Is(err, ErrTooLarge) {
		t.Errorf("content over MaxContentBytes: %v", err)
	}
	// The hardened client's rules: no private targets without the lab
	// switch.
	strict := l.verifier(func(c *Config) { c.AllowPrivate = false })
	if _, err := strict.content(context.Background(), l.url("/c0")); !errors.Is(err, ErrForbiddenTarget) {
		t.Errorf("loopback content without AllowPrivate: %v", err)
	}
	if _, err := NewContentFetcher(ContentConfig{AllowHTTP: true}).Fetch(context.Background(), l.url("/c0")); !errors.Is(err, ErrForbiddenTarget) {
		t.Errorf("ContentFetcher to loopback: %v", err)
	}
}
