package compare

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// anonFrom replaces the From header of a relayed INVITE: RFC 3323 section
// 4.1.1.3 anonymous identity, no telephone number to sign.
const anonFrom = `From: "Anonymous" <sip:anonymous@anonymous.invalid>`

// Anonymize appends to dst a copy of the SIP request pkt in which, for an
// INVITE, the From URI is replaced by sip:anonymous@anonymous.invalid (its
// parameters, the tag, kept) and P-Asserted-Identity headers are dropped;
// other messages are copied unchanged. The body is copied as it is, so
// Content-Length stays right.
func Anonymize(dst, pkt []byte) []byte {
	if !bytes.HasPrefix(pkt, []byte("INVITE ")) {
		return append(dst, pkt...)
	}
	end := bytes.Index(pkt, []byte("\r\n\r\n"))
	if end < 0 {
		return append(dst, pkt...)
	}
	head, body := pkt[:end+2], pkt[end+2:]
	for len(head) > 0 {
		i := bytes.Index(head, []byte("\r\n"))
		if i < 0 {
			i = len(head) - 2
		}
		line := head[:i+2]
		head = head[i+2:]
		name, _, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			dst = append(dst, line...)
			continue
		}
		switch n := string(bytes.ToLower(bytes.TrimSpace(name))); n {
		case "p-asserted-identity":
			continue
		case "from", "f":
			gt := bytes.IndexByte(line, '>')
			if gt < 0 {
				dst = append(dst, line...)
				continue
			}
			dst = append(dst, anonFrom...)
			dst = append(dst, line[gt+1:]...)
		default:
			dst = append(dst, line...)
		}
	}
	return append(dst, body...)
}

// Relay receives datagrams on one loopback socket, anonymizes INVITEs and
// forwards everything to Target. Datagrams from Target (responses routed
// back by our source port) are counted and dropped: loss and latency are
// measured at the sink.
type Relay struct {
	conn              *net.UDPConn
	target            netip.AddrPort
	wg                sync.WaitGroup
	Forwarded, Backed atomic.Uint64
}

// NewRelay listens on 127.0.0.1 (any port) and forwards to target.
func NewRelay(target netip.AddrPort) (*Relay, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("compare: relay: %w", err)
	}
	_ = c.SetReadBuffer(4 << 20)
	_ = c.SetWriteBuffer(4 << 20)
	r := &Relay{conn: c, target: target}
	r.wg.Add(1)
	go r.loop()
	return r, nil
}

// Addr is where the generator sends.
func (r *Relay) Addr() netip.AddrPort { return r.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (r *Relay) loop() {
	defer r.wg.Done()
	in := make([]byte, 65536)
	out := make([]byte, 0, 65536)
	for {
		n, src, err := r.conn.ReadFromUDPAddrPort(in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if src == r.target {
			r.Backed.Add(1)
			continue
		}
		out = Anonymize(out[:0], in[:n])
		if _, err := r.conn.WriteToUDPAddrPort(out, r.target); err == nil {
			r.Forwarded.Add(1)
		}
	}
}

// Close stops the relay.
func (r *Relay) Close() error {
	err := r.conn.Close()
	r.wg.Wait()
	return err
}
