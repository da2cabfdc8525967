package sip

import (
	"fmt"
	"net/netip"
	"strings"
)

// ParseHop parses a hop as configured (the appliance's next hop): ADDR:PORT,
// reached over UDP, or a SIP URI with an IP literal host,
// sip:ADDR[:PORT][;transport=udp|tcp|tls] or sips:ADDR[:PORT] (TLS; RFC
// 3261 sections 19.1 and 26.2). The port defaults to 5060, 5061 for TLS.
// The transport is returned in lower case.
func ParseHop(s string) (netip.AddrPort, string, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Zone() == "" && ap.Port() != 0 {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), "udp", nil
	}
	bad := func() (netip.AddrPort, string, error) {
		return netip.AddrPort{}, "", fmt.Errorf("sip: hop %q: want ADDR:PORT or sip:ADDR:PORT;transport=udp|tcp|tls", s)
	}
	rest, tr := "", "udp"
	switch {
	case len(s) > 5 && strings.EqualFold(s[:5], "sips:"):
		rest, tr = s[5:], "tls"
	case len(s) > 4 && strings.EqualFold(s[:4], "sip:"):
		rest = s[4:]
	default:
		return bad()
	}
	hostport, params, _ := strings.Cut(rest, ";")
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, v, _ := strings.Cut(p, "=")
		if !strings.EqualFold(k, "transport") {
			continue
		}
		v = strings.ToLower(v)
		if v != "udp" && v != "tcp" && v != "tls" || tr == "tls" && v != "tls" {
			return bad()
		}
		tr = v
	}
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]"))
		if err != nil {
			return bad()
		}
		port := uint16(5060)
		if tr == "tls" {
			port = 5061
		}
		ap = netip.AddrPortFrom(a, port)
	}
	if ap.Addr().Zone() != "" || ap.Port() == 0 {
		return bad()
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), tr, nil
}
