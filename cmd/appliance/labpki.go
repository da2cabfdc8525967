package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/shakenline/shakenline/labpki"
)

func cmdLabPKI(args []string, e env) error {
	fs := flag.NewFlagSet("lab-pki", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	setUsage(fs, "appliance lab-pki --out DIR [--countries NAME,...]")
	out := fs.String("out", "", "output `DIR` (root.pem, intermediate.pem, sp.pem, sp.key)")
	countries := fs.String("countries", "", "extra CA hierarchies, one per `NAME[,NAME]` (e.g. US,FR,GLOBAL), under DIR/<NAME>/")
	spc := fs.String("spc", "1234", "service provider code in the TNAuthList")
	crl := fs.String("crl-url", "", "CRL distribution point `URL` placed in issued certificates")
	validFor := fs.Duration("valid-for", 365*24*time.Hour, "provider certificate lifetime")
	if err := parseFlags(fs, args, e); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("--out DIR is required")
	}
	o := labpki.Options{SPC: *spc, ValidFor: *validFor, Now: e.now(), CRLURL: *crl}
	for _, c := range strings.Split(*countries, ",") {
		if c = strings.TrimSpace(c); c != "" {
			o.Countries = append(o.Countries, c)
		}
	}
	if err := labpki.Generate(*out, o); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "lab PKI written to %s (root.pem, intermediate.pem, sp.pem, sp.key)\n", *out)
	return nil
}
