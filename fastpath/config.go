package fastpath

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/shakenline/shakenline/audit"
	"github.com/shakenline/shakenline/bpf"
	"github.com/shakenline/shakenline/claims"
	"github.com/shakenline/shakenline/credential"
	"github.com/shakenline/shakenline/e164"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/policy"
)

// Mode selects what the loops do with an initial INVITE.
type Mode int

const (
	Proxy    Mode = iota // stateless proxy to the next hop
	Redirect             // 302 with Identity back to the sender
	Inline               // XDP-steered, reinjected with original addresses
)

func (m Mode) String() string {
	switch m {
	case Proxy:
		return "proxy"
	case Redirect:
		return "redirect"
	case Inline:
		return "inline"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// ParseMode parses "proxy", "redirect" or "inline".
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(s) {
	case "", "proxy":
		return Proxy, nil
	case "redirect":
		return Redirect, nil
	case "inline":
		return Inline, nil
	}
	return 0, fmt.Errorf("fastpath: unknown mode %q (want proxy, redirect or inline)", s)
}

// DefaultRecvBuffer is Config.RecvBuffer's default.
const DefaultRecvBuffer = 4 << 20

// Config configures a Server. Zero fields take the defaults documented here.
type Config struct {
	Mode      Mode
	Listen    netip.AddrPort // the loops listen here for UDP, and for TCP in proxy and redirect modes
	Advertise netip.AddrPort // address in our Via; default Listen (required when Listen is unspecified)
	NextHop   netip.AddrPort // proxy mode: where requests go; unset: by Request-URI (IP literal hosts)
	Loops     int            // event loops; default GOMAXPROCS

	// SIP over TCP and TLS (docs/ARCHITECTURE.md, "SIP over TCP and TLS").
	NextHopTransport Transport      // how requests reach NextHop: UDP (default), TCP or TLS
	ListenTLS        netip.AddrPort // SIP over TLS listens here (with TLSServer)
	TLSServer        *tls.Config    // the TLS listener's: certificate, client authentication; nil: no TLS listener
	TLSClient        *tls.Config    // connections we open over TLS: trust anchors (nil: the system's), our certificate; TLS 1.2 minimum forced, verification always
	UDPMTU           int            // a request that would leave over UDP larger than this goes over TCP (RFC 3261 section 18.1.1); 0: off
	MaxConnections   int            // inbound TCP and TLS connections at most; default DefaultMaxConnections
	MaxPerSource     int            // inbound connections from one address at most; default DefaultMaxPerSource
	IdleTimeout      time.Duration  // a connection without traffic this long is closed; default DefaultIdleTimeout
	MessageTimeout   time.Duration  // an incomplete message older than this closes its connection; default DefaultMessageTimeout

	Builder *passport.Builder
	Signer  hsm.Dispatcher
	Policy  *policy.Holder
	Numbers *e164.Canonicalizer

	// Credential, when set, replaces Builder, Signer and CertFingerprint:
	// each call reads it once and signs, stamps and audits with that one
	// credential, so a renewal that swaps it (certmgr) changes key and x5u
	// together, between calls (docs/KEYS.md, "A renewal").
	Credential *credential.Holder

	Freshness    time.Duration    // a Date within this of now becomes iat; default 60s
	StaleDate    claims.StaleDate // a Date outside Freshness: claims.StaleRefuse (forward unsigned, default) or claims.StaleReplace
	Budget       time.Duration    // per-call signing budget before P-Identity-Bypass; default 100ms
	ResignSigned bool             // also sign INVITEs that already carry a SHAKEN Identity
	MaxInFlight  int              // signing jobs per loop; default 4096
	SocketBuffer int              // SO_SNDBUF bytes; default 4 MiB
	// RecvBuffer is SO_RCVBUF, the one queue in front of a loop: what
	// it holds is what a datagram may wait behind. The kernel counts
	// about 2.3 KiB per 1 KB INVITE against twice the value set
	// (socket(7)), so the default 4 MiB holds about 3,600: 145 ms at
	// 25,000 calls/s a loop, well below the 500 ms after
	// which a UDP caller retransmits (RFC 3261 T1), so a burst or a
	// scheduling stall is absorbed, not dropped. A smaller buffer bounds
	// the wait harder and drops what does not fit.
	RecvBuffer int

	// Inline mode: where steered INVITEs come from and how they leave.
	Audit           *audit.Log      // one record per signed call; nil: none
	CertFingerprint string          // for the audit records
	Verifier        Verifier        // terminating side (policy actions verify, verify-reject); nil: such calls pass unverified
	VerifyWorkers   int             // default GOMAXPROCS
	VerifyBudget    time.Duration   // per-call verification deadline, x5u and CRL fetches included; default 1s
	Steering        *bpf.Steering   // decodes the XDP metadata; its heartbeat is kept fresh from a loop tick
	Reinjector      *bpf.Reinjector // sends with the original source address

	Logger *slog.Logger
	Now    func() time.Time // default time.Now
}
