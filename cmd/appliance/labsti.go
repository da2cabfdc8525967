package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/shakenline/shakenline/labsti"
)

// cmdLabSTI runs the lab STI-PA and STI-CA (package labsti) until ctx ends.
func cmdLabSTI(ctx context.Context, args []string, e env) error {
	fs := flag.NewFlagSet("lab-sti", flag.ContinueOnError)
	setUsage(fs, "appliance lab-sti --listen ADDR:PORT --out DIR [flags]")
	listen := fs.String("listen", "", "https `ADDR:PORT` of the ACME server, the STI-PA token API and /lab")
	out := fs.String("out", "", "lab `DIR`: keys and certificates kept across runs (root.pem, intermediate.pem, sti-pa.pem, tls-root.pem, stipa-<SPC>.json)")
	crlListen := fs.String("crl-listen", "", "plain http `ADDR:PORT` for the CRLs (default: --listen's port + 1)")
	url := fs.String("url", "", "public https `URL` of --listen (default https://ADDR:PORT)")
	role := fs.String("role", labsti.RoleBoth, "run both, only the STI-PA (pa) or only the STI-CA (ca; trusts DIR/sti-pa.pem)")
	spcs := fs.String("spc", "1234", "service provider codes the STI-PA admits, `SPC[,SPC]`")
	lifetime := fs.Duration("lifetime", 10*time.Minute, "lifetime of issued certificates")
	tokenTTL := fs.Duration("token-ttl", time.Hour, "lifetime of SPC tokens")
	if err := parseFlags(fs, args, e); err != nil {
		return err
	}
	if *listen == "" || *out == "" {
		return errors.New("--listen ADDR:PORT and --out DIR are required")
	}
	cfg := labsti.Config{Dir: *out, Listen: *listen, CRLListen: *crlListen, URL: *url, Role: *role,
		Lifetime: *lifetime, TokenTTL: *tokenTTL, Logger: newLogger(e, "info")}
	for _, s := range strings.Split(*spcs, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.SPCs = append(cfg.SPCs, s)
		}
	}
	s, err := labsti.New(cfg)
	if err != nil {
		return err
	}
	if *role != labsti.RolePA {
		fmt.Fprintf(e.stdout, "STI-CA ACME directory: %s (trust anchor %s, lifetime %v)\n", s.DirectoryURL(), filepath.Join(*out, "root.pem"), *lifetime)
	}
	if *role != labsti.RoleCA {
		fmt.Fprintf(e.stdout, "STI-PA token API: %s (credentials %s)\n", s.PAURL(), s.CredentialsFile(cfg.SPCs[0]))
	}
	fmt.Fprintf(e.stdout, "https anchor: %s; faults: POST https://%s/lab/fault\n", filepath.Join(*out, "tls-root.pem"), *listen)
	return s.Run(ctx)
}
