package interop

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shakenline/shakenline/internal/netns"
	"github.com/shakenline/shakenline/passport"
)

// ErrTimeout is a call that got no final response.
var ErrTimeout = errors.New("interop: no final response")

// Delivery is what a terminating UAS saw of one INVITE.
type Delivery struct {
	At         time.Time
	Verstat    string // from P-Asserted-Identity (or From)
	Identities int
	Attest     string // attest of the first SHAKEN PASSporT
	OrigTN     string
	X5U        string
	Name       string // display name of P-Asserted-Identity (or From): verified Rich Call Data
	Logo       bool   // a Call-Info element with purpose=icon marked verified
}

// uas is a terminating carrier's switch: it records each INVITE's verstat
// and PASSporT and answers 200 OK by the top Via.
type uas struct {
	conn *net.UDPConn
	mu   sync.Mutex
	got  map[string]Delivery // by Call-ID, first arrival
}

var (
	verstatRE = regexp.MustCompile(`verstat=([A-Za-z-]+)`)
	displayRE = regexp.MustCompile(`^"((?:[^"\\]|\\.)*)"`)
)

func newUAS(ns *netns.NS, addr netip.AddrPort) (*uas, error) {
	u := &uas{got: map[string]Delivery{}}
	err := ns.Do(func() error {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		u.conn = c
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("interop: uas %s: %w", addr, err)
	}
	go u.serve()
	return u, nil
}

func (u *uas) serve() {
	buf := make([]byte, 65536)
	for {
		n, _, err := u.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		msg := string(buf[:n])
		if !strings.HasPrefix(msg, "INVITE ") {
			continue
		}
		h := headers(msg)
		d := Delivery{At: time.Now()}
		who := first(h["p-asserted-identity"])
		if who == "" {
			who = first(h["from"])
		}
		if m := verstatRE.FindStringSubmatch(who); m != nil {
			d.Verstat = m[1]
		}
		if m := displayRE.FindStringSubmatch(who); m != nil {
			d.Name = m[1]
		}
		for _, ci := range h["call-info"] {
			if strings.Contains(ci, "purpose=icon;verified") {
				d.Logo = true
			}
		}
		d.Identities = len(h["identity"])
		for _, v := range h["identity"] {
			if id, err := passport.ParseIdentity(v); err == nil {
				d.Attest, d.OrigTN, d.X5U = id.Payload.Attest, id.Payload.Orig.TN, id.Header.X5U
				break
			}
		}
		cid := first(h["call-id"])
		u.mu.Lock()
		if _, dup := u.got[cid]; !dup {
			u.got[cid] = d
		}
		u.mu.Unlock()
		resp, dst, ok := response(msg, h, 200, "OK")
		if ok {
			_, _ = u.conn.WriteToUDPAddrPort(resp, dst)
		}
	}
}

func (u *uas) delivery(callID string) (Delivery, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	d, ok := u.got[callID]
	return d, ok
}

func (u *uas) close() { u.conn.Close() }

// headers splits a SIP message's header section: lower-case name (compact
// forms expanded for the ones used here) to values in order.
func headers(msg string) map[string][]string {
	head, _, _ := strings.Cut(msg, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	out := map[string][]string{}
	for _, l := range lines[1:] {
		name, val, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		name = strings.ToLower(strings.TrimSpace(name))
		switch name {
		case "v":
			name = "via"
		case "f":
			name = "from"
		case "t":
			name = "to"
		case "i":
			name = "call-id"
		case "y":
			name = "identity"
		}
		out[name] = append(out[name], strings.TrimSpace(val))
	}
	return out
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// response builds a response to the request msg and returns where the top
// Via says to send it (RFC 3261 section 18.2.2: rport/received honoured).
func response(msg string, h map[string][]string, code int, reason string) ([]byte, netip.AddrPort, bool) {
	if len(h["via"]) == 0 {
		return nil, netip.AddrPort{}, false
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, reason)
	for _, v := range h["via"] {
		fmt.Fprintf(&b, "Via: %s\r\n", v)
	}
	fmt.Fprintf(&b, "From: %s\r\nTo: %s;tag=uas1\r\nCall-ID: %s\r\nCSeq: %s\r\nContent-Length: 0\r\n\r\n",
		first(h["from"]), first(h["to"]), first(h["call-id"]), first(h["cseq"]))
	top := strings.TrimSpace(strings.Split(h["via"][0], ",")[0])
	dst, ok := viaAddr(top)
	return b.Bytes(), dst, ok
}

// viaAddr is the sent-by of a Via value, with rport/received applied.
func viaAddr(v string) (netip.AddrPort, bool) {
	f := strings.Fields(v) // "SIP/2.0/UDP host:port;params"
	if len(f) < 2 {
		return netip.AddrPort{}, false
	}
	rest := strings.Join(f[1:], "")
	sentBy, params, _ := strings.Cut(rest, ";")
	host, port := sentBy, "5060"
	if h, p, err := net.SplitHostPort(sentBy); err == nil {
		host, port = h, p
	}
	for _, p := range strings.Split(params, ";") {
		k, val, _ := strings.Cut(p, "=")
		switch strings.ToLower(k) {
		case "received":
			host = val
		case "rport":
			if val != "" {
				port = val
			}
		}
	}
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return netip.AddrPort{}, false
	}
	pn, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a, uint16(pn)), true
}

// uac is an originating carrier's SBC trunk: it sends INVITEs from its
// trunk address and waits for the final response.
type uac struct {
	conn *net.UDPConn
	addr netip.AddrPort
	mu   sync.Mutex
	wait map[string]chan final
}

func newUAC(ns *netns.NS, addr netip.AddrPort) (*uac, error) {
	c := &uac{addr: addr, wait: map[string]chan final{}}
	err := ns.Do(func() error {
		conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		c.conn = conn
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("interop: uac %s: %w", addr, err)
	}
	go c.serve()
	return c, nil
}

func (c *uac) serve() {
	buf := make([]byte, 65536)
	for {
		n, _, err := c.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		msg := string(buf[:n])
		if !strings.HasPrefix(msg, "SIP/2.0 ") || len(msg) < 11 {
			continue
		}
		code, err := strconv.Atoi(msg[8:11])
		if err != nil || code < 200 {
			continue
		}
		h := headers(msg)
		c.mu.Lock()
		ch := c.wait[first(h["call-id"])]
		c.mu.Unlock()
		if ch != nil {
			select {
			case ch <- final{code, first(h["reason"])}:
			default:
			}
		}
	}
}

func (c *uac) close() { c.conn.Close() }

// final is a final response: its code and Reason header (RFC 9410).
type final struct {
	code   int
	reason string
}

// invite is one outgoing INVITE's content.
type invite struct {
	CallID    string
	Caller    string // E.164 digits in From and P-Asserted-Identity
	Callee    string // E.164 digits in To and the Request-URI
	Term      netip.AddrPort
	Identity  string // pre-signed Identity header value, or ""
	Diversion string // Diversion header value (a forwarded call), or ""
}

func (c *uac) build(iv invite) []byte {
	sdp := "v=0\r\no=- 1 1 IN IP4 " + c.addr.Addr().String() + "\r\ns=-\r\nc=IN IP4 " + c.addr.Addr().String() +
		"\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	var b bytes.Buffer
	host := c.addr.Addr().String()
	tag, _, _ := strings.Cut(iv.CallID, "@") // token characters only (RFC 3261 section 25.1)
	fmt.Fprintf(&b, "INVITE sip:+%s@%s SIP/2.0\r\n", iv.Callee, iv.Term)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s;branch=z9hG4bK-%s\r\n", c.addr, tag)
	fmt.Fprintf(&b, "Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <sip:+%s@%s;user=phone>;tag=uac-%s\r\n", iv.Caller, host, tag)
	fmt.Fprintf(&b, "To: <sip:+%s@%s;user=phone>\r\n", iv.Callee, iv.Term.Addr())
	fmt.Fprintf(&b, "Call-ID: %s\r\nCSeq: 1 INVITE\r\n", iv.CallID)
	fmt.Fprintf(&b, "P-Asserted-Identity: <sip:+%s@%s;user=phone>\r\n", iv.Caller, host)
	fmt.Fprintf(&b, "Contact: <sip:%s>\r\n", c.addr)
	if iv.Diversion != "" {
		fmt.Fprintf(&b, "Diversion: %s\r\n", iv.Diversion)
	}
	if iv.Identity != "" {
		fmt.Fprintf(&b, "Identity: %s\r\n", iv.Identity)
	}
	fmt.Fprintf(&b, "Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s", len(sdp), sdp)
	return b.Bytes()
}

// call sends iv to the originating proxy and returns the final response
// code, when it was sent and the time it took. One retransmission after 1 s (RFC 3261
// Timer A is 500 ms; the lab network does not lose packets, so a late one
// only guards against a slow start), ErrTimeout after limit.
func (c *uac) call(iv invite, proxy netip.AddrPort, limit time.Duration) (final, time.Time, time.Duration, error) {
	ch := make(chan final, 1)
	c.mu.Lock()
	c.wait[iv.CallID] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.wait, iv.CallID)
		c.mu.Unlock()
	}()
	pkt := c.build(iv)
	start := time.Now()
	if _, err := c.conn.WriteToUDPAddrPort(pkt, proxy); err != nil {
		return final{}, start, 0, fmt.Errorf("interop: send: %w", err)
	}
	retx := time.NewTimer(time.Second)
	defer retx.Stop()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		select {
		case f := <-ch:
			return f, start, time.Since(start), nil
		case <-retx.C:
			_, _ = c.conn.WriteToUDPAddrPort(pkt, proxy)
		case <-deadline.C:
			return final{}, start, time.Since(start), ErrTimeout
		}
	}
}
