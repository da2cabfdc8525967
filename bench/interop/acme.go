package interop

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shakenline/shakenline/labsti"
	"github.com/shakenline/shakenline/tnauth"
)

// portACME is the first https port of the core host's governance: per
// jurisdiction, in name order, one port serving its STI-CA's ACME server
// (/acme/) and its STI-PA's token API (/sti-pa/).
const portACME = 8443

// governance is the network face of the policy administrators and CAs:
// the carriers' proxies obtain their certificates from it through ACME.
type governance struct {
	urls    map[Jurisdiction]string // https base per jurisdiction
	tlsRoot string                  // anchor of the https certificate
	mu      sync.Mutex
}

// startGovernance serves, in the core namespace, each jurisdiction's
// STI-CA (package labsti's ACME server issuing from the Authority's
// intermediate, lifetime 24 h, accepting tokens of the Authority's PA only)
// and STI-PA (the token API with one account per carrier of that CA).
// Every certificate issued is recorded in res.Governance.
func startGovernance(cfg Config, lb *lab, hosts []*carrierHost, auths map[Jurisdiction]*Authority, res *Result) (*governance, func(), error) {
	g := &governance{urls: map[Jurisdiction]string{}}
	tlsDir := filepath.Join(cfg.WorkDir, "tls")
	cert, err := labsti.ServerTLS(tlsDir, coreAddr.String())
	if err != nil {
		return nil, nil, err
	}
	g.tlsRoot = filepath.Join(tlsDir, "tls-root.pem")
	logf, err := os.Create(filepath.Join(cfg.WorkDir, "logs", "governance.log"))
	if err != nil {
		return nil, nil, fmt.Errorf("interop: %w", err)
	}
	log := slog.New(slog.NewTextHandler(logf, nil))
	var js []Jurisdiction
	for j := range auths {
		js = append(js, j)
	}
	slices.Sort(js)
	var servers []*http.Server
	stop := func() {
		for _, s := range servers {
			_ = s.Close()
		}
		logf.Close()
	}
	for i, j := range js {
		a := auths[j]
		base := fmt.Sprintf("https://%s:%d", coreAddr, portACME+i)
		g.urls[j] = base
		var accounts []labsti.Account
		bySPC := map[string]*carrierHost{}
		for _, h := range hosts {
			if h.CA == j {
				accounts = append(accounts, h.account)
				bySPC[h.spc] = h
			}
		}
		ca, err := labsti.NewCA(labsti.CAOptions{Issuer: a.Intermediate, PAKey: a.PA.Public(), URL: base, PAURL: base + "/sti-pa",
			Lifetime: 24 * time.Hour, Logger: log.With("ca", a.Name),
			OnIssue: func(leaf *x509.Certificate) {
				l, _, _ := tnauth.FromCertificate(leaf)
				carrier := ""
				for _, h := range bySPC {
					if tnEqual(h.tn, l) {
						carrier = h.Name
					}
				}
				g.mu.Lock()
				defer g.mu.Unlock()
				res.Governance = append(res.Governance, IssueRecord{Carrier: carrier, PA: a.PA.Name, CA: a.Name,
					SPC: strings.TrimPrefix(leaf.Subject.CommonName, "SHAKEN "), TNAuthList: describeTN(l), Kind: "ACME", NotAfter: leaf.NotAfter})
			}})
		if err != nil {
			stop()
			return nil, nil, err
		}
		mux := http.NewServeMux()
		mux.Handle("/acme/", ca)
		mux.Handle("/sti-pa/", labsti.NewPA(labsti.PAOptions{Key: a.PA.key, X5U: base + "/sti-pa/cert.pem", Accounts: accounts,
			Logger: log.With("pa", a.PA.Name)}))
		var ln net.Listener
		addr := netip.AddrPortFrom(coreAddr, uint16(portACME+i))
		if err := lb.core.Do(func() error {
			var err error
			ln, err = net.Listen("tcp4", addr.String())
			return err
		}); err != nil {
			stop()
			return nil, nil, fmt.Errorf("interop: governance %s: %w", addr, err)
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		servers = append(servers, srv)
		go func() {
			_ = srv.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}))
		}()
	}
	return g, stop, nil
}

func tnEqual(a, b tnauth.List) bool {
	x, err1 := tnauth.Marshal(a)
	y, err2 := tnauth.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

// acmeConfig is the YAML (trust: and acme:) with which a carrier's
// appliance obtains the carrier's certificate from its CA at start and
// publishes it under /acme/<side>/ of the carrier's repository. trust is
// written only when the flags do not give it.
func (g *governance) acmeConfig(cfg Config, h *carrierHost, side string, withTrust bool) string {
	base := g.urls[h.CA]
	var b strings.Builder
	if withTrust {
		fmt.Fprintf(&b, "trust:\n  %s: %s\n", h.CA, filepath.Join(cfg.WorkDir, "trust", string(h.CA)+".pem"))
	}
	fmt.Fprintf(&b, "acme:\n  directory: %s/acme/directory\n  spc: %q\n", base, h.spc)
	if len(h.tn.Ranges) > 0 {
		b.WriteString("  tn_ranges:\n")
		for _, r := range h.tn.Ranges {
			fmt.Fprintf(&b, "    - {start: %q, count: %d}\n", r.Start, r.Count)
		}
	}
	fmt.Fprintf(&b, "  organization: %q\n  spc_token:\n    api: %s/sti-pa\n    credentials: %s\n  tls_roots: %s\n  trust: [%s]\n",
		h.Display, base, filepath.Join(h.dir, "sti-pa.json"), g.tlsRoot, h.CA)
	fmt.Fprintf(&b, "  publish:\n    url: http://%s:%d/acme/%s/\n    dir: %s\n    timeout: 10s\n  state_dir: %s\n",
		h.addr(), portHTTP, side, filepath.Join(h.dir, "x5u", side), filepath.Join(h.dir, "acme-"+side))
	return b.String()
}

// acmeCurrent reads the certificate an appliance obtained: its x5u and,
// for a software key, the key file (state_dir/state.json, package
// certmgr).
func acmeCurrent(h *carrierHost, side string) (x5u, keyFile string, err error) {
	b, err := os.ReadFile(filepath.Join(h.dir, "acme-"+side, "state.json"))
	if err != nil {
		return "", "", fmt.Errorf("interop: %s: %w", h.Name, err)
	}
	var st struct {
		Current *struct {
			URL string `json:"url"`
			Key struct {
				File string `json:"file"`
			} `json:"key"`
		} `json:"current"`
	}
	if err := json.Unmarshal(b, &st); err != nil || st.Current == nil || st.Current.Key.File == "" {
		return "", "", fmt.Errorf("interop: %s: no current software certificate in the acme state (%v)", h.Name, err)
	}
	return st.Current.URL, st.Current.Key.File, nil
}
