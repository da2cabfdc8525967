package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/shakenline/shakenline/config"
	"github.com/shakenline/shakenline/e164"
	"github.com/shakenline/shakenline/sip"
	"github.com/shakenline/shakenline/verify"
)

// verifyOutput is what verify prints: the verstat and the ATIS-1000082
// reason fields, plus what the PASSporT said.
type verifyOutput struct {
	Verstat    string `json:"verstat"`
	ReasonCode int    `json:"reasoncode,omitempty"`
	ReasonText string `json:"reasontext,omitempty"`
	Attest     string `json:"attest,omitempty"`
	OrigID     string `json:"origid,omitempty"`
	TrustStore string `json:"trust,omitempty"`
	SPC        string `json:"spc,omitempty"`
	X5U        string `json:"x5u,omitempty"`
}

func cmdVerify(ctx context.Context, args []string, e env) (bool, error) {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	trust := fs.String("trust", "", "named trust stores `NAME=FILE[,NAME=FILE]` (PEM bundles of trust anchors)")
	certFile := fs.String("cert", "", "use this PEM chain `FILE` for the PASSporT's x5u instead of fetching it")
	lab := fs.Bool("lab", false, "lab only: allow http x5u and loopback/private x5u targets")
	freshness := fs.Duration("freshness", 60*time.Second, "accepted iat skew")
	country := fs.String("default-country", "US", "ISO 3166 `CC` for national numbers in From/To")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: appliance verify --trust NAME=FILE [--cert FILE] [--lab] < headers\n"+
			"stdin: an INVITE, or header lines: Identity: ..., From: ..., To: ... (P-Asserted-Identity preferred over From)")
		printFlags(fs, fs.Output())
	}
	if err := parseFlags(fs, args, e); err != nil {
		return false, err
	}
	stores, err := config.ParseTrust(*trust)
	if err != nil {
		return false, err
	}
	if len(stores) == 0 {
		return false, errors.New("--trust NAME=FILE is required (the anchors a PASSporT must chain to)")
	}
	pools, err := verify.LoadTrust(stores)
	if err != nil {
		return false, err
	}
	vc := verify.Config{Trust: pools, Freshness: *freshness, AllowHTTP: *lab, AllowPrivate: *lab, Now: e.now}
	in, err := io.ReadAll(io.LimitReader(e.stdin, sip.MaxMessage+1))
	if err != nil {
		return false, err
	}
	numbers, err := e164.New(strings.ToUpper(*country))
	if err != nil {
		return false, err
	}
	vin, err := verifyInputFrom(in, numbers)
	if err != nil {
		return false, err
	}
	vin.Time = e.now()
	if *certFile != "" {
		chain, err := loadCerts(*certFile)
		if err != nil {
			return false, err
		}
		vc.Static = map[string][]*x509.Certificate{}
		for _, v := range vin.Identity {
			if x5u := infoParam(v); x5u != "" {
				vc.Static[x5u] = chain
			}
		}
	}
	v, err := verify.New(vc)
	if err != nil {
		return false, err
	}
	r := v.Verify(ctx, vin)
	out := verifyOutput{Verstat: r.Verstat, ReasonCode: r.Code, ReasonText: r.Reason, Attest: r.Attest,
		OrigID: r.OrigID, TrustStore: r.TrustStore, SPC: r.SPC, X5U: r.X5U}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return false, err
	}
	return r.Verstat == verify.Passed, nil
}

// verifyInputFrom reads an INVITE or loose header lines.
func verifyInputFrom(in []byte, numbers *e164.Canonicalizer) (verify.Input, error) {
	var vin verify.Input
	var pai, from, to []string
	sc := bufio.NewScanner(bytes.NewReader(in))
	sc.Buffer(make([]byte, 0, 64<<10), sip.MaxMessage+1)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			if len(vin.Identity) > 0 || len(from) > 0 {
				break // end of headers
			}
			continue
		}
		name, val, ok := strings.Cut(line, ":")
		if !ok || strings.ContainsAny(name, " \t") && !strings.HasPrefix(strings.ToLower(name), "identity") {
			if strings.Contains(line, ";info=") { // a bare Identity value
				vin.Identity = append(vin.Identity, line)
			}
			continue
		}
		val = strings.TrimSpace(val)
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "identity", "y":
			vin.Identity = append(vin.Identity, val)
		case "p-asserted-identity":
			pai = append(pai, splitURIs(val)...)
		case "from", "f":
			from = append(from, val)
		case "to", "t":
			to = append(to, val)
		}
	}
	if len(vin.Identity) == 0 {
		return vin, errors.New("no Identity header on stdin")
	}
	for _, u := range append(pai, from...) {
		if tn, ok := tnOf(u, numbers); ok {
			vin.OrigTN = tn
			break
		}
	}
	for _, u := range to {
		if tn, ok := tnOf(u, numbers); ok {
			vin.DestTNs = append(vin.DestTNs, tn)
		}
	}
	return vin, nil
}

func splitURIs(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// tnOf extracts a canonical TN from a From/To/PAI value.
func tnOf(v string, numbers *e164.Canonicalizer) (string, bool) {
	u := v
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			u = v[i+1 : i+j]
		}
	} else if i := strings.IndexByte(v, ';'); i >= 0 && !strings.HasPrefix(v, "tel:") {
		u = v[:i]
	}
	d, global, ok := sip.TelephoneNumber([]byte(u), nil)
	if !ok {
		return "", false
	}
	n, err := numbers.Append(nil, d, global)
	if err != nil {
		return "", false
	}
	return string(n), true
}

// infoParam returns the info= URL of an Identity value.
func infoParam(v string) string {
	i := strings.Index(v, "info=")
	if i < 0 {
		return ""
	}
	rest := strings.TrimSpace(v[i+5:])
	if strings.HasPrefix(rest, "<") {
		if j := strings.IndexByte(rest, '>'); j > 0 {
			return rest[1:j]
		}
	}
	if j := strings.IndexByte(rest, ';'); j >= 0 {
		rest = rest[:j]
	}
	return strings.Trim(rest, "\"")
}
