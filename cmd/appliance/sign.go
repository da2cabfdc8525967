package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/shakenline/shakenline/claims"
	"github.com/shakenline/shakenline/config"
	"github.com/shakenline/shakenline/credential"
	"github.com/shakenline/shakenline/e164"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/policy"
	"github.com/shakenline/shakenline/sip"
)

// signInput is the JSON accepted on stdin: the claims themselves, or an
// ATIS-1000082 {"signingRequest": {...}}. Extra claims (div, rcd, ...) are
// carried into the PASSporT.
type signInput struct {
	Attest string           `json:"attest"`
	Dest   passport.DestIDs `json:"dest"`
	IAT    int64            `json:"iat"`
	Orig   passport.TNOrURI `json:"orig"`
	OrigID string           `json:"origid"`
}

func cmdSign(ctx context.Context, args []string, e env) error {
	fs := flag.NewFlagSet("sign", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	cfgFile := fs.String("config", "", "YAML config `FILE` (key, cert, x5u, attest, default_country, policy)")
	key := fs.String("key", "", "signing key PEM `FILE`")
	cert := fs.String("cert", "", "provider certificate PEM `FILE`; the key must match it")
	x5u := fs.String("x5u", "", "certificate `URL` for info= and x5u")
	attest := fs.String("attest", "", "attestation `A|B|C` (JSON input may set it; for a SIP INVITE the policy decides)")
	country := fs.String("default-country", "", "ISO 3166 `CC` for national numbers in a SIP INVITE")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: appliance sign --key FILE --cert FILE --x5u URL < claims.json | invite.sip")
		printFlags(fs, fs.Output())
	}
	if err := parseFlags(fs, args, e); err != nil {
		return err
	}
	c, err := config.Load(*cfgFile)
	if err != nil {
		return err
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&c.Key, *key)
	set(&c.Cert, *cert)
	set(&c.X5U, *x5u)
	set(&c.Attest, *attest)
	set(&c.DefaultCountry, strings.ToUpper(*country))
	if c.Key == "" || c.Cert == "" || c.X5U == "" {
		return errors.New("--key, --cert and --x5u are required (or a --config that sets them)")
	}
	k, err := credential.ReadKeyFile(c.Key)
	if err != nil {
		return err
	}
	certs, err := loadCerts(c.Cert)
	if err != nil {
		return err
	}
	if err := checkCert(certs[0], &k.PublicKey, e.now()); err != nil {
		return fmt.Errorf("cert %s: %w", c.Cert, err)
	}
	signer, err := hsm.NewSoftware("soft", k)
	if err != nil {
		return err
	}
	defer signer.Close()
	b, err := passport.NewBuilder(c.X5U)
	if err != nil {
		return err
	}
	in, err := io.ReadAll(io.LimitReader(e.stdin, sip.MaxMessage+1))
	if err != nil {
		return err
	}
	in = bytes.TrimLeft(in, " \t\r\n")
	var claims passport.Claims
	var ext map[string]json.RawMessage
	if len(in) > 0 && in[0] == '{' {
		claims, ext, err = claimsFromJSON(in, c.Attest, e)
	} else {
		claims, err = claimsFromSIP(in, c, e)
	}
	if err != nil {
		return err
	}
	id, err := passport.SignExt(ctx, signer, b, &claims, ext)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, id)
	return nil
}

func claimsFromJSON(in []byte, defAttest string, e env) (passport.Claims, map[string]json.RawMessage, error) {
	var c passport.Claims
	var wrap struct {
		SigningRequest json.RawMessage `json:"signingRequest"`
	}
	if err := json.Unmarshal(in, &wrap); err == nil && len(wrap.SigningRequest) > 0 {
		in = wrap.SigningRequest
	}
	var si signInput
	if err := json.Unmarshal(in, &si); err != nil {
		return c, nil, fmt.Errorf("claims JSON: %w", err)
	}
	var all map[string]json.RawMessage
	_ = json.Unmarshal(in, &all)
	ext := map[string]json.RawMessage{}
	for k, v := range all {
		switch k {
		case "attest", "dest", "iat", "orig", "origid":
		default:
			ext[k] = v
		}
	}
	if si.Attest == "" {
		si.Attest = defAttest
	}
	if len(si.Attest) != 1 || !strings.Contains("ABC", si.Attest) {
		return c, nil, fmt.Errorf("attest %q: want A, B or C", si.Attest)
	}
	c.Attest = si.Attest[0]
	// E.164 as given, the API's rule (docs/API.md, "Telephone numbers").
	orig, err := e164.AppendGiven(nil, si.Orig.TN)
	if err != nil {
		return c, nil, fmt.Errorf("orig.tn %q: %w", si.Orig.TN, err)
	}
	c.Orig = orig
	if len(si.Dest.TN) == 0 {
		return c, nil, errors.New("dest.tn is required")
	}
	for _, d := range si.Dest.TN {
		dd, err := e164.AppendGiven(nil, d)
		if err != nil {
			return c, nil, fmt.Errorf("dest.tn %q: %w", d, err)
		}
		c.Dest = append(c.Dest, dd)
	}
	c.IAT = si.IAT
	if c.IAT == 0 {
		c.IAT = e.now().Unix()
	}
	if si.OrigID != "" {
		id, err := parseUUID(si.OrigID)
		if err != nil {
			return c, nil, err
		}
		c.OrigID = id
	} else {
		_, _ = rand.Read(c.OrigID[:])
	}
	return c, ext, nil
}

func parseUUID(s string) ([16]byte, error) {
	var id [16]byte
	h := strings.ReplaceAll(s, "-", "")
	if len(s) != 36 || len(h) != 32 {
		return id, fmt.Errorf("origid %q: not a UUID", s)
	}
	if _, err := hex.Decode(id[:], []byte(h)); err != nil {
		return id, fmt.Errorf("origid %q: not a UUID", s)
	}
	return id, nil
}

// claimsFromSIP extracts the claims exactly as the fast path does, with the
// policy deciding attestation (source address unknown here: rules on
// numbers still apply).
func claimsFromSIP(in []byte, c config.Config, e env) (passport.Claims, error) {
	var cl passport.Claims
	// Tolerate a message pasted with bare LF line ends.
	if !bytes.Contains(in, []byte("\r\n")) {
		in = bytes.ReplaceAll(in, []byte("\n"), []byte("\r\n"))
	}
	var m sip.Message
	if err := m.Parse(in); err != nil {
		return cl, fmt.Errorf("SIP message: %w", err)
	}
	numbers, err := e164.New(c.DefaultCountry)
	if err != nil {
		return cl, err
	}
	orig, ok := claims.OrigTN(nil, nil, in, &m, numbers)
	if !ok {
		return cl, errors.New("the INVITE has no calling telephone number (P-Asserted-Identity or From)")
	}
	dest, ok := claims.DestTN(nil, nil, in, &m, numbers)
	if !ok {
		return cl, errors.New("the INVITE has no called telephone number in To")
	}
	tbl, err := policy.Build(c.Policy, c.Attest)
	if err != nil {
		return cl, err
	}
	// The Date rules of the fast path (RFC 8224 sections 4.1 and 6.1). The
	// INVITE itself is not printed, so the Date it must carry is told on
	// stderr when it differs from what it has.
	stale, err := claims.ParseStaleDate(c.StaleDate)
	if err != nil {
		return cl, err
	}
	iat, act := claims.DateRule(in, &m, e.now(), c.Freshness, stale)
	date := string(sip.AppendDate(nil, iat))
	switch act {
	case claims.DateStale:
		return cl, fmt.Errorf("the INVITE's Date %q is outside the %v freshness window: not signed (RFC 8224 section 4.1; stale_date: replace signs it with a new Date)", m.Date.In(in), c.Freshness)
	case claims.DateBad:
		return cl, fmt.Errorf("the INVITE's Date %q is not an RFC 3261 date: not signed (RFC 8224 section 4.1; stale_date: replace signs it with a new Date)", m.Date.In(in))
	case claims.DateAdd:
		fmt.Fprintf(e.stderr, "the INVITE has no Date: send it with \"Date: %s\" (the PASSporT's iat, RFC 8224 section 6.1)\n", date)
	case claims.DateReplace:
		fmt.Fprintf(e.stderr, "stale_date: replace: send the INVITE with \"Date: %s\" in place of %q (the PASSporT's iat)\n", date, m.Date.In(in))
	}
	d := tbl.Decide(netipZero, orig)
	cl = passport.Claims{Attest: d.Attest, Orig: orig, Dest: [][]byte{dest}, IAT: iat}
	_, _ = rand.Read(cl.OrigID[:])
	return cl, nil
}

var netipZero netip.Addr
