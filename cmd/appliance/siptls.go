package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/netip"
	"os"
	"sync/atomic"

	"github.com/shakenline/shakenline/config"
	"github.com/shakenline/shakenline/fastpath"
)

// sipTLSCert is the SIP TLS certificate and key in use (tls_cert,
// tls_key): handshakes take it from here, so a reload (SIGHUP, POST
// /v1/admin/reload) that re-reads the files applies to the next handshake
// without a restart; connections already open keep theirs.
type sipTLSCert struct {
	p atomic.Pointer[tls.Certificate]
}

// load reads cfg's tls_cert and tls_key and, when they make a pair, puts
// them in use.
func (k *sipTLSCert) load(cfg config.Config) error {
	c, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return fmt.Errorf("tls_cert, tls_key: %w", err)
	}
	k.p.Store(&c)
	return nil
}

// streamConfig sets the SIP over TCP and TLS part of the fast path's
// configuration from cfg: the next hop and its transport, the TLS
// listener (the SIP TLS certificate, which is never the STI one, and
// client authentication), the trust anchors for TLS peers, udp_mtu and the
// connection limits (docs/CONFIG.md). It returns the SIP TLS certificate's
// holder (nil without tls_cert).
func streamConfig(cfg config.Config, fc *fastpath.Config) (*sipTLSCert, error) {
	if cfg.NextHop != "" {
		nh, tr, err := fastpath.ParseNextHop(cfg.NextHop)
		if err != nil {
			return nil, fmt.Errorf("next_hop: %w", err)
		}
		fc.NextHop, fc.NextHopTransport = nh, tr
	}
	fc.UDPMTU = cfg.UDPMTU
	fc.MaxConnections, fc.MaxPerSource, fc.IdleTimeout = cfg.MaxConnections, cfg.MaxConnectionsPerSource, cfg.ConnectionIdleTimeout
	var keys *sipTLSCert
	if cfg.TLSCert != "" {
		keys = &sipTLSCert{}
		if err := keys.load(cfg); err != nil {
			return nil, err
		}
	}
	var anchors *x509.CertPool
	if cfg.TLSCA != "" {
		b, err := os.ReadFile(cfg.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("tls_ca: %w", err)
		}
		anchors = x509.NewCertPool()
		if !anchors.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("tls_ca: %s: no PEM certificate", cfg.TLSCA)
		}
	}
	// Connections we open: the peer's certificate verified against
	// tls_ca (the system's anchors without it); ours presented when the
	// peer asks (mutual TLS).
	fc.TLSClient = &tls.Config{RootCAs: anchors, MinVersion: tls.VersionTLS12}
	if keys != nil {
		fc.TLSClient.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return keys.p.Load(), nil }
	}
	if cfg.SIPTLS != "" {
		ap, err := netip.ParseAddrPort(cfg.SIPTLS)
		if err != nil {
			return nil, fmt.Errorf("sip_tls: %w", err)
		}
		srv := &tls.Config{MinVersion: tls.VersionTLS12, ClientCAs: anchors}
		if keys != nil {
			srv.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return keys.p.Load(), nil }
		}
		switch cfg.TLSClientAuth {
		case "request":
			srv.ClientAuth = tls.VerifyClientCertIfGiven
		case "require":
			srv.ClientAuth = tls.RequireAndVerifyClientCert
		}
		fc.ListenTLS, fc.TLSServer = ap, srv
	}
	return keys, nil
}
