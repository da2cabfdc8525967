package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/netip"
	"os"

	"github.com/shakenline/shakenline/config"
	"github.com/shakenline/shakenline/fastpath"
)

// streamConfig sets the SIP over TCP and TLS part of the fast path's
// configuration from cfg: the next hop and its transport, the TLS
// listener (the SIP TLS certificate, which is never the STI one, and
// client authentication), the trust anchors for TLS peers, udp_mtu and the
// connection limits (docs/CONFIG.md).
func streamConfig(cfg config.Config, fc *fastpath.Config) error {
	if cfg.NextHop != "" {
		nh, tr, err := fastpath.ParseNextHop(cfg.NextHop)
		if err != nil {
			return fmt.Errorf("next_hop: %w", err)
		}
		fc.NextHop, fc.NextHopTransport = nh, tr
	}
	fc.UDPMTU = cfg.UDPMTU
	fc.MaxConnections, fc.MaxPerSource, fc.IdleTimeout = cfg.MaxConnections, cfg.MaxConnectionsPerSource, cfg.ConnectionIdleTimeout
	var certs []tls.Certificate
	if cfg.TLSCert != "" {
		c, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("tls_cert, tls_key: %w", err)
		}
		certs = []tls.Certificate{c}
	}
	var anchors *x509.CertPool
	if cfg.TLSCA != "" {
		b, err := os.ReadFile(cfg.TLSCA)
		if err != nil {
			return fmt.Errorf("tls_ca: %w", err)
		}
		anchors = x509.NewCertPool()
		if !anchors.AppendCertsFromPEM(b) {
			return fmt.Errorf("tls_ca: %s: no PEM certificate", cfg.TLSCA)
		}
	}
	// Connections we open: the peer's certificate verified against
	// tls_ca (the system's anchors without it); ours presented when the
	// peer asks (mutual TLS).
	fc.TLSClient = &tls.Config{RootCAs: anchors, Certificates: certs, MinVersion: tls.VersionTLS12}
	if cfg.SIPTLS != "" {
		ap, err := netip.ParseAddrPort(cfg.SIPTLS)
		if err != nil {
			return fmt.Errorf("sip_tls: %w", err)
		}
		srv := &tls.Config{Certificates: certs, MinVersion: tls.VersionTLS12, ClientCAs: anchors}
		switch cfg.TLSClientAuth {
		case "request":
			srv.ClientAuth = tls.VerifyClientCertIfGiven
		case "require":
			srv.ClientAuth = tls.RequireAndVerifyClientCert
		}
		fc.ListenTLS, fc.TLSServer = ap, srv
	}
	return nil
}
