package fastpath

import (
	"bytes"
	"errors"
	"net/netip"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/shakenline/shakenline/claims"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/policy"
	"github.com/shakenline/shakenline/sip"
)

// Forwarded calls (docs/STANDARDS.md, "div"): a retargeted INVITE
// (Diversion, or History-Info with a cause) that carries a SHAKEN Identity
// gets, when a rule with div: true matches the number it was diverted
// from, one div PASSporT (RFC 8946) per diversion this provider performed:
// orig copied from the received shaken PASSporT, dest the new target, div
// the previous one. The received Identity headers stay. None of this runs
// for a call without Diversion or History-Info.

// PASSporT types for the audit line (audit.Record keeps strings by
// reference: constants only).
const (
	pptShaken       = "shaken"
	pptShakenRCD    = "shaken+rcd" // Rich Call Data in the shaken PASSporT
	pptShakenAndRCD = "shaken,rcd" // an rcd PASSporT beside the shaken one
)

var pptDivs = [claims.MaxDiv + 1]string{"", "div", "div,div", "div,div,div", "div,div,div,div", "div,div,div,div,div"}

// builderSet is the div and rcd builders for the x5u of a shaken builder.
type builderSet struct{ shaken, div, rcd *passport.Builder }

// builders returns the div and rcd builders for b's x5u (b is the
// call's credential's), made once per credential: again only when a
// renewal switches it.
func (s *Server) builders(b *passport.Builder) *builderSet {
	if bs := s.bset.Load(); bs != nil && bs.shaken == b {
		return bs
	}
	// b's x5u passed NewBuilder's checks: the other types cannot fail.
	div, _ := passport.NewBuilderPPT(b.X5U(), passport.PPTDiv)
	rcd, _ := passport.NewBuilderPPT(b.X5U(), passport.PPTRCD)
	bs := &builderSet{shaken: b, div: div, rcd: rcd}
	s.bset.Store(bs)
	return bs
}

// received is what the retargeting of a call needs from the PASSporTs it
// arrived with.
type received struct {
	orig    []byte   // the shaken PASSporT's orig tn, as it has it
	reached [][]byte // the targets its dest and the received div PASSporTs reach (canonical digits)
	buf     []byte
	ndiv    int  // div PASSporTs received
	shaken  bool // a shaken PASSporT parsed
}

// read parses the Identity headers of the INVITE (allocating: a forwarded
// call is not the plain path).
func (rx *received) read(pkt []byte, m *sip.Message) {
	rx.orig, rx.reached, rx.buf = rx.orig[:0], rx.reached[:0], rx.buf[:0]
	rx.ndiv, rx.shaken = 0, false
	var ends [2 * sip.MaxIdentity]int
	n := 0
	for i := range int(m.NumIdentity) {
		id, err := passport.ParseIdentityAny(string(m.Identity[i].In(pkt)))
		if err != nil {
			continue
		}
		p := &id.Payload
		switch id.PPT {
		case passport.PPTShaken:
			if rx.shaken {
				continue // the first one counts
			}
			rx.shaken = true
			rx.orig = append(rx.orig, p.Orig.TN...)
		case passport.PPTDiv:
			rx.ndiv++
		default:
			continue
		}
		for _, tn := range p.Dest.TN {
			if n < len(ends) {
				rx.buf = append(rx.buf, canonTN(tn)...)
				ends[n] = len(rx.buf)
				n++
			}
		}
	}
	start := 0
	for _, e := range ends[:n] {
		rx.reached = append(rx.reached, rx.buf[start:e])
		start = e
	}
}

// reaches reports whether the received PASSporTs reach target.
func (rx *received) reaches(target []byte) bool {
	for _, r := range rx.reached {
		if bytes.Equal(r, target) {
			return true
		}
	}
	return false
}

func canonTN(tn string) string {
	if len(tn) > 0 && tn[0] == '+' {
		return tn[1:]
	}
	return tn
}

// retargeted reports whether the INVITE shows a retarget.
func retargeted(m *sip.Message) bool { return m.TotalDiversion+m.TotalHistoryInfo > 0 }

// handleDiv decides a retargeted INVITE that carries a SHAKEN Identity
// when the policy has div rules. It returns false when the caller is to
// forward the call as it came (counted here).
func (l *loop) handleDiv(pkt []byte, src, dst netip.AddrPort, tbl *policy.Table, origOK bool) bool {
	m := &l.msg
	cfg := &l.s.cfg
	rt := &l.rt
	if err := rt.Read(pkt, m, cfg.Numbers); err != nil {
		if !errors.Is(err, claims.ErrNoRetarget) {
			mDivBadRetarget.Inc()
		}
		mUnsignedSigned.Inc()
		return false
	}
	rx := &l.recv
	rx.read(pkt, m)
	// The diversions this provider performed: from the first hop that
	// leaves a target the received PASSporTs reach for one they do not.
	h := -1
	for i, hop := range rt.Hops {
		if rx.reaches(hop.From) && !rx.reaches(hop.To) {
			h = i
			break
		}
	}
	from := rt.Hops[0].From
	if h >= 0 {
		from = rt.Hops[h].From
	}
	dec := tbl.DecideDiv(src.Addr(), from)
	if !dec.Div || dec.Action != policy.Sign {
		mDivNotOurs.Inc()
		mUnsignedSigned.Inc()
		return false
	}
	last := rt.Hops[len(rt.Hops)-1].To
	switch {
	case !rx.shaken:
		return l.divUnverified(pkt, src, dst, dec, origOK, mDivUnverified) // the SHAKEN Identity does not parse
	case verstatFailed(pkt, m):
		return l.divUnverified(pkt, src, dst, dec, origOK, mDivUnverified)
	case h < 0 && rx.reaches(last):
		mDivNone.Inc() // the PASSporTs reach the new target already
		mUnsignedSigned.Inc()
		return false
	case h < 0:
		return l.divUnverified(pkt, src, dst, dec, origOK, mDivUnlinked)
	}
	ours := 0
	for _, hop := range rt.Hops[h:] {
		if !bytes.Equal(hop.From, hop.To) { // RFC 8946 section 3: no div when dest does not change
			ours++
		}
	}
	if rx.ndiv+ours > claims.MaxDiv {
		mDivLimit.Inc()
		mUnsignedSigned.Inc()
		if ok, n := l.s.limit.allow(logDivLimit); ok {
			l.s.log.Warn("fastpath: forwarded call would carry more div PASSporTs than the limit; forwarded without ours",
				"from", src, "received_div", rx.ndiv, "ours", ours, "limit", claims.MaxDiv, "suppressed_since_last", n)
		}
		return false
	}
	now := cfg.Now()
	iat, dact := claims.DateRule(pkt, m, now, cfg.Freshness, cfg.StaleDate)
	if dact == claims.DateStale || dact == claims.DateBad {
		l.staleDate(pkt, m, src, dact, now)
		return false
	}
	mDivAdded.Inc()
	j := l.ws
	j.start = time.Now()
	j.src, j.dst, j.flow = src, dst, l.flow
	j.in, j.to = l.in, l.to
	j.orig = append(j.orig[:0], rx.orig...)
	j.dest = append(j.dest[:0], last...)
	j.setDate(m, iat, dact)
	j.decision = dec
	j.reject = false
	j.attest = 0                   // a div PASSporT carries no attestation
	j.cred = cfg.Credential.Load() // one credential for every div of the call
	db := l.s.builders(j.cred.Builder).div
	j.input = j.input[:0]
	j.npp, j.ppt = 0, pptDivs[ours]
	for _, hop := range rt.Hops[h:] {
		if bytes.Equal(hop.From, hop.To) {
			continue
		}
		d := passport.DivClaims{Orig: j.orig, Dest: j.destv[:], Div: hop.From, IAT: iat}
		j.destv[0] = hop.To
		start := len(j.input)
		j.input = db.AppendDivSigningInput(j.input, &d)
		j.pp[j.npp] = pport{b: db, start: start, end: len(j.input)}
		j.npp++
	}
	j.destv[0] = j.dest
	return l.signJob(j, pkt, src, dst)
}

// divUnverified handles a retargeted call whose SHAKEN PASSporT a div
// cannot build on (it does not parse, an upstream verifier failed it, or
// its dest is not among the diverted targets), as the rule's
// div_unverified says: forward it as it came, or sign it as a call that
// enters unsigned, with attestation C (gateway; its received Identity
// headers stay).
func (l *loop) divUnverified(pkt []byte, src, dst netip.AddrPort, dec policy.Decision, origOK bool, c *metrics.Counter) bool {
	c.Inc()
	if dec.DivForward {
		mUnsignedSigned.Inc()
		return false
	}
	return l.signAsGateway(pkt, src, dst, dec, origOK)
}

// signAsGateway signs the INVITE in hand with attestation C and no Rich
// Call Data, its claims mapped as for any call (orig in l.tn[0] when
// origOK).
func (l *loop) signAsGateway(pkt []byte, src, dst netip.AddrPort, dec policy.Decision, origOK bool) bool {
	dec.Attest, dec.RCD, dec.Div = 'C', nil, false
	return l.signCall(pkt, src, dst, dec, origOK)
}

// divMissing reports, for a retargeted INVITE without a SHAKEN Identity,
// whether a div rule with div_unverified: forward wants it forwarded as
// it came (counted); otherwise the call is signed like any other.
func (l *loop) divMissing(pkt []byte, src netip.AddrPort, tbl *policy.Table) bool {
	rt := &l.rt
	if rt.Read(pkt, &l.msg, l.s.cfg.Numbers) != nil {
		return false
	}
	dec := tbl.DecideDiv(src.Addr(), rt.Hops[0].From)
	if !dec.Div || dec.Action != policy.Sign {
		return false
	}
	mDivMissing.Inc()
	return dec.DivForward
}

// verstatFailed reports whether the identity the verstat goes on carries
// one an upstream verifier wrote that is not TN-Validation-Passed.
func verstatFailed(pkt []byte, m *sip.Message) bool {
	na, at, _ := sip.VerstatPoint(pkt, m)
	if at < 0 {
		return false
	}
	s, e := sip.NextVerstat(pkt, int(na.URI.Start), int(na.URI.End), false)
	if s == e {
		if s, e = sip.NextVerstat(pkt, int(na.URI.End), max(int(na.Value.End), int(na.URI.End)), true); s == e {
			return false
		}
	}
	v := pkt[s:e]
	if i := bytes.IndexByte(v, '='); i >= 0 {
		v = bytes.Trim(v[i+1:], " \t\r\n\"")
	} else {
		v = nil
	}
	return !bytes.EqualFold(v, []byte(VerstatPassed))
}
