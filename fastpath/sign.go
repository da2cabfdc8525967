package fastpath

import (
	"crypto/sha256"
	"net/netip"
	"time"

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

// sign handles an initial INVITE as the policy decides: signing (on the
// loop or queued), verification (queued), or neither. It returns false when
// the caller is to forward the call unsigned and untouched (policy
// "forward", no number to sign, already signed, or verification not
// possible); every other outcome, bypass included, is handled here.
func (l *loop) sign(pkt []byte, src, dst netip.AddrPort) bool {
	m := &l.msg
	cfg := &l.s.cfg
	var ok bool
	l.tn[0], ok = OrigTN(l.tn[0][:0], l.raw, pkt, m, cfg.Numbers)
	if !ok {
		l.tn[0] = l.tn[0][:0]
	}
	dec := cfg.Policy.Load().Decide(src.Addr(), l.tn[0])
	switch dec.Action {
	case policy.Verify, policy.VerifyReject:
		if l.startVerify(pkt, src, dst, dec.Action == policy.VerifyReject) {
			return true
		}
		return l.forwardUnverified(pkt, src, dst)
	case policy.Forward:
		mUnsignedPolicy.Inc()
		return false
	}
	if m.NumIdentity > 0 && !cfg.ResignSigned && hasShakenIdentity(pkt, m) {
		mUnsignedSigned.Inc()
		return false
	}
	if !ok {
		mUnsignedNoOrig.Inc()
		return false
	}
	if l.tn[1], ok = DestTN(l.tn[1][:0], l.raw, pkt, m, cfg.Numbers); !ok {
		mUnsignedNoDest.Inc()
		return false
	}
	// RFC 8224 sections 4.1 and 6.1: a Date outside freshness is not
	// signed (unless stale_date: replace); a missing one is added.
	now := cfg.Now()
	iat, dact := DateRule(pkt, m, now, cfg.Freshness, cfg.StaleDate)
	if dact == DateStale || dact == DateBad {
		l.staleDate(pkt, m, src, dact, now)
		return false
	}
	// The call is prepared in the loop's workspace job: when it is signed
	// here, on the loop, neither the datagram nor its parse is copied and
	// no job changes hands.
	j := l.ws
	j.start = time.Now()
	j.src, j.dst, j.flow = src, dst, l.flow
	j.orig = append(j.orig[:0], l.tn[0]...)
	j.dest = append(j.dest[:0], l.tn[1]...)
	j.setDate(m, iat, dact)
	j.decision = dec
	j.reject = false
	j.claims = passport.Claims{Attest: j.decision.Attest, Orig: j.orig, Dest: j.destv[:], IAT: iat}
	j.destv[0] = j.dest
	_, _ = l.rng.Read(j.claims.OrigID[:])
	j.input = cfg.Builder.AppendSigningInput(j.input[:0], &j.claims)
	j.req.Digest = sha256.Sum256(j.input)
	j.req.Deadline = j.start.Add(cfg.Budget) // the signers' clock, not cfg.Now (the dates' clock)
	j.req.Err, j.req.SignedBy = nil, ""
	// A signer that can sign at once (a warm software nonce pool: about
	// 0.1 µs) costs less than the two hand-offs of the asynchronous path,
	// so the call is finished here, on the loop. Otherwise, and for every
	// HSM, the request is queued and the loop goes on.
	if ss, ok := cfg.Signer.(syncSigner); ok && ss.TrySign(&j.req, l.idx) {
		if cfg.Mode == Inline {
			l.out = j.stamp(l.out[:0], pkt, m, &j.req)
			l.reinject(l.out)
		} else {
			l.queue(j.stamp(l.outBuf(len(pkt)), pkt, m, &j.req), j.dst)
		}
		l.hist.UpdateDuration(j.start)
		mSignedOnLoop.Inc()
		return true
	}
	// Asynchronous: the workspace goes to the signer with a copy of the
	// datagram, and a job from the free list takes its place.
	nj := l.getJob()
	if nj == nil {
		mBypassOverload.Inc()
		l.bypassNow(pkt, src, dst, bypassHeaders[bypassOverload])
		return true
	}
	l.ws = nj
	l.handedOff = l.bursts
	j.pkt = append(j.pkt[:0], pkt...)
	j.msg = *m
	if err := cfg.Signer.Submit(&j.req); err != nil {
		// Submit refused (queue full, or no signer usable): Done will not
		// be called, so the call is bypassed here, now.
		l.free <- j
		l.bypassNow(pkt, src, dst, bypassHeader(err))
	}
	return true
}

// staleDate counts and logs (at most once a minute) an INVITE that is not
// signed because of its Date: outside the freshness window (RFC 8224
// section 4.1) or not a date at all. The caller forwards it unsigned.
func (l *loop) staleDate(pkt []byte, m *sip.Message, src netip.AddrPort, act DateAction, now time.Time) {
	if act == DateBad {
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

var verstatNoneParam = []byte(";verstat=" + VerstatNone)

// forwardUnverified forwards at once an INVITE the policy gives to
// verification that cannot be verified now (no verifier configured, or the
// verifiers' queue full), annotated No-TN-Validation: the next hop sees
// that the call was not verified, and no verstat the caller wrote survives
// (an overload an attacker provokes must not pass his own
// TN-Validation-Passed). The call completes, under verify-reject too. In
// redirect mode it reports false and the caller redirects the call as it
// is (a 302 carries no verification result).
func (l *loop) forwardUnverified(pkt []byte, src, dst netip.AddrPort) bool {
	if l.s.cfg.Mode == Redirect {
		return false
	}
	m := &l.msg
	ann, buf := verstatAnnotation(l.ann[:0], pkt, m, verstatNoneParam)
	l.ann = buf
	mForwarded.Inc()
	if l.s.cfg.Mode == Inline {
		l.sc.ed.n = 0
		ann.addTo(&l.sc.ed)
		l.out = l.sc.ed.apply(l.out[:0], pkt)
		l.reinject(l.out)
		return true
	}
	l.queue(l.s.stampRequestEdit(l.outBuf(len(pkt)), pkt, m, src, nil, l.sc, &ann, nil), dst)
	return true
}

// bypassNow forwards (or, in redirect mode, redirects) the call at once,
// unsigned, with P-Identity-Bypass.
func (l *loop) bypassNow(pkt []byte, src, dst netip.AddrPort, hdr []byte) {
	m := &l.msg
	if l.s.cfg.Mode == Inline {
		mForwarded.Inc()
		l.out = stampInline(l.out[:0], pkt, m, hdr, nil, l.sc)
		l.reinject(l.out)
		return
	}
	if l.s.cfg.Mode == Redirect {
		l.reply(pkt, src, 302, "Moved Temporarily", l.contact(pkt, m), hdr)
		return
	}
	mForwarded.Inc()
	l.queue(l.s.stampRequest(l.outBuf(len(pkt)+len(hdr)), pkt, m, src, hdr, l.sc), dst)
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
