package fastpath

import (
	"crypto/sha256"
	"net/netip"
	"time"

	"github.com/shakenline/shakenline/claims"
	"github.com/shakenline/shakenline/hsm"
	"github.com/shakenline/shakenline/passport"
	"github.com/shakenline/shakenline/policy"
	"github.com/shakenline/shakenline/sip"
)

// syncSigner is a Dispatcher that can also sign at once, without blocking
// (hsm.Chain when its first usable signer is a software key with a warm
// nonce pool).
type syncSigner interface {
	TrySign(r *hsm.Request, shard int) bool
}

// handleInvite decides what becomes of an initial INVITE (l.msg, parsed
// from pkt), as the policy says: verification (queued; see verify.go),
// signing (signInvite), or neither. It returns false when the caller is to
// forward the call unsigned and untouched (policy "forward", no number to
// sign, already signed, a Date outside the freshness window, or
// verification not possible where the mode carries no verification
// result); every other outcome, bypass included, is handled here.
func (l *loop) handleInvite(pkt []byte, src, dst netip.AddrPort) bool {
	m := &l.msg
	cfg := &l.s.cfg
	var ok bool
	l.tn[0], ok = claims.OrigTN(l.tn[0][:0], l.raw, pkt, m, cfg.Numbers)
	if !ok {
		l.tn[0] = l.tn[0][:0]
	}
	tbl := cfg.Policy.Load()
	dec := tbl.Decide(src.Addr(), l.tn[0])
	switch dec.Action {
	case policy.Verify, policy.VerifyReject:
		if l.startVerify(pkt, src, dst, dec.Action == policy.VerifyReject) {
			return true
		}
		return l.eg.forwardUnverified(l, l.cleanForVerification(pkt), src, dst)
	case policy.Forward:
		mUnsignedPolicy.Inc()
		return false
	}
	if m.NumIdentity > 0 && !cfg.ResignSigned && hasShakenIdentity(pkt, m) {
		if retargeted(m) && tbl.HasDiv() {
			// A forwarded call: div PASSporTs (divert.go).
			return l.handleDiv(pkt, src, dst, tbl, ok)
		}
		mUnsignedSigned.Inc()
		return false
	}
	if retargeted(m) && tbl.HasDiv() && l.divMissing(pkt, src, tbl) {
		mUnsignedPolicy.Inc() // div_unverified: forward
		return false
	}
	return l.signCall(pkt, src, dst, dec, ok)
}

// signCall signs a call the policy decided to sign, as dec says, once it
// has a caller (origOK: l.tn[0] holds it), a called number and a Date
// within the rules; otherwise the call leaves unsigned, counted.
func (l *loop) signCall(pkt []byte, src, dst netip.AddrPort, dec policy.Decision, origOK bool) bool {
	m := &l.msg
	cfg := &l.s.cfg
	if !origOK {
		mUnsignedNoOrig.Inc()
		return false
	}
	var ok bool
	if l.tn[1], ok = claims.DestTN(l.tn[1][:0], l.raw, pkt, m, cfg.Numbers); !ok {
		mUnsignedNoDest.Inc()
		return false
	}
	// RFC 8224 sections 4.1 and 6.1: a Date outside freshness is not
	// signed (unless stale_date: replace); a missing one is added.
	now := cfg.Now()
	iat, dact := claims.DateRule(pkt, m, now, cfg.Freshness, cfg.StaleDate)
	if dact == claims.DateStale || dact == claims.DateBad {
		l.staleDate(pkt, m, src, dact, now)
		return false
	}
	return l.signInvite(pkt, src, dst, dec, iat, dact)
}

// signInvite signs the INVITE in hand for the claims in l.tn, dec's
// attestation and iat: on the loop when the signer can sign at once, else
// by a signer goroutine (the job goes back to the loop's sender), or
// bypassed at once when neither can take it. The mode's egress sends it.
// The rule's Rich Call Data go into the shaken PASSporT, or into an rcd
// PASSporT of their own (rcd_ppt: rcd).
func (l *loop) signInvite(pkt []byte, src, dst netip.AddrPort, dec policy.Decision, iat int64, dact claims.DateAction) bool {
	m := &l.msg
	cfg := &l.s.cfg
	// The call is prepared in the loop's workspace job: when it is signed
	// here, on the loop, neither the datagram nor its parse is copied and
	// no job changes hands.
	j := l.ws
	j.start = time.Now()
	j.src, j.dst, j.flow = src, dst, l.flow
	j.in, j.to = l.in, l.to
	j.orig = append(j.orig[:0], l.tn[0]...)
	j.dest = append(j.dest[:0], l.tn[1]...)
	j.setDate(m, iat, dact)
	j.decision = dec
	j.reject = false
	j.attest = dec.Attest
	j.claims = passport.Claims{Attest: j.decision.Attest, Orig: j.orig, Dest: j.destv[:], IAT: iat}
	j.destv[0] = j.dest
	_, _ = l.rng.Read(j.claims.OrigID[:])
	// One credential for the whole call: the x5u in the signing input, the
	// key that signs it and the Identity header's info= all come from it.
	j.cred = cfg.Credential.Load()
	b := j.cred.Builder
	j.npp, j.ppt = 1, pptShaken
	if dec.RCD != nil && !dec.RCDSeparate {
		j.claims.RCD = dec.RCD.Passport()
		j.ppt = pptShakenRCD
	}
	j.input = b.AppendSigningInput(j.input[:0], &j.claims)
	j.pp[0] = pport{b: b, start: 0, end: len(j.input)}
	if dec.RCD != nil && dec.RCDSeparate {
		rb := l.s.builders(b).rcd
		j.claims.RCD = dec.RCD.Passport()
		start := len(j.input)
		j.input = rb.AppendRCDSigningInput(j.input, &j.claims)
		j.pp[1] = pport{b: rb, start: start, end: len(j.input)}
		j.npp, j.ppt = 2, pptShakenAndRCD
	}
	return l.signJob(j, pkt, src, dst)
}

// signJob signs the PASSporTs prepared in the loop's workspace job j (its
// j.npp signing inputs) and sends the call: on the loop when the signer
// signs every one at once, else by signer goroutines (the last answer
// hands the job to the loop's sender), or bypassed at once when they
// cannot take it.
func (l *loop) signJob(j *job, pkt []byte, src, dst netip.AddrPort) bool {
	m := &l.msg
	cfg := &l.s.cfg
	deadline := j.start.Add(cfg.Budget) // the signers' clock, not cfg.Now (the dates' clock)
	for i := range j.npp {
		r, p := j.reqAt(i), &j.pp[i]
		r.Digest = sha256.Sum256(j.input[p.start:p.end])
		r.Input = j.input[p.start:p.end] // for a remote STI-AS link, which signs claims, not a digest
		r.Deadline = deadline
		r.Err, r.SignedBy = nil, ""
	}
	// A signer that can sign at once (a warm software nonce pool: about
	// 0.1 µs) costs less than the two hand-offs of the asynchronous path,
	// so the call is finished here, on the loop. Otherwise, and for every
	// HSM, the request is queued and the loop goes on.
	signed := 0
	if ss, ok := j.cred.Signer.(syncSigner); ok {
		for signed < j.npp && ss.TrySign(j.reqAt(signed), l.idx) {
			signed++
		}
	}
	if signed == j.npp {
		l.eg.sendSigned(l, j, pkt, m)
		l.hist.UpdateDuration(j.start)
		mSignedOnLoop.Inc()
		return true
	}
	// Asynchronous: the workspace goes to the signer with a copy of the
	// datagram, and a job from the free list takes its place.
	nj := l.getJob()
	if nj == nil {
		mBypassOverload.Inc()
		l.eg.bypass(l, pkt, src, dst, bypassHeaders[bypassOverload])
		return true
	}
	l.ws = nj
	l.handedOff = l.bursts
	j.pkt = append(j.pkt[:0], pkt...)
	j.msg = *m
	if j.npp == 1 {
		j.req.Done = j.doneFn
		if err := j.cred.Signer.Submit(&j.req); err != nil {
			// Submit refused (queue full, or no signer usable): Done will not
			// be called, so the call is bypassed here, now.
			l.free <- j
			l.eg.bypass(l, pkt, src, dst, bypassHeader(err))
		}
		return true
	}
	// Several PASSporTs: each answer counts down, the last completes the
	// call (job.partDone); our own count is dropped after the last
	// Submit, so no answer completes it before every request is out. A
	// refused Submit fails its request, and the call leaves with
	// P-Identity-Bypass like any call a signer failed.
	j.pending.Store(int32(j.npp - signed + 1))
	for i := signed; i < j.npp; i++ {
		r := j.reqAt(i)
		r.Done = j.partFn
		if err := j.cred.Signer.Submit(r); err != nil {
			r.Err = err
			j.pending.Add(-1)
		}
	}
	if j.pending.Add(-1) == 0 { // every request answered or refused already
		j.done(&j.req)
	}
	return true // j is not ours any more: not touched after the last count
}

// staleDate counts and logs (at most once a minute) an INVITE that is not
// signed because of its Date: outside the freshness window (RFC 8224
// section 4.1) or not a date at all. The caller forwards it unsigned.
func (l *loop) staleDate(pkt []byte, m *sip.Message, src netip.AddrPort, act claims.DateAction, now time.Time) {
	if act == claims.DateBad {
		mUnsignedBadDate.Inc()
		if ok, n := l.s.limit.allow(logBadDate); ok {
			l.s.log.Warn("fastpath: INVITE with a Date that does not parse forwarded unsigned (RFC 8224 section 4.1; stale_date: replace would replace it)",
				"from", src, "date", string(m.Date.In(pkt)), "suppressed_since_last", n)
		}
		return
	}
	mUnsignedStale.Inc()
	if ok, n := l.s.limit.allow(logStaleDate); ok {
		d, _ := sip.ParseDate(m.Date.In(pkt))
		l.s.log.Warn("fastpath: INVITE with a Date outside the freshness window forwarded unsigned (RFC 8224 section 4.1; stale_date: replace would replace it)",
			"from", src, "date", string(m.Date.In(pkt)), "skew_seconds", d-now.Unix(), "freshness", l.s.cfg.Freshness, "suppressed_since_last", n)
	}
}

// hasShakenIdentity reports whether one of the Identity headers is a SHAKEN
// PASSporT (ppt=shaken, quoted or not).
func hasShakenIdentity(pkt []byte, m *sip.Message) bool {
	for i := 0; i < int(m.NumIdentity); i++ {
		if containsFold(m.Identity[i].In(pkt), "shaken") {
			return true
		}
	}
	return false
}

func containsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		ok := true
		for k := 0; k < len(s); k++ {
			c := b[i+k]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != s[k] {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
