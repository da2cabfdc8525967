package interop

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shakenline/shakenline/passport"
)

// ecSigner signs PASSporT digests with a software key (for the pre-signed
// cases: what another carrier's STI-AS put on the wire).
type ecSigner struct{ key *ecdsa.PrivateKey }

func (s ecSigner) SignDigest(_ context.Context, d *[32]byte, sig *[64]byte) error {
	r, ss, err := ecdsa.Sign(rand.Reader, s.key, d[:])
	if err != nil {
		return err
	}
	r.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	return nil
}

var (
	identityMu sync.Mutex
	identities = map[int]string{} // call ID -> pre-signed Identity used
)

// presign returns the Identity header value and the (possibly tampered)
// caller and callee the INVITE carries.
func presign(c Call, o *carrierHost) (id, caller, callee string, err error) {
	cred, file := o.cred, "sp.pem"
	switch c.Kind {
	case KindExpired:
		cred, file = o.expired, "expired.pem"
	case KindRevoked:
		cred, file = o.revoke, "revoked.pem"
	}
	b, err := passport.NewBuilder(o.x5u(file))
	if err != nil {
		return "", "", "", err
	}
	dest := c.Callee.TN
	if c.Via != "" { // forwarded: the caller dialled the forwarding number
		dest = c.Forwarder.TN
	}
	cl := &passport.Claims{Attest: c.Trunk, Orig: []byte(c.Caller.TN), Dest: [][]byte{[]byte(dest)}, IAT: time.Now().Unix()}
	if _, err := rand.Read(cl.OrigID[:]); err != nil {
		return "", "", "", err
	}
	id, err = passport.Sign(context.Background(), ecSigner{cred.Key}, b, cl)
	if err != nil {
		return "", "", "", err
	}
	caller, callee = c.Caller.TN, c.Callee.TN
	switch c.Kind {
	case KindTamperOrig:
		caller = bumpLast(caller)
	case KindTamperDest:
		callee = bumpLast(callee)
	case KindTamperSig:
		id = flipSignature(id)
	}
	return id, caller, callee, nil
}

func bumpLast(tn string) string {
	b := []byte(tn)
	b[len(b)-1] = '0' + (b[len(b)-1]-'0'+1)%10
	return string(b)
}

// flipSignature changes one bit of the PASSporT signature.
func flipSignature(id string) string {
	tok, params, _ := strings.Cut(id, ";")
	parts := strings.Split(tok, ".")
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) == 0 {
		return id
	}
	sig[10] ^= 0x01
	parts[2] = base64.RawURLEncoding.EncodeToString(sig)
	return strings.Join(parts, ".") + ";" + params
}

func place(c Call, hosts map[string]*carrierHost) CallResult {
	return placeWith(c, hosts, "")
}

func lastIdentity(c Call, _ map[string]*carrierHost) string {
	identityMu.Lock()
	defer identityMu.Unlock()
	return identities[c.ID]
}

// placeWith places one call; identity, when set, is sent as it is (the
// replay case).
func placeWith(c Call, hosts map[string]*carrierHost, identity string) CallResult {
	o, t := hosts[c.Orig], hosts[c.Term]
	r := CallResult{Call: c}
	iv := invite{CallID: fmt.Sprintf("call-%04d-%s-%s@interop.lab", c.ID, c.Orig, c.Term),
		Caller: c.Caller.TN, Callee: c.Callee.TN, Term: netip.AddrPortFrom(t.addr(), portIn)}
	sender := o // the carrier whose trunk and originating proxy send the call
	if c.Via != "" {
		// Forwarded: the forwarding carrier's SBC sends the call on with a
		// Diversion header naming the number that forwarded it.
		sender = hosts[c.Via]
		iv.Diversion = fmt.Sprintf("<sip:+%s@%s;user=phone>;reason=unconditional;counter=1", c.Forwarder.TN, sender.addr())
	}
	switch {
	case identity != "":
		iv.Identity = identity
	case c.Signer == "pre-signed":
		id, caller, callee, err := presign(c, o)
		if err != nil {
			r.Got.Err = err.Error()
			return r
		}
		iv.Identity, iv.Caller, iv.Callee = id, caller, callee
		identityMu.Lock()
		identities[c.ID] = id
		identityMu.Unlock()
	}
	r.CallID = iv.CallID
	f, start, lat, err := sender.uacs[c.Trunk].call(iv, netip.AddrPortFrom(sender.addr(), portOut), 5*time.Second)
	r.Latency, r.Got.Code, r.Got.Reason = lat, f.code, f.reason
	r.Trace.Sent, r.Trace.Final = start, start.Add(lat)
	if err != nil {
		r.Got.Err = err.Error()
	}
	if d, ok := t.uas.delivery(iv.CallID); ok {
		r.Trace.Delivered = d.At
		r.Got.Delivered = true
		r.Got.Verstat, r.Got.Attest, r.Got.OrigTN = d.Verstat, d.Attest, d.OrigTN
		r.Got.Name, r.Got.Logo = d.Name, d.Logo
	}
	r.Pass = matches(c, r.Got)
	return r
}

// matches compares an outcome with the expectation: delivery, verstat,
// the attest and orig carried end to end, or the reject code.
func matches(c Call, g Outcome) bool {
	e := c.Expect
	if g.Err != "" {
		return false
	}
	if e.Delivered != g.Delivered {
		return false
	}
	if !e.Delivered {
		return g.Code == e.Code
	}
	if g.Code != 200 || g.Verstat != e.Verstat || g.Name != e.Name || g.Logo != e.Logo {
		return false
	}
	if e.Attest != "" && (g.Attest != e.Attest || g.OrigTN != c.Caller.TN) {
		return false
	}
	return true
}

var resultLine = regexp.MustCompile(`^shakenline_verify_results_total\{verstat="([^"]+)",code="([^"]+)"\} (\d+)`)

// checkCounters reads h's verifier counters and compares them with the
// results expected of the calls it terminated.
func checkCounters(h *carrierHost, calls []CallResult) ([]CounterCheck, error) {
	want := map[string]int{}
	for _, c := range calls {
		if c.Term == h.Name {
			want[fmt.Sprintf("%s/%d", c.Expect.Result, c.Expect.Code)]++
		}
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var conn net.Conn
			err := h.ns.Do(func() error {
				var err error
				conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(fmt.Sprintf("http://%s/metrics", netip.AddrPortFrom(h.addr(), portAPI)))
	if err != nil {
		return nil, fmt.Errorf("interop: %s metrics: %w", h.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("interop: %s metrics: %w", h.Name, err)
	}
	got := map[string]int{}
	// CRLs were fetched and none was missing (fail-open would let a
	// revoked certificate pass): crl_fail_open must stay 0.
	want["crl_fail_open"] = 0
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, "shakenline_verify_crl_fail_open_total "); ok {
			got["crl_fail_open"], _ = strconv.Atoi(strings.TrimSpace(v))
		}
		if m := resultLine.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[3])
			if n > 0 {
				got[m[1]+"/"+m[2]] = n
			}
		}
	}
	keys := map[string]bool{}
	for k := range want {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	var out []CounterCheck
	for k := range keys {
		out = append(out, CounterCheck{Carrier: h.Name, Result: k, Want: want[k], Got: got[k], Pass: want[k] == got[k]})
	}
	slices.SortFunc(out, func(a, b CounterCheck) int { return strings.Compare(a.Result, b.Result) })
	return out, nil
}
