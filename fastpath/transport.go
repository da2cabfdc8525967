package fastpath

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"

	"github.com/shakenline/shakenline/sip"
)

// Transport is how a SIP message travels: UDP datagrams, or a TCP or TLS
// byte stream (RFC 3261 section 18).
type Transport uint8

const (
	UDP Transport = iota
	TCP
	TLS
	nTransports
)

var transportNames = [nTransports]string{"udp", "tcp", "tls"}

// viaTokens are the transport tokens of a Via's sent-protocol (RFC 3261
// section 20.42); all three are three bytes, so a stamped Via can switch
// transport in place (udp_mtu).
var viaTokens = [nTransports]string{"UDP", "TCP", "TLS"}

func (t Transport) String() string {
	if t < nTransports {
		return transportNames[t]
	}
	return fmt.Sprintf("transport(%d)", int(t))
}

// stream reports whether t is connection-oriented.
func (t Transport) stream() bool { return t == TCP || t == TLS }

// ParseTransport parses "udp", "tcp" or "tls" (any case).
func ParseTransport(s string) (Transport, error) {
	for i, n := range transportNames {
		if strings.EqualFold(s, n) {
			return Transport(i), nil
		}
	}
	return 0, fmt.Errorf("fastpath: unknown transport %q (want udp, tcp or tls)", s)
}

// ParseNextHop parses the next hop as configured (sip.ParseHop): ADDR:PORT
// (UDP), or sip:ADDR:PORT;transport=udp|tcp|tls (sips: is TLS).
func ParseNextHop(s string) (netip.AddrPort, Transport, error) {
	ap, tr, err := sip.ParseHop(s)
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	t, err := ParseTransport(tr)
	return ap, t, err
}

// target is where a message leaves for: an address over a transport, and
// for a stream the connection it goes on (a response on the connection
// its request came on; a request on the loop's connection to that address,
// see peer.go). alt is the TCP connection to the same address for a UDP
// request that may grow past udp_mtu once stamped (set by the router when
// the message is handed to a signer goroutine, which cannot open one).
type target struct {
	addr netip.AddrPort
	tr   Transport
	conn *conn
	alt  *conn
}

// ingress is where the message in hand came from: its transport and, for a
// stream, its connection (responses to a request go back on it, RFC 3261
// section 18.2.2).
type ingress struct {
	tr   Transport
	conn *conn // nil for UDP
}

// connParam is our Via's parameter naming the connection a request came
// on: the proxy is stateless, so the connection its responses go back on
// travels in our Via (stampRequestEdit, responseTarget), as Kamailio's ;i=
// does.
const connParam = ";i="

// appendConnID appends our Via's connection parameter for id.
func appendConnID(dst []byte, id uint64) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, connParam...)
	for i := 60; i >= 0; i -= 4 {
		dst = append(dst, hex[(id>>uint(i))&0xf])
	}
	return dst
}

// viaConnID finds the connection parameter in our Via value v (16 hex
// digits after ";i=", case-insensitive) and returns its id, 0 when absent.
func viaConnID(v []byte) uint64 {
	for i := 0; i+len(connParam)+16 <= len(v); i++ {
		if v[i] != ';' || (v[i+1] != 'i' && v[i+1] != 'I') || v[i+2] != '=' {
			continue
		}
		var id uint64
		ok := true
		for _, c := range v[i+3 : i+3+16] {
			switch {
			case c >= '0' && c <= '9':
				id = id<<4 | uint64(c-'0')
			case c >= 'a' && c <= 'f':
				id = id<<4 | uint64(c-'a'+10)
			case c >= 'A' && c <= 'F':
				id = id<<4 | uint64(c-'A'+10)
			default:
				ok = false
			}
		}
		if ok && (i+3+16 == len(v) || v[i+3+16] == ';' || v[i+3+16] == ' ' || v[i+3+16] == '\t') {
			return id
		}
	}
	return 0
}

// viaTransport is the transport a Via names (UDP when it names another,
// such as SCTP or WS, which the fast path does not speak).
func viaTransport(pkt []byte, v *sip.Via) Transport {
	t := v.Transport.In(pkt)
	switch {
	case bytes.EqualFold(t, []byte("TCP")):
		return TCP
	case bytes.EqualFold(t, []byte("TLS")):
		return TLS
	}
	return UDP
}

// uriTransport is the transport a Request-URI asks for (RFC 3261 sections
// 19.1.1 and 26.2): sips: is TLS, else its transport parameter, else UDP.
func uriTransport(u []byte) Transport {
	if len(u) >= 5 && bytes.EqualFold(u[:5], []byte("sips:")) {
		return TLS
	}
	if i := bytes.IndexAny(u, "?>"); i >= 0 {
		u = u[:i]
	}
	for i := 0; i+len(";transport=") <= len(u); i++ {
		if u[i] != ';' || !bytes.EqualFold(u[i:i+len(";transport=")], []byte(";transport=")) {
			continue
		}
		v := u[i+len(";transport="):]
		if j := bytes.IndexByte(v, ';'); j >= 0 {
			v = v[:j]
		}
		switch {
		case bytes.EqualFold(v, []byte("tcp")):
			return TCP
		case bytes.EqualFold(v, []byte("tls")):
			return TLS
		}
		return UDP
	}
	return UDP
}
